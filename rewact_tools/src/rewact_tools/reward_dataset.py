"""`LeRobotDatasetWithReward`: dense reward labels on a LeRobotDataset, without robocandywrapper."""

from __future__ import annotations

from typing import Any

from lerobot.datasets.lerobot_dataset import LeRobotDataset
from torch.utils.data import Dataset

from rewact_tools.plugins.dense_reward import dense_reward_labels


class LeRobotDatasetWithReward(Dataset):
    """`dataset`'s items plus `key` (float32 scalar, default `reward`): the labels of
    `DenseRewardPlugin` (keypoint sidecar, else linear progress), computed and validated once here.

    Any other attribute (`meta`, `fps`, `num_frames`, ...) is the wrapped dataset's.
    """

    def __init__(
        self,
        dataset: LeRobotDataset,
        value_min: float = 0.0,
        value_max: float = 1.0,
        start: float = 0.05,
        end: float = 0.95,
        key: str = "reward",
    ):
        if key in dataset.meta.features:
            raise ValueError(
                f"Dataset {dataset.repo_id} already has a feature {key!r}; choose another key for the reward."
            )
        self.dataset = dataset
        self.labels = dense_reward_labels(dataset, key, value_min, value_max, start, end)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = self.dataset[position]
        item.update(self.labels.item(item["index"]))
        return item

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found on the wrapper; `dataset` itself must not recurse
        # (it is absent while an unpickled copy is being rebuilt in a DataLoader worker).
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
