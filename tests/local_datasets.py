"""Small local LeRobot datasets for tests: real `LeRobotDataset`s on disk, no hub.

Observations change smoothly with time inside each episode (state drifts, image brightness ramps),
so a model can learn task progress from them in a few hundred steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def make_local_dataset(
    root: Path,
    *,
    repo_id: str = "local/test",
    episode_lengths: Sequence[int] = (12, 16, 10),
    state_dim: int | None = 2,
    action_dim: int = 2,
    env_state_dim: int | None = None,
    cameras: Sequence[str] = ("observation.image",),
    image_size: tuple[int, int] = (32, 32),
    camera_sizes: Mapping[str, tuple[int, int]] | None = None,
    fps: int = 10,
    with_next_fields: bool = False,
    tasks: Sequence[str] = ("push the block",),
    seed: int = 0,
    use_videos: bool = False,
    intervention: Callable[[int, int], bool] | None = None,
) -> LeRobotDataset:
    """Write a dataset under `root` (which must not exist) and return it, finalised and reloadable.

    Episode `e` uses task `tasks[e % len(tasks)]`. Cameras are `image_size` (height, width) unless
    `camera_sizes` gives theirs. With `with_next_fields`, the dataset carries the `next.reward`,
    `next.done` and `next.success` columns of the `lerobot/pusht` schema. With `use_videos`, cameras
    are stored as MP4 files, as on the hub (and decoded with PyAV on reload). With `intervention`,
    the dataset carries the bool `intervention` feature of `lerobot-rollout`'s DAgger strategy,
    `intervention(episode, frame)` on each frame.
    """
    rng = np.random.default_rng(seed)
    sizes = {camera: tuple((camera_sizes or {}).get(camera, image_size)) for camera in cameras}
    features: dict[str, dict] = {"action": {"dtype": "float32", "shape": (action_dim,), "names": None}}
    if state_dim is not None:
        features["observation.state"] = {"dtype": "float32", "shape": (state_dim,), "names": None}
    if env_state_dim is not None:
        features["observation.environment_state"] = {
            "dtype": "float32",
            "shape": (env_state_dim,),
            "names": None,
        }
    for camera in cameras:
        features[camera] = {
            "dtype": "video" if use_videos else "image",
            "shape": (*sizes[camera], 3),
            "names": ["height", "width", "channel"],
        }
    if with_next_fields:
        features["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
        features["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
        features["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
    if intervention is not None:
        features["intervention"] = {"dtype": "bool", "shape": (1,), "names": None}

    dataset = LeRobotDataset.create(
        repo_id=repo_id, fps=fps, features=features, root=root, use_videos=use_videos, image_writer_threads=0
    )
    for episode, length in enumerate(episode_lengths):
        offset = rng.normal(size=8)
        for frame in range(length):
            phase = frame / max(length - 1, 1)
            item: dict = {
                "action": (np.full(action_dim, phase) + 0.05 * rng.normal(size=action_dim)).astype(
                    np.float32
                ),
                "task": tasks[episode % len(tasks)],
            }
            if state_dim is not None:
                item["observation.state"] = (
                    phase * np.ones(state_dim) + 0.1 * offset[:1] + 0.02 * rng.normal(size=state_dim)
                ).astype(np.float32)
            if env_state_dim is not None:
                item["observation.environment_state"] = (
                    np.linspace(0, 1, env_state_dim) * phase + 0.02 * rng.normal(size=env_state_dim)
                ).astype(np.float32)
            for index, camera in enumerate(cameras):
                height, width = sizes[camera]
                image = np.full((height, width, 3), 40 + 180 * phase, dtype=np.float32)
                image[: int(height * phase) + 1, :, index % 3] = 250
                item[camera] = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
            if with_next_fields:
                last = frame == length - 1
                item["next.reward"] = np.array([phase], dtype=np.float32)
                item["next.done"] = np.array([last])
                item["next.success"] = np.array([last and episode % 2 == 0])
            if intervention is not None:
                item["intervention"] = np.array([bool(intervention(episode, frame))])
            dataset.add_frame(item)
        dataset.save_episode()
    dataset.finalize()
    return LeRobotDataset(repo_id, root=root, video_backend="pyav")
