"""Shared pieces of the PushT benchmarks: cached datasets, in-memory training batches, a small
training loop and gym-pusht evaluation.

The benchmarks train many small policies on one CPU thread, so the data side must cost next to
nothing: every frame the policies read is loaded once into tensors (`Frames`) and batches are
gathered from them, with action chunks and padding exactly as LeRobot's `delta_timestamps` give
them (positions past the episode end repeat its last action and are flagged in `action_is_pad`).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lerobot.configs.types import NormalizationMode
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.utils.constants import ACTION
from tqdm.auto import tqdm

from lerobot_policy_actvantage.configuration_actvantage import (
    GUIDANCE_REFERENCES,
    ACTvantageConfig,
    check_guidance_scale,
)
from lerobot_policy_rewact.control_mode import INTERVENTION
from rewact_tools import compute_values, reward_model_metrics
from rewact_tools.lerobot_compat import dataset_to_policy_features
from rewact_tools.pusht import (
    EPISODES_SIDECAR,
    HAND_SPEED,
    GenerationConfig,
    generate_pusht_dataset,
    parse_mix,
)
from rewact_tools.rollouts import CorrectionSettings, PolicyRunner, RolloutSettings, make_env_spec, roll_out

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data" / "benchmarks"
"""Where generated datasets are cached (git-ignored); the same arguments reuse the same folder."""
EVAL_MAX_STEPS = 300
"""LeRobot's pusht env episode cap."""


# ------------------------------------------------------------------------------------------------
# Datasets


def dataset_name(
    mix: str, seed: int, max_steps: int, hand_speed: float = HAND_SPEED, with_image: bool = True
) -> str:
    """Folder name that identifies a generated dataset by everything that determines it."""
    slug = "_".join(f"{name}{count}" for name, count in parse_mix(mix).items())
    return f"pusht_{slug}_seed{seed}_steps{max_steps}_hand{hand_speed:g}" + ("" if with_image else "_noimage")


def add_dataset_arguments(parser: argparse.ArgumentParser, default_mix: str) -> None:
    """`--mix`, `--max-steps`, `--hand-speed`: what decides a benchmark's generated PushT data."""
    parser.add_argument("--mix", default=None, help=f"dataset mix (default {default_mix})")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="episode step limit of the generated data"
    )
    parser.add_argument(
        "--hand-speed",
        type=float,
        default=HAND_SPEED,
        help="the expert's largest command move per step, px; 0: raw commands (default %(default)s)",
    )


def pusht_dataset(
    mix: str,
    seed: int,
    max_steps: int,
    data_dir: Path = DATA_DIR,
    hand_speed: float = HAND_SPEED,
    with_image: bool = True,
    workers: int = 1,
) -> LeRobotDataset:
    """The built-in PushT dataset for `mix`, generated on first use (by `workers` processes; the
    data does not depend on how many) and reused afterwards."""
    name = dataset_name(mix, seed, max_steps, hand_speed, with_image)
    root = Path(data_dir) / name
    if not (root / EPISODES_SIDECAR).is_file():
        if root.exists():
            raise FileExistsError(
                f"{root} exists but has no {EPISODES_SIDECAR} (an interrupted generation?); delete it and rerun"
            )
        root.parent.mkdir(parents=True, exist_ok=True)
        generate_pusht_dataset(
            root,
            GenerationConfig(parse_mix(mix), seed, max_steps, hand_speed=hand_speed),
            repo_id=f"local/{name}",
            with_image=with_image,
            workers=workers,
        )
    return LeRobotDataset(f"local/{name}", root=root)


class HeldOut:
    """Held-out episodes, their outcomes and labels: everything needed to score a value model."""

    def __init__(self, dataset: LeRobotDataset, episodes: list[int], labels: pd.DataFrame, outcomes: dict):
        self.dataset = LeRobotDataset(dataset.repo_id, root=dataset.root, episodes=episodes)
        self.labels = labels
        self.outcomes = {episode: outcomes[episode] for episode in episodes}

    def score(self, policy: Any, preprocessor) -> dict:
        values = compute_values(
            policy, self.dataset, batch_size=256, preprocessor=preprocessor, progress=False
        )
        table = values.merge(self.labels, on="index", how="left", validate="one_to_one")
        if table["label"].isna().any():
            raise KeyError(
                f"No label for dataset index {int(table.loc[table['label'].isna(), 'index'].iloc[0])}"
            )
        return reward_model_metrics(table, self.outcomes)


