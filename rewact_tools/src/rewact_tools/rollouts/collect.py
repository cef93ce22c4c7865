"""Roll a policy out in a LeRobot simulation env and record the episodes as a LeRobot dataset.

Episodes run `batch_size` at a time in one synchronous vector env, all started together (as
`lerobot-eval` runs them), so the policy acts on a batch and its action queue is shared by the
batch. Episode k of a run is reset with seed `seed + k`, and episodes are written in that order, so
a run is reproducible from its arguments. An episode ends when the env ends it (success or its step
limit) or, with `end_on_model_success`, on the frame where the reward model's progress reaches
`success_threshold`.

Frame t records the observation the policy saw (LeRobot's keys after the env's pre-processing), the
action sent to the env, and `next.reward`, `next.done`, `next.success` of that step (the
`lerobot/pusht` convention), plus `intervention` (True where a corrector drove, as
`lerobot-rollout --strategy.type=dagger` writes it). With a reward model, `rewact.progress` is its
predicted progress of the frame's observation (what `compute_values` gives on the written dataset)
and `rewact.success` whether that reaches the success threshold; an episode's last frame carries the
model's success call, as its `next.success` carries the env's.

When a corrector hands control back, the policy's queue is emptied (`policy.reset()`) before the
policy acts again in that env: it holds actions planned before or during the correction. The queue
is the whole batch's, so the other envs replan at that step too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lerobot.utils.constants import ACTION
from tqdm.auto import tqdm

from lerobot_policy_rewact.control_mode import INTERVENTION
from rewact_tools.dataset_progress import datasets_progress_bars_disabled
from rewact_tools.outcomes import DEFAULT_SUCCESS_THRESHOLD
from rewact_tools.rollouts.corrections import CorrectionSettings, Corrector, EpisodeCorrections
from rewact_tools.rollouts.correctors import corrector_factory
from rewact_tools.rollouts.env import EnvSpec, RolloutEnv, frame_observations, observation_features
from rewact_tools.rollouts.models import PolicyRunner, ProgressModel
from rewact_tools.rollouts.recorder import RolloutDatasetWriter
from rewact_tools.values import check_input_features

PROGRESS_KEY = "rewact.progress"
MODEL_SUCCESS_KEY = "rewact.success"
_FLAG = {"dtype": "bool", "shape": (1,), "names": None}
_SCALAR = {"dtype": "float32", "shape": (1,), "names": None}


@dataclass(frozen=True)
class RolloutSettings:
    """How many episodes, how they are seeded and batched, and when they end or get corrected."""

    episodes: int
    seed: int = 0
    batch_size: int = 10
    success_threshold: float = DEFAULT_SUCCESS_THRESHOLD
    """The reward model calls an episode a success when the progress of its last frame reaches this."""
    end_on_model_success: bool = False
    corrections: CorrectionSettings = field(default_factory=CorrectionSettings)
    commit_every: int | None = None
    """Commit at the first batch end after every this many episodes (None: once, at the end)."""

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {self.episodes}")
        if self.seed < 0:
            raise ValueError(f"--seed must be non-negative, got {self.seed}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0.0 < self.success_threshold <= 1.0:
            raise ValueError(f"--success-threshold must lie in (0, 1], got {self.success_threshold}")
        if self.commit_every is not None and self.commit_every < 1:
            raise ValueError(f"--commit-every must be at least 1, got {self.commit_every}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpisodeRecord:
    """One recorded episode's summary (also in the dataset's sidecar)."""

    seed: int
    length: int = 0
    success: bool = False
    """The env's: `next.success` on the last frame."""
    max_reward: float = float("-inf")
    interventions: int = 0
    """Frames the corrector drove."""
    takeovers: int = 0
    ended_by: str = "env"
    """`env` (success or the env's step limit) or `model` (`end_on_model_success`)."""
    final_progress: float | None = None
    model_success: bool | None = None
    max_env_progress: float | None = None
    """The highest progress the env itself reported (`rollouts.env.ENV_PROGRESS`), where it has one."""
    episode_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "episode_index"}


def dataset_features(
    observation: dict[str, dict], action_shape: tuple[int, ...], with_progress: bool
) -> dict:
    """Every feature of a rollout dataset: the env's observations, LeRobot's step keys, the
    intervention flag and, with a reward model, its progress and success call."""
    features = {
        **observation,
        ACTION: {"dtype": "float32", "shape": tuple(action_shape), "names": None},
        "next.reward": _SCALAR,
        "next.done": _FLAG,
        "next.success": _FLAG,
        INTERVENTION: _FLAG,
    }
    if with_progress:
        features[PROGRESS_KEY] = _SCALAR
        features[MODEL_SUCCESS_KEY] = _FLAG
    return features


