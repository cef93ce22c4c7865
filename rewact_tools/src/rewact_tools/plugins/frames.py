"""What every rewact_tools plugin shares: per-frame label lookup, frame tables and label-file paths.

robocandywrapper calls `get_item_data(idx, episode_idx, item)` with `idx` the position among the
frames the dataset has *loaded*, which is not the dataset index on an episode subset, and turns any
exception raised there into a warning while the keys silently vanish. So each plugin computes and
validates the labels of every loaded frame when it is attached, and the per-item call is a lookup
by the item's own `index` that cannot fail.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from rewact_tools.candywrapper import PluginInstance
from rewact_tools.returns import FRAME_COLUMNS, dataset_frames

PathSpec = str | os.PathLike | Mapping[str, str | os.PathLike]


def loaded_frames(dataset: LeRobotDataset) -> pd.DataFrame:
    """`index, episode_index, frame_index, task_index` of the frames `dataset` has loaded, in order."""
    return dataset_frames(dataset)


def all_frames(dataset: LeRobotDataset, extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The same table for every episode of the dataset, loaded or not, read from its data files.

    Labels that depend on other episodes (a task's longest successful episode) must not change when
    only a subset is loaded, so they are computed on this table. Only the named columns are read.
    """
    meta = dataset.meta
    columns = [*FRAME_COLUMNS, *extra_columns]
    missing = [column for column in columns if column not in meta.features]
    if missing:
        raise KeyError(f"Dataset {dataset.repo_id} at {dataset.root} has no column(s) {missing}.")
    paths = sorted({Path(dataset.root) / meta.get_data_file_path(e) for e in range(meta.total_episodes)})
    absent = [str(path) for path in paths if not path.is_file()]
    if absent:
        raise FileNotFoundError(
            f"Dataset {dataset.repo_id}: data files {absent} are not on disk; labels that depend on "
            "every episode need the whole dataset downloaded."
        )
    return pd.concat([pd.read_parquet(path, columns=columns) for path in paths], ignore_index=True)


def dataset_path(spec: PathSpec, dataset: LeRobotDataset, what: str) -> Path:
    """The label file of `dataset`: `spec` itself, or its entry for the dataset's repo id or root."""
    if not isinstance(spec, Mapping):
        return Path(spec)
    root = Path(dataset.root)
    for key in (dataset.repo_id, str(root), str(root.resolve())):
        if key in spec:
            return Path(spec[key])
    raise KeyError(
        f"{what}: no file given for dataset {dataset.repo_id!r} at {root}; files are given for "
        f"{sorted(spec)} (key them by repo id or dataset root)."
    )


class FrameLabels:
    """Per-frame values of some keys, looked up by dataset `index`.

    `index` lists the frames; `values[key][i]` belongs to frame `index[i]`. Arrays of float32 or
    bool give 0-d tensors of that dtype; object arrays hold strings, returned as they are.
    """

    def __init__(self, index: np.ndarray, values: Mapping[str, np.ndarray]):
        index = np.asarray(index, dtype=np.int64)
        for key, array in values.items():
            if array.shape != index.shape:
                raise ValueError(f"Labels for {key!r} have shape {array.shape}, expected {index.shape}.")
        self.keys = list(values)
        self.values = dict(values)
        self.position = np.full(int(index.max()) + 1 if len(index) else 0, -1, dtype=np.int64)
        self.position[index] = np.arange(len(index))

    def item(self, index: Any) -> dict[str, Any]:
        position = self.position[int(index)]
        return {key: _scalar(array[position]) for key, array in self.values.items()}


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return torch.tensor(value)


class FrameLabelsInstance(PluginInstance):
    """A plugin instance serving precomputed `FrameLabels` for one dataset."""

    def __init__(self, dataset: LeRobotDataset, labels: FrameLabels):
        super().__init__(dataset)
        self.labels = labels

    def get_data_keys(self) -> list[str]:
        return list(self.labels.keys)

    def get_item_data(
        self, idx: int, episode_idx: int, accumulated_data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        # `idx` counts loaded frames only; the item's own `index` is the dataset index. The wrapper
        # always passes the item, and every loaded index was labelled at attach.
        if accumulated_data is None or "index" not in accumulated_data:
            raise KeyError(
                f"{type(self).__name__} looks labels up by the item's 'index'; got no item with one."
            )
        return self.labels.item(accumulated_data["index"])