def episode_settings(dataset: LeRobotDataset) -> dict[int, str]:
    """Quality setting (clean, noisy, ...) of every episode, from the generator's sidecar."""
    path = Path(dataset.root) / EPISODES_SIDECAR
    episodes = json.loads(path.read_text())["episodes"]
    return {int(entry["episode_index"]): str(entry["setting"]) for entry in episodes}


def held_out_split(outcomes: Mapping[int, bool | None], every: int) -> tuple[list[int], list[int]]:
    """(train, held-out) episodes: every `every`-th successful and every `every`-th failed episode is
    held out, so the held-out set has failures whenever there are `every` of them."""
    if every < 2:
        raise ValueError(f"Cannot hold out every {every}-th episode: need every >= 2")
    held_out = []
    for group in (True, False):
        episodes = sorted(e for e, outcome in outcomes.items() if bool(outcome) is group)
        held_out += episodes[every - 1 :: every]
    if not held_out:
        raise ValueError(f"Holding out every {every}-th of {len(outcomes)} episodes leaves none held out")
    return sorted(set(outcomes) - set(held_out)), sorted(held_out)


# ------------------------------------------------------------------------------------------------
# Policy settings


ENV_NORMALIZED = {
    "VISUAL": NormalizationMode.MEAN_STD,
    "STATE": NormalizationMode.MEAN_STD,
    "ENV": NormalizationMode.MEAN_STD,
    "ACTION": NormalizationMode.MEAN_STD,
}
"""LeRobot ACT's normalisation plus ENV (keypoint) features, which its default leaves in pixels."""
SMALL_ACT = {
    "dim_model": 128,
    "n_heads": 4,
    "dim_feedforward": 512,
    "n_encoder_layers": 2,
    "n_decoder_layers": 1,
    "chunk_size": 10,
    "n_action_steps": 5,
    "use_vae": False,
    "dropout": 0.1,
}
"""A small, fast ACT: thousands of steps fit in minutes on one CPU thread (keypoint input)."""
FAST_ACT = {"dim_model": 64, "n_heads": 2, "dim_feedforward": 256}
"""What SMALL_ACT changes to train ~2.7x faster per step (the decoder's matmuls dominate on CPU)."""
TINY_ACT = {
    **SMALL_ACT,
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "chunk_size": 4,
    "n_action_steps": 4,
}
"""For --quick runs, which only check that the pipeline works."""


def act_settings(quick: bool, input_keys: Iterable[str], dataset: LeRobotDataset) -> dict[str, Any]:
    """ACT config fields (small or tiny) with the features of `input_keys` and `action` from `dataset`."""
    features = dataset_to_policy_features(dataset.meta.features)
    keys = list(input_keys)
    missing = [key for key in [*keys, ACTION] if key not in features]
    if missing:
        raise KeyError(f"Dataset {dataset.repo_id} has no policy feature(s) {missing}")
    return {
        **(TINY_ACT if quick else SMALL_ACT),
        "input_features": {key: features[key] for key in keys},
        "output_features": {ACTION: features[ACTION]},
        "pretrained_backbone_weights": None,
        "device": "cpu",
    }


# ------------------------------------------------------------------------------------------------
# In-memory frames and batches