def collect_rollouts(
    root: Path | str,
    policy: PolicyRunner,
    env_spec: EnvSpec,
    settings: RolloutSettings,
    reward_model: ProgressModel | None = None,
    repo_id: str = "local/rollouts",
    append: bool = False,
    round_info: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[EpisodeRecord]:
    """Roll `policy` out for `settings.episodes` episodes and write them to the dataset at `root`
    (new, or with `append` an existing rollout dataset with the same features). Returns the
    episodes' records in order, with their dataset indices. `round_info` (e.g. checkpoint paths)
    goes into the sidecar's entry for this run."""
    round_info = {
        **(round_info or {}),
        "env": env_spec.as_dict(),
        "task": env_spec.task,
        **settings.as_dict(),
    }
    records: list[EpisodeRecord] = []
    with rollout_batches(policy, env_spec, settings, reward_model, progress=progress) as (features, batches):
        writer = RolloutDatasetWriter(root, repo_id, features, env_spec.fps, round_info, append=append)
        with writer, datasets_progress_bars_disabled():
            for episodes in batches:
                for frames, record in episodes:
                    record.episode_index = writer.add_episode(frames, record.as_dict())
                    records.append(record)
                if settings.commit_every is not None and writer.pending >= settings.commit_every:
                    writer.commit()
    return records


def roll_out(
    policy: PolicyRunner,
    env_spec: EnvSpec,
    settings: RolloutSettings,
    reward_model: ProgressModel | None = None,
    seeds: Sequence[int] | None = None,
    desc: str = "rollouts",
    progress: bool = True,
) -> list[tuple[list[dict], EpisodeRecord]]:
    """The episodes `collect_rollouts` would write, in memory: each one's frames (dataset features
    as keys) and record, in order. `seeds` replaces the settings' `seed + k` reset seeds."""
    with rollout_batches(policy, env_spec, settings, reward_model, seeds, desc, progress) as (_, batches):
        return [episode for episodes in batches for episode in episodes]


@contextmanager
def rollout_batches(
    policy: PolicyRunner,
    env_spec: EnvSpec,
    settings: RolloutSettings,
    reward_model: ProgressModel | None = None,
    seeds: Sequence[int] | None = None,
    desc: str = "rollouts",
    progress: bool = True,
) -> Iterator[tuple[dict[str, dict], Iterator[list[tuple[list[dict], EpisodeRecord]]]]]:
    """The rollout's dataset features (checked against both models) and its batches, one list of
    (frames, record) per batch as it finishes; the env lives as long as the block."""
    corrections = settings.corrections
    if corrections.stall_steps is not None and corrections.stall_signal == "model" and reward_model is None:
        raise ValueError("--correct-stall watches the reward model's progress: it needs --reward-model")
    if corrections.stall_signal == "env" and env_spec.progress_key is None:
        raise ValueError(f"--stall-signal env: {env_spec.describe()} reports no progress of its own")
    if settings.end_on_model_success and reward_model is None:
        raise ValueError("--end-on-model-success needs --reward-model")
    make_corrector = corrector_factory(env_spec.type) if corrections.enabled else None
    seeds = [settings.seed + k for k in range(settings.episodes)] if seeds is None else list(seeds)
    batches = [
        seeds[start : start + settings.batch_size] for start in range(0, len(seeds), settings.batch_size)
    ]
    env = RolloutEnv(env_spec, len(batches[0]), policy.config)
    try:
        features = _checked_features(env, batches[0], policy, reward_model)

        def run() -> Iterator[list[tuple[list[dict], EpisodeRecord]]]:
            nonlocal env
            successes = []
            with tqdm(total=len(seeds), desc=desc, unit="episode", disable=not progress) as bar:
                for batch_seeds in batches:
                    if env.num_envs != len(batch_seeds):
                        env.close()
                        env = RolloutEnv(env_spec, len(batch_seeds), policy.config)
                    episodes = _run_batch(
                        env, batch_seeds, policy, reward_model, settings, make_corrector, features, bar
                    )
                    successes += [record.success for _, record in episodes]
                    bar.set_postfix(success=f"{np.mean(successes):.0%}")
                    yield episodes

        yield features, run()
    finally:
        env.close()


def _checked_features(
    env: RolloutEnv, seeds: list[int], policy: PolicyRunner, reward_model: ProgressModel | None
) -> dict[str, dict]:
    """The dataset features of this env's observations, after checking both models can read them."""
    observed = observation_features(env.reset(seeds))
    where = env.spec.describe() + " observations"
    check_input_features(policy.config, observed, where)
    if reward_model is not None:
        check_input_features(reward_model.config, observed, where)
    action_shape = tuple(env.vector.single_action_space.shape)
    policy_action = policy.config.output_features.get(ACTION)
    if policy_action is None or tuple(policy_action.shape) != action_shape:
        raise ValueError(
            f"the policy's action has shape {None if policy_action is None else tuple(policy_action.shape)}, "
            f"but {env.spec.describe()} takes actions of shape {action_shape}"
        )
    return dataset_features(observed, action_shape, with_progress=reward_model is not None)


def _run_batch(
    env: RolloutEnv,
    seeds: list[int],
    policy: PolicyRunner,
    reward_model: ProgressModel | None,
    settings: RolloutSettings,
    make_corrector: Callable[[Any, int], Corrector] | None,
    features: dict[str, dict],
    bar: tqdm,
) -> list[tuple[list[dict], EpisodeRecord]]:
    """One episode per env, all started together; returns each env's frames and record."""
    observation = env.reset(seeds)
    policy.reset()
    corrections = (
        [
            EpisodeCorrections(settings.corrections, make_corrector(env.sub_env(row), seed), seed)
            for row, seed in enumerate(seeds)
        ]
        if make_corrector is not None
        else None
    )
    frames: list[list[dict]] = [[] for _ in seeds]
    records = [EpisodeRecord(seed=seed) for seed in seeds]
    active = np.ones(len(seeds), dtype=bool)
    env_progress = np.zeros(len(seeds)) if env.spec.progress_key is not None else None
    stall_from_env = settings.corrections.stall_signal == "env"
    limit = env.max_steps
    threshold = settings.success_threshold
    for step in range(limit):
        rows = np.flatnonzero(active)
        progress = reward_model(observation) if reward_model is not None else None
        stall = env_progress if stall_from_env else progress
        corrected: dict[int, np.ndarray] = {}
        if corrections is not None:
            for row in rows:
                action = corrections[row].step(None if stall is None else float(stall[row]))
                if action is not None:
                    corrected[row] = action
        driven = [row for row in rows if row not in corrected]
        if driven:  # the policy drives at least one env
            if corrections is not None and any(corrections[row].policy_reset_due for row in driven):
                policy.reset()  # an env it drives again was corrected since its chunk was planned
                for row in driven:
                    corrections[row].policy_reset_due = False
            actions = env.to_env_action(policy.act(observation))
        else:
            actions = np.zeros((env.num_envs, *env.vector.single_action_space.shape), dtype=np.float32)
        for row, action in corrected.items():
            actions[row] = action
        result = env.step(actions, active)
        recorded = frame_observations(observation, features)
        for row in rows:
            model_done = settings.end_on_model_success and bool(progress[row] >= threshold)
            last = bool(result.done[row] or model_done or step == limit - 1)
            frame = {
                **{key: values[row] for key, values in recorded.items()},
                ACTION: actions[row].copy(),
                "next.reward": np.array([result.reward[row]], dtype=np.float32),
                "next.done": np.array([last]),
                "next.success": np.array([bool(result.success[row])]),
                INTERVENTION: np.array([row in corrected]),
                "task": env.spec.task,
            }
            if progress is not None:
                frame[PROGRESS_KEY] = np.array([progress[row]], dtype=np.float32)
                frame[MODEL_SUCCESS_KEY] = np.array([bool(progress[row] >= threshold)])
            frames[row].append(frame)
            record = records[row]
            record.length += 1
            record.max_reward = max(record.max_reward, float(result.reward[row]))
            record.interventions += int(row in corrected)
            if env_progress is not None:
                env_progress[row] = result.progress[row]
                record.max_env_progress = max(record.max_env_progress or 0.0, float(env_progress[row]))
            if last:
                active[row] = False
                record.success = bool(result.success[row])
                record.ended_by = "model" if model_done and not result.done[row] else "env"
                if corrections is not None:
                    record.takeovers = corrections[row].takeovers
                if progress is not None:
                    record.final_progress = float(progress[row])
                    record.model_success = bool(progress[row] >= threshold)
                bar.update(1)
        observation = result.observation
        if not active.any():
            break
    return list(zip(frames, records, strict=True))
