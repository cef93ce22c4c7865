"""`DenseRewardPlugin`: task-progress labels from keypoints, else linear progress (SPEC §4.1–4.2)."""

from __future__ import annotations

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact.reward_labels import dense_reward_table
from lerobot_policy_rewact.targets import episode_lengths_from_meta
from rewact_tools.candywrapper import DatasetPlugin
from rewact_tools.plugins.frames import FrameLabels, FrameLabelsInstance, loaded_frames


def dense_reward_labels(
    dataset: LeRobotDataset,
    key: str = "reward",
    value_min: float = 0.0,
    value_max: float = 1.0,
    start: float = 0.05,
    end: float = 0.95,
) -> FrameLabels:
    """Float32 `key` for every loaded frame: the keypoint sidecar's labels for the episodes it has,
    linear progress for the others; the same targets RewACT derives from the dataset itself.

    The sidecar is validated against every episode of the dataset (not only the loaded ones), so
    a malformed file raises here, naming the file, the episode and the entry.
    """
    lengths, _ = episode_lengths_from_meta(dataset.meta)
    table = dense_reward_table(
        dataset.root,
        lengths,
        dataset.meta.fps,
        value_min=value_min,
        value_max=value_max,
        start=start,
        end=end,
    )
    frames = loaded_frames(dataset)
    values = np.empty(len(frames), dtype=np.float32)
    frame_index = frames["frame_index"].to_numpy()
    for episode, rows in frames.groupby("episode_index").indices.items():
        values[rows] = table[int(episode)][frame_index[rows]]
    return FrameLabels(frames["index"].to_numpy(), {key: values})


class DenseRewardPlugin(DatasetPlugin):
    """Adds `key` (float32 scalar, default `reward`): dense task progress in [value_min, value_max].

    Labels come from `<root>/rewact_extensions/reward_keypoints.json` where it labels an episode,
    and from linear progress (0 until `start` of the episode, 1 from `end`) elsewhere.
    """

    def __init__(
        self,
        value_min: float = 0.0,
        value_max: float = 1.0,
        start: float = 0.05,
        end: float = 0.95,
        key: str = "reward",
    ):
        self.value_min, self.value_max = value_min, value_max
        self.start, self.end = start, end
        self.key = key

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        labels = dense_reward_labels(dataset, self.key, self.value_min, self.value_max, self.start, self.end)
        return FrameLabelsInstance(dataset, labels)