@dataclass
class Frames:
    """Observation and action columns of a dataset as tensors, rows in dataset-index order."""

    observations: dict[str, torch.Tensor]
    action: torch.Tensor
    index: torch.Tensor
    episode_index: torch.Tensor
    episode_end: torch.Tensor
    """Row one past the last frame of each row's episode (action chunks stop there)."""
    image_keys: frozenset[str]

    def __len__(self) -> int:
        return len(self.index)

    def rows_of(self, episodes: Iterable[int]) -> torch.Tensor:
        """Rows of the frames of `episodes`."""
        wanted = torch.tensor(sorted(set(episodes)), dtype=self.episode_index.dtype)
        rows = torch.nonzero(torch.isin(self.episode_index, wanted)).flatten()
        if len(rows) == 0:
            raise KeyError(f"None of the episodes {sorted(set(episodes))} is in the frames")
        return rows

    def extra_by_index(self, index: np.ndarray, values: np.ndarray) -> torch.Tensor:
        """A per-frame column given by dataset `index`, reordered to rows (every frame must appear)."""
        lookup = dict(zip(np.asarray(index).tolist(), np.asarray(values).tolist(), strict=True))
        missing = [i for i in self.index.tolist() if i not in lookup]
        if missing:
            raise KeyError(f"No value given for dataset index {missing[0]} ({len(missing)} missing)")
        return torch.tensor([lookup[i] for i in self.index.tolist()])

    def batch(self, rows: torch.Tensor, chunk_size: int, extras: Mapping[str, torch.Tensor] = {}) -> dict:
        """The training batch of `rows`: observations, an action chunk with its pad mask, ids, extras."""
        offsets = torch.arange(chunk_size)
        positions = rows[:, None] + offsets
        end = self.episode_end[rows][:, None]
        is_pad = positions >= end
        positions = torch.minimum(positions, end - 1)
        batch: dict[str, Any] = {}
        for key, column in self.observations.items():
            value = column[rows]
            if key in self.image_keys:
                value = value.permute(0, 3, 1, 2).to(torch.float32).div_(255)
            batch[key] = value
        batch["action"] = self.action[positions]
        batch["action_is_pad"] = is_pad
        batch["index"] = self.index[rows]
        batch["episode_index"] = self.episode_index[rows]
        for key, column in extras.items():
            batch[key] = column[rows]
        return batch


def load_frames(dataset: LeRobotDataset, observation_keys: Iterable[str]) -> Frames:
    """Read `observation_keys`, `action` and the ids of every frame into memory (images as uint8 HWC)."""
    keys = list(observation_keys)
    missing = [key for key in keys if key not in dataset.hf_dataset.column_names]
    if missing:
        raise KeyError(f"Dataset {dataset.repo_id} at {dataset.root} has no column(s) {missing}")
    table = dataset.hf_dataset.select_columns([*keys, "action", "index", "episode_index"]).with_format(
        "numpy"
    )
    columns = table[:]
    order = np.argsort(columns["index"], kind="stable")
    episode = torch.from_numpy(columns["episode_index"][order].astype(np.int64))
    # Episodes are contiguous in index order: each row's episode ends where the next episode starts.
    starts = torch.nonzero(torch.diff(episode, prepend=episode[:1] - 1)).flatten()
    bounds = torch.cat([starts, torch.tensor([len(episode)])])
    episode_end = bounds[1:].repeat_interleave(torch.diff(bounds))
    image_keys = frozenset(key for key in keys if key in dataset.meta.image_keys)
    observations = {
        key: torch.from_numpy(np.ascontiguousarray(np.stack(columns[key][order]))) for key in keys
    }
    for key in keys:
        if key not in image_keys:
            observations[key] = observations[key].to(torch.float32)
    return Frames(
        observations=observations,
        action=torch.from_numpy(np.stack(columns["action"][order]).astype(np.float32)),
        index=torch.from_numpy(columns["index"][order].astype(np.int64)),
        episode_index=episode,
        episode_end=episode_end,
        image_keys=image_keys,
    )


# ------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainSettings:
    steps: int
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip_norm: float = 10.0
    seed: int = 0
    time_budget_s: float | None = None
    """Stop early when training has taken this long on `clock` (for budgeted learning curves)."""
    clock: str = "wall"
    """`wall` (elapsed time) or `cpu` (this process's CPU time, which other jobs on a shared machine
    do not inflate: with one torch thread it is the CPU budget the training really used)."""
    checkpoint_every_s: float | None = None
    """Also call `on_checkpoint` each time training time on `clock` passes a multiple of this."""
    lr_schedule: str = "constant"
    """`constant`, or `cosine`: the learning rate decays from `lr` to 0 over `steps` (half a cosine)."""


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
LR_SCHEDULES = ("constant", "cosine")


