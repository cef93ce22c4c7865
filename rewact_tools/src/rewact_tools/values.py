"""Value inference over a whole dataset (SPEC §4.4): the RewACT value of every frame, batched.

Batching the model is half of the speed-up; the other half is reading. `LeRobotDataset.__getitem__`
builds one item at a time (about 0.1 ms per frame even without images, more than a small value
model needs per frame in a batch), so when a dataset stores its frames in its table (no videos,
no `delta_timestamps`, no image transforms) whole batches of the observation columns are read at
once instead, converted exactly as LeRobot converts a single item. Other datasets are read item by
item through a DataLoader.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from lerobot_policy_rewact import RewACTPolicy, make_rewact_pre_post_processors
from rewact_tools.distributed import gather_pieces, is_main_process, my_share
from rewact_tools.lerobot_compat import dataset_to_policy_features

VALUE_COLUMNS = ("index", "episode_index", "frame_index", "value")
_ID_COLUMNS = VALUE_COLUMNS[:3]


class FrameBatches(Dataset):
    """Consecutive batches of a LeRobotDataset's observation and id columns, read from its table.

    Item `b` is the dict of frames `b * batch_size` up to the next batch, as stacked tensors; images
    become float32 `[B, C, H, W]` in [0, 1], as LeRobot's per-item reader makes them.
    """

    def __init__(self, dataset: LeRobotDataset, batch_size: int):
        columns = [name for name in dataset.hf_dataset.column_names if name.startswith("observation.")]
        self.image_keys = set(dataset.meta.image_keys) & set(columns)
        self.table = dataset.hf_dataset.select_columns([*columns, *_ID_COLUMNS]).with_format("numpy")
        self.batch_size = batch_size

    @staticmethod
    def supports(dataset: Any) -> bool:
        """Whether batches read from the table equal the dataset's own items."""
        return (
            isinstance(dataset, LeRobotDataset)
            and dataset.hf_dataset is not None
            and dataset.delta_timestamps is None
            and dataset.image_transforms is None
            and not dataset.meta.video_keys
        )

    def __len__(self) -> int:
        return math.ceil(len(self.table) / self.batch_size)

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        start = position * self.batch_size
        rows = self.table[start : start + self.batch_size]
        batch = {}
        for key, array in rows.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if key in self.image_keys:
                if tensor.ndim == 3:  # single-channel images are stored without a channel axis
                    tensor = tensor.unsqueeze(-1)
                tensor = tensor.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
            batch[key] = tensor
        return batch


def check_features_match(config: Any, dataset: Any) -> None:
    """Raise unless `dataset` has every input feature of `config`, with the same shape.

    A checkpoint trained on other data would otherwise fail deep inside the model (a missing key, a
    matrix-shape error) or, worse, run on a camera of the same name and another size.
    """
    where = f"dataset {getattr(dataset, 'repo_id', '')} at {dataset.meta.root}"
    check_input_features(config, dataset.meta.features, where)


def check_input_features(config: Any, features: dict[str, dict], where: str) -> None:
    """Raise unless the LeRobot dataset `features` (as in `info.json`) provide every input feature of
    `config` with the same shape; `where` names their source in the message."""
    available = dataset_to_policy_features(features)
    missing = sorted(key for key in config.input_features if key not in available)
    if missing:
        raise KeyError(
            f"{where} lacks the checkpoint's input feature(s) {missing}; the checkpoint needs "
            f"{sorted(config.input_features)} and it has {sorted(available)}"
        )
    for key, feature in config.input_features.items():
        if tuple(available[key].shape) != tuple(feature.shape):
            raise ValueError(
                f"{where}: feature {key!r} has shape {tuple(available[key].shape)}, but the checkpoint "
                f"was trained with shape {tuple(feature.shape)}"
            )


def _loader(dataset: Any, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """This process's batches: all of them, or its share under a multi-process launch."""
    if FrameBatches.supports(dataset):
        batches = FrameBatches(dataset, batch_size)
        mine = Subset(batches, my_share(len(batches)))
        return DataLoader(mine, batch_size=None, num_workers=num_workers, pin_memory=pin_memory)
    frames = Subset(dataset, my_share(len(dataset)))
    return DataLoader(
        frames, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory
    )


def compute_values(
    policy: RewACTPolicy,
    dataset: LeRobotDataset,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    preprocessor: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Predicted value of every frame `dataset` has loaded, as a table sorted by `index`.

    Columns `index`, `episode_index`, `frame_index` (int64) and `value` (float32, in the policy's
    value range). Inputs are normalised by `preprocessor`, by default one built from the policy's
    config and `dataset.meta.stats`; pass the one saved with a checkpoint
    (`rewact_tools.make_pre_post_processors(config, pretrained_path=...)`) to normalise exactly as
    in training. `device` defaults to the policy config's device; the policy is moved there. Open
    the dataset without `delta_timestamps`: values need the current frame only. In a process group
    of several processes (`rewact_tools.distributed.join_launch`) each predicts its share of the
    batches and every process returns the whole table.
    """
    if batch_size < 1:
        raise ValueError(f"compute_values needs batch_size >= 1, got {batch_size}.")
    if len(dataset) == 0:
        raise ValueError(f"compute_values got an empty dataset ({getattr(dataset, 'repo_id', dataset)}).")
    check_features_match(policy.config, dataset)
    device = torch.device(device if device is not None else policy.config.device)
    if preprocessor is None:
        preprocessor, _ = make_rewact_pre_post_processors(policy.config, dataset.meta.stats)
    policy.to(device).eval()
    loader = _loader(dataset, batch_size, num_workers, pin_memory=device.type == "cuda")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in VALUE_COLUMNS}
    with torch.inference_mode():
        bar = tqdm(
            loader, desc="Predicting values", unit="batch", disable=not progress or not is_main_process()
        )
        for batch in bar:
            for name in _ID_COLUMNS:
                columns[name].append(batch[name].numpy().astype(np.int64).reshape(-1))
            observation = {
                key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                for key, value in preprocessor(batch).items()
                if key.startswith("observation.")
            }
            columns["value"].append(policy.predict_value(observation).float().cpu().numpy())
    pieces = gather_pieces(
        {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
    )
    table = pd.DataFrame(
        {name: np.concatenate([piece[name] for piece in pieces]) for name in VALUE_COLUMNS}
    ).astype({name: np.int64 for name in _ID_COLUMNS} | {"value": np.float32})
    return table.sort_values("index", kind="stable").reset_index(drop=True)
