"""Write scripted gym-pusht episodes as a local LeRobot dataset with the `lerobot/pusht` schema.

Besides LeRobot's own files, the dataset root gets
- `candywrapper_plugins/episode_outcome/outcomes.json`: success / failure per episode, as
  robocandywrapper's `EpisodeOutcomePlugin` reads it;
- `rewact_extensions/pusht_episodes.json`: how each episode was made (quality setting, seed) and
  how it went (success, length, final and max coverage, and `planning_failure`: why the expert
  ended it early, or null), so results can be sliced by setting.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from tqdm import tqdm

from rewact_tools.atomic import write_json
from rewact_tools.dataset_progress import datasets_progress_bars_disabled
from rewact_tools.outcomes import write_episode_outcomes
from rewact_tools.pusht.config import GenerationConfig
from rewact_tools.pusht.quality import SETTINGS
from rewact_tools.pusht.rollout import IMAGE_SIZE, EpisodeResult, make_env, rollout_episode

FPS = 10
"""gym-pusht's control rate."""
TASK = "Push the T-shaped block onto the T-shaped target."
EPISODES_SIDECAR = Path("rewact_extensions/pusht_episodes.json")

_XY = {"motors": ["motor_0", "motor_1"]}  # as in lerobot/pusht
FEATURES: dict[str, dict] = {
    "observation.image": {
        "dtype": "image",
        "shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
        "names": ["height", "width", "channel"],
    },
    "observation.state": {"dtype": "float32", "shape": (2,), "names": _XY},
    "observation.environment_state": {
        "dtype": "float32",
        "shape": (16,),
        "names": [f"keypoint_{point}_{axis}" for point in range(8) for axis in "xy"],
    },
    "action": {"dtype": "float32", "shape": (2,), "names": _XY},
    "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
    "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    "next.success": {"dtype": "bool", "shape": (1,), "names": None},
}


IMAGE_KEY = "observation.image"


def dataset_features(with_image: bool = True) -> dict[str, dict]:
    """The dataset schema; without the image for keypoint-only policies (`lerobot-eval
    --env.obs_type=environment_state_agent_pos` gives them no image)."""
    return FEATURES if with_image else {key: spec for key, spec in FEATURES.items() if key != IMAGE_KEY}


def generate_pusht_dataset(
    root: Path | str,
    config: GenerationConfig,
    repo_id: str = "local/pusht",
    image_writer_threads: int = 0,
    with_image: bool = True,
    workers: int = 1,
) -> list[EpisodeResult]:
    """Roll out and write every episode of `config` into a new dataset at `root` (must not exist).

    With `workers` > 1 the episodes are rolled out in that many processes and written here in order;
    each episode depends on its own seed only, so the data is the same for any number of workers.
    Returns the episode results, without their frames (each is dropped once written), in episode order.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"Dataset root {root} already exists; choose a new folder")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    dataset = LeRobotDataset.create(
        repo_id=repo_id,
        fps=FPS,
        features=dataset_features(with_image),
        root=root,
        use_videos=False,
        image_writer_threads=image_writer_threads,
    )
    plan = config.episode_plan()
    results = []
    # `datasets` shows a bar per saved episode; one bar over episodes is what a reader wants here.
    with datasets_progress_bars_disabled():
        try:
            episodes = _rollouts(plan, config, with_image, workers)
            for result in tqdm(episodes, total=len(plan), desc="PushT episodes", unit="episode"):
                for frame in result.frames:
                    dataset.add_frame({**frame, "task": TASK})
                dataset.save_episode()
                result.frames = []
                results.append(result)
        finally:
            dataset.finalize()
    write_episode_outcomes(root, {index: result.success for index, result in enumerate(results)})
    write_json(root / EPISODES_SIDECAR, _sidecar(config, results))
    return results


def _rollouts(
    plan: list[tuple[str, int]], config: GenerationConfig, with_image: bool, workers: int
) -> Iterator[EpisodeResult]:
    """The episodes of `plan` in order, rolled out here or, with several workers, in a process pool."""
    if workers == 1:
        env = make_env(config.max_steps)
        try:
            for setting, seed in plan:
                yield _rollout(env, config, setting, seed, with_image)
        finally:
            env.close()
        return
    # spawn: a fresh interpreter per worker, whatever threads the caller (torch, a writer) runs.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(config, with_image)) as pool:
        yield from pool.imap(_rollout_in_worker, plan)


def _rollout(env, config: GenerationConfig, setting: str, seed: int, with_image: bool) -> EpisodeResult:
    return rollout_episode(
        env,
        SETTINGS[setting],
        seed,
        config.max_steps,
        config.noise_scale,
        render=with_image,
        hand_speed=config.hand_speed,
    )


_worker: dict = {}
"""A pool worker's own env and what every episode shares (config, with_image), set by `_start_worker`."""


def _start_worker(config: GenerationConfig, with_image: bool) -> None:
    _worker.update(env=make_env(config.max_steps), config=config, with_image=with_image)


def _rollout_in_worker(episode: tuple[str, int]) -> EpisodeResult:
    setting, seed = episode
    return _rollout(_worker["env"], _worker["config"], setting, seed, _worker["with_image"])


def _sidecar(config: GenerationConfig, results: list[EpisodeResult]) -> dict:
    return {
        "generator": "rewact_tools.pusht (scripts/make_pusht_dataset.py)",
        "seed": config.seed,
        "max_steps": config.max_steps,
        "noise_scale": config.noise_scale,
        "hand_speed": config.hand_speed,
        "mix": dict(config.mix),
        "task": TASK,
        "settings": {name: SETTINGS[name].as_dict() for name in config.mix},
        "episodes": [
            {
                "episode_index": index,
                "setting": result.setting,
                "seed": result.seed,
                "success": result.success,
                "length": result.length,
                "final_coverage": round(result.final_coverage, 6),
                "max_coverage": round(result.max_coverage, 6),
                "planning_failure": result.planning_failure,
            }
            for index, result in enumerate(results)
        ],
    }


def summarize(results: list[EpisodeResult]) -> str:
    """A table of episodes, success rate, mean final / max coverage and length per setting and overall,
    and the episodes a planning failure ended, if any."""
    groups: dict[str, list[EpisodeResult]] = {}
    for result in results:
        groups.setdefault(result.setting, []).append(result)
    groups["all"] = list(results)
    lines = [f"{'setting':<8} {'episodes':>8} {'success':>8} {'final cov':>9} {'max cov':>8} {'length':>7}"]
    for name, group in groups.items():
        lines.append(
            f"{name:<8} {len(group):>8} {np.mean([r.success for r in group]):>8.1%} "
            f"{np.mean([r.final_coverage for r in group]):>9.3f} {np.mean([r.max_coverage for r in group]):>8.3f} "
            f"{np.mean([r.length for r in group]):>7.1f}"
        )
    failed = [index for index, result in enumerate(results) if result.planning_failure is not None]
    if failed:
        lines.append(f"Ended early by a planning failure (block out of reach): episodes {failed}")
    return "\n".join(lines)