def train_policy(
    policy: torch.nn.Module,
    preprocessor: Callable[[dict], dict],
    frames: Frames,
    rows: torch.Tensor,
    settings: TrainSettings,
    extras: Mapping[str, torch.Tensor] = {},
    checkpoints: Iterable[int] = (),
    on_checkpoint: Callable[[int, float], None] | None = None,
    desc: str = "train",
    sample_weighter: Any = None,
    row_weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """Train `policy` on random batches of `rows` with AdamW; returns steps done, time and last loss.

    `row_weights` (one per row, >= 0) draws rows in proportion to it instead of uniformly: a
    resampling form of per-frame loss weights (IWR, Sirius) that every policy's loss accepts.

    With a LeRobot 0.6 `sample_weighter` (e.g. RA-BC's), each sample's loss is weighted as
    `lerobot-train` weights it: `(loss_i * w_i).sum() / (w.sum() + 1e-6)` over
    `policy.forward(batch, reduction="none")`.

    `on_checkpoint(step, train_seconds)` runs after each step in `checkpoints`, each time training
    time passes a multiple of `settings.checkpoint_every_s`, and after the last step, with the policy
    in training mode again afterwards; its time is not counted as training. Training time is
    measured on `settings.clock`.
    """
    if len(rows) == 0:
        raise ValueError("train_policy got no rows to train on")
    if settings.clock not in CLOCKS:
        raise ValueError(f"TrainSettings.clock={settings.clock!r} is not one of {list(CLOCKS)}")
    if settings.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"TrainSettings.lr_schedule={settings.lr_schedule!r} is not one of {LR_SCHEDULES}")
    if row_weights is not None and (row_weights.shape != rows.shape or not (row_weights >= 0).all()):
        raise ValueError(f"row_weights must be one weight >= 0 per row ({tuple(rows.shape)})")
    clock = CLOCKS[settings.clock]
    next_timed_checkpoint = settings.checkpoint_every_s or math.inf
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    chunk_size = policy.config.chunk_size
    optimizer = torch.optim.AdamW(
        policy.get_optim_params(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    if settings.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda done: 0.5 * (1.0 + math.cos(math.pi * done / settings.steps))
        )
    else:
        scheduler = None
    marks = set(checkpoints)
    policy.train()
    train_seconds, loss_value, step = 0.0, math.nan, 0
    for step in tqdm(range(1, settings.steps + 1), desc=desc, unit="step", mininterval=5.0):
        start = clock()
        if row_weights is None:
            drawn = torch.randint(len(rows), (settings.batch_size,), generator=generator)
        else:
            drawn = torch.multinomial(row_weights, settings.batch_size, replacement=True, generator=generator)
        picked = rows[drawn]
        batch = preprocessor(frames.batch(picked, chunk_size, extras))
        if sample_weighter is None:
            loss, _ = policy.forward(batch)
        else:
            weights, _ = sample_weighter.compute_batch_weights(batch)
            per_sample, _ = policy.forward(batch, reduction="none")
            loss = (per_sample * weights).sum() / (weights.sum() + 1e-6)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.grad_clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_value = loss.item()
        train_seconds += clock() - start
        out_of_time = settings.time_budget_s is not None and train_seconds >= settings.time_budget_s
        timed = train_seconds >= next_timed_checkpoint
        while train_seconds >= next_timed_checkpoint:
            next_timed_checkpoint += settings.checkpoint_every_s
        if on_checkpoint is not None and (step in marks or timed or step == settings.steps or out_of_time):
            on_checkpoint(step, train_seconds)
            policy.train()
        if out_of_time:
            break
    return {"steps": step, "train_seconds": train_seconds, "final_loss": loss_value}


# ------------------------------------------------------------------------------------------------
# gym-pusht evaluation


def pusht_corrections(patience: int, duration: int, max_takeovers: int = 3) -> CorrectionSettings:
    """The benchmarks' simulated corrections: the clean expert (`rewact_tools.pusht.corrector`) takes
    over once the block's coverage has not risen 0.01 above its best for `patience` steps, drives
    for `duration` steps and hands back, at most `max_takeovers` times an episode. The stall signal
    is the env's own coverage, a perfect progress detector, the same for every arm."""
    return CorrectionSettings(
        stall_steps=patience,
        stall_signal="env",
        stall_epsilon=0.01,
        steps=duration,
        max_takeovers=max_takeovers,
    )


@dataclass
class RolloutEpisode:
    """One closed-loop episode: per step the observation, the action applied and whether the
    corrector chose it (`intervention`), and how the episode went."""

    seed: int
    state: list = field(default_factory=list)
    environment_state: list = field(default_factory=list)
    action: list = field(default_factory=list)
    intervention: list = field(default_factory=list)
    success: bool = False
    max_coverage: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.action)


