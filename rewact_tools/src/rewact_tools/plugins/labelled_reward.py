"""`LabelledRewardPlugin`: per-frame reward labels from a parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact.targets import episode_lengths_from_meta
from rewact_tools.candywrapper import DatasetPlugin
from rewact_tools.plugins.frames import (
    FrameLabels,
    FrameLabelsInstance,
    PathSpec,
    dataset_path,
    loaded_frames,
)
from rewact_tools.returns import describe_frame

_POSITION_COLUMNS = ("episode_index", "frame_index")


def _read_table(path: Path, column: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"Reward label file {path} does not exist.")
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a file that is not parquet
        raise ValueError(f"Reward label file {path} is not a readable parquet file: {error}") from error
    if column not in table.columns:
        raise KeyError(f"Reward label file {path} has no column {column!r}; it has {list(table.columns)}.")
    keys = ["index"] if "index" in table.columns else list(_POSITION_COLUMNS)
    missing = [name for name in keys if name not in table.columns]
    if missing:
        raise KeyError(
            f"Reward label file {path} needs an 'index' column or 'episode_index' and 'frame_index' "
            f"to place its labels; it has {list(table.columns)}."
        )
    for name in (*keys, *(c for c in _POSITION_COLUMNS if c in table.columns)):
        if not pd.api.types.is_integer_dtype(table[name]):
            raise TypeError(
                f"Reward label file {path}: column {name!r} must hold integers, got {table[name].dtype}."
            )
    duplicated = table.duplicated(keys)
    if duplicated.any():
        row = table.loc[duplicated, keys].iloc[0].to_dict()
        raise ValueError(f"Reward label file {path} labels frame {row} more than once.")
    return table


def _check_values(path: Path, column: str, table: pd.DataFrame, value_min: float, value_max: float) -> None:
    values = table[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise TypeError(f"Reward label file {path}: column {column!r} must hold numbers, got {values.dtype}.")
    array = values.to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(array) & (array >= value_min) & (array <= value_max))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        where = {name: int(table[name].iloc[row]) for name in ("index", *_POSITION_COLUMNS) if name in table}
        raise ValueError(
            f"Reward label file {path}: column {column!r} has {int(bad.sum())} value(s) that are not finite "
            f"or outside [{value_min}, {value_max}]; first {float(array[row])} at frame {where}."
        )


def _check_inside_dataset(path: Path, table: pd.DataFrame, dataset: LeRobotDataset) -> None:
    """Rows for frames the dataset does not have mean the file belongs to another dataset."""
    lengths, _ = episode_lengths_from_meta(dataset.meta)
    if "index" in table.columns:
        outside = (table["index"] < 0) | (table["index"] >= dataset.meta.total_frames)
    else:
        length = table["episode_index"].map(lengths)
        outside = length.isna() | (table["frame_index"] < 0) | (table["frame_index"] >= length)
    if outside.any():
        row = table.loc[outside].iloc[0]
        where = {name: int(row[name]) for name in ("index", *_POSITION_COLUMNS) if name in table}
        raise ValueError(
            f"Reward label file {path} labels frame {where}, which dataset {dataset.repo_id} at "
            f"{dataset.root} does not have ({dataset.meta.total_frames} frames, {len(lengths)} episodes)."
        )


def labelled_reward_labels(
    dataset: LeRobotDataset, path: Path, column: str, key: str, value_min: float, value_max: float
) -> FrameLabels:
    """Float32 `key` for every loaded frame from `column` of the parquet at `path`, validated."""
    table = _read_table(path, column)
    _check_values(path, column, table, value_min, value_max)
    _check_inside_dataset(path, table, dataset)
    frames = loaded_frames(dataset)
    keys = ["index"] if "index" in table.columns else list(_POSITION_COLUMNS)
    merged = frames.merge(table, on=keys, how="left", suffixes=("", "_file"), indicator=True)
    missing = np.flatnonzero((merged["_merge"] == "left_only").to_numpy())
    if len(missing):
        raise ValueError(
            f"Reward label file {path} has no {column!r} label for {len(missing)} of the {len(frames)} loaded "
            f"frames of {dataset.repo_id}; first {describe_frame(frames, int(missing[0]))}."
        )
    for name in _POSITION_COLUMNS:
        if f"{name}_file" in merged.columns:
            disagree = np.flatnonzero((merged[name] != merged[f"{name}_file"]).to_numpy())
            if len(disagree):
                row = int(disagree[0])
                raise ValueError(
                    f"Reward label file {path} puts {describe_frame(frames, row)} at {name} "
                    f"{int(merged[f'{name}_file'].iloc[row])}; the file belongs to another dataset."
                )
    return FrameLabels(frames["index"].to_numpy(), {key: merged[column].to_numpy(dtype=np.float32)})


class LabelledRewardPlugin(DatasetPlugin):
    """Adds `key` (float32 scalar, default `reward`) from per-frame labels in a parquet file.

    The file has a `column` of rewards and places each row by `index` (the dataset index) or by
    `episode_index` and `frame_index`. Give one path, or a mapping from repo id (or dataset root)
    to path when several datasets are mixed. Attaching checks that every loaded frame has exactly
    one label, finite and inside [value_min, value_max].
    """

    def __init__(
        self,
        path_or_per_dataset_paths: PathSpec,
        column: str = "reward",
        key: str = "reward",
        value_min: float = 0.0,
        value_max: float = 1.0,
    ):
        if not value_min < value_max:
            raise ValueError(
                f"LabelledRewardPlugin needs value_min < value_max, got [{value_min}, {value_max}]."
            )
        self.paths = path_or_per_dataset_paths
        self.column, self.key = column, key
        self.value_min, self.value_max = value_min, value_max

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        path = dataset_path(self.paths, dataset, type(self).__name__)
        labels = labelled_reward_labels(dataset, path, self.column, self.key, self.value_min, self.value_max)
        return FrameLabelsInstance(dataset, labels)