def evaluate_pusht(
    policy: Any,
    preprocessor: Callable[[dict], dict],
    postprocessor: Callable[[Any], Any],
    episodes: int,
    seed: int,
    env_batch: int = 10,
    max_steps: int = EVAL_MAX_STEPS,
    desc: str = "eval",
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Roll `policy` out in gym-pusht (keypoint + agent-position observations) for `episodes` episodes.

    Episodes run `env_batch` at a time so the policy sees a batch; episode i is reset with seed
    `seed * 100_000 + i`, or with `seeds[i]` when `seeds` is given (e.g. the seeds of a dataset's
    episodes, to start from its start states; then `episodes` is `len(seeds)`). An episode ends at
    success (coverage > 0.95) or after `max_steps`. Returns the success rate, the mean over episodes
    of the episode's maximum coverage, the throughput (successes per 1000 environment steps) and,
    per episode, success, maximum coverage and steps taken.
    """
    reset_seeds = [seed * 100_000 + i for i in range(episodes)] if seeds is None else list(seeds)
    rollouts = roll_out_pusht(policy, preprocessor, postprocessor, reset_seeds, env_batch, max_steps, desc)
    successes = [episode.success for episode in rollouts]
    steps = [episode.steps for episode in rollouts]
    return {
        "episodes": len(rollouts),
        "success_rate": float(np.mean(successes)),
        "mean_max_coverage": float(np.mean([episode.max_coverage for episode in rollouts])),
        "successes_per_1000_steps": 1000.0 * sum(successes) / sum(steps),
        "successes": successes,
        "max_coverages": [round(episode.max_coverage, 4) for episode in rollouts],
        "steps": steps,
    }


def roll_out_pusht(
    policy: Any,
    preprocessor: Callable[[dict], dict],
    postprocessor: Callable[[Any], Any],
    seeds: Sequence[int],
    env_batch: int = 10,
    max_steps: int = EVAL_MAX_STEPS,
    desc: str = "rollouts",
    corrections: CorrectionSettings | None = None,
) -> list[RolloutEpisode]:
    """One recorded gym-pusht episode per reset seed, `env_batch` envs at a time, the policy in eval
    mode; with `corrections`, a scripted corrector takes over where the policy stalls. The library's
    rollout loop (`rewact_tools.rollouts.roll_out`, what `collect_rollouts.py` records) in LeRobot's
    pusht env with keypoint observations, its episodes kept in memory."""
    policy.eval()
    spec = make_env_spec("pusht", obs_type="environment_state_agent_pos", max_steps=max_steps)
    settings = RolloutSettings(
        episodes=len(seeds), batch_size=env_batch, corrections=corrections or CorrectionSettings()
    )
    runner = PolicyRunner(policy, preprocessor, postprocessor)
    return [
        RolloutEpisode(
            seed=record.seed,
            state=[frame["observation.state"] for frame in frames],
            environment_state=[frame["observation.environment_state"] for frame in frames],
            action=[frame[ACTION] for frame in frames],
            intervention=[bool(frame[INTERVENTION][0]) for frame in frames],
            success=record.success,
            max_coverage=record.max_env_progress,
        )
        for frames, record in roll_out(runner, spec, settings, seeds=seeds, desc=desc)
    ]


def add_guidance_reference_argument(parser: argparse.ArgumentParser) -> None:
    """--guidance-reference: what a benchmark's guided ACTvantage arms steer away from."""
    parser.add_argument(
        "--guidance-reference",
        choices=GUIDANCE_REFERENCES,
        default="null",
        help="what the guided evaluations contrast positive with (default null: classifier-free)",
    )


def refuse_invalid_guidance(
    parser: argparse.ArgumentParser, flags: str, betas: Iterable[float], reference: str
) -> None:
    """Each guidance scale in `betas` checked by the policy's own rule before any training (the arms
    train with its default dropout); an invalid one is a usage error naming `flags`."""
    try:
        for beta in betas:
            check_guidance_scale(beta, ACTvantageConfig.advantage_dropout, reference)
    except ValueError as error:
        parser.error(f"{flags}: {error}")


@contextmanager
def guidance(policy, beta: float | None) -> Iterator[None]:
    """An ACTvantage `policy` at guidance scale `beta` inside the block and back at 1 after, the scale
    it trains and is fine-tuned at; `beta` None (an arm without guidance) leaves the policy as it is."""
    if beta is None:
        yield
        return
    policy.config.guidance_scale = beta
    try:
        yield
    finally:
        policy.config.guidance_scale = 1.0


def evaluate_guided(
    args, policy, preprocessor, postprocessor, beta: float | None, desc: str
) -> dict[str, Any]:
    """`evaluate_pusht` with a closed-loop benchmark's evaluation arguments (--eval-episodes,
    --eval-seed, --env-batch, --eval-max-steps), the policy at guidance scale `beta` (`guidance`)."""
    with guidance(policy, beta):
        return evaluate_pusht(
            policy,
            preprocessor,
            postprocessor,
            episodes=args.eval_episodes,
            seed=args.eval_seed,
            env_batch=args.env_batch,
            max_steps=args.eval_max_steps,
            desc=desc,
        )


# ------------------------------------------------------------------------------------------------
# Worker processes


PARENT_POLL_SECONDS = 1.0


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker once `parent_pid` is gone (a SIGKILLed parent cannot terminate its pool)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _start_watched_worker(parent_pid: int, initializer: Callable[..., None], *initargs: Any) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    initializer(*initargs)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class SpawnPool:
    """Benchmark jobs in `workers` spawned processes (fresh interpreters, whatever threads torch has
    started here), each set up once by `initializer(*initargs, scratch)` with a scratch folder that
    lives as long as the pool. Results come back in the order jobs finish; a failed job raises here,
    and leaving the block terminates the workers, so a failure stops the run instead of waiting for
    the other jobs. The workers never outlive the run: inside the block SIGTERM leaves it like an
    error (workers terminated, scratch removed), and a worker whose parent died (SIGKILL) exits
    within PARENT_POLL_SECONDS instead of computing on for nobody."""

    def __init__(self, workers: int, initializer: Callable[..., None], initargs: tuple):
        self.workers, self.initializer, self.initargs = workers, initializer, initargs
        self.pending = 0
        self._finished: queue.Queue = queue.Queue()

    def __enter__(self) -> SpawnPool:
        self._scratch = tempfile.TemporaryDirectory()
        self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._pool = multiprocessing.get_context("spawn").Pool(
            self.workers,
            initializer=_start_watched_worker,
            initargs=(os.getpid(), self.initializer, *self.initargs, Path(self._scratch.name)),
        )
        return self

    def __exit__(self, *exc_info) -> None:
        self._pool.terminate()
        self._pool.join()
        self._scratch.cleanup()
        signal.signal(signal.SIGTERM, self._previous_sigterm)

    def submit(self, key: Any, function: Callable, *args: Any) -> None:
        """Run `function(*args)` in a worker; its result comes back from `next_result` with `key`."""
        self.pending += 1
        self._pool.apply_async(
            function,
            args,
            callback=lambda result: self._finished.put((key, result)),
            error_callback=lambda error: self._finished.put((key, error)),
        )

    def next_result(self) -> tuple[Any, Any]:
        """`(key, result)` of the next job to finish (blocking)."""
        key, result = self._finished.get()
        self.pending -= 1
        if isinstance(result, BaseException):
            raise RuntimeError(f"benchmark job {key} failed") from result
        return key, result


# ------------------------------------------------------------------------------------------------
# Figures


def save_figure(figure: Any, path: Path) -> None:
    """Lay out, write (PNG at 100 dpi, atomically, creating the folder) and close a benchmark's
    matplotlib figure."""
    import matplotlib.pyplot as plt

    from rewact_tools.plotting import write_figure

    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    plt.close(figure)
