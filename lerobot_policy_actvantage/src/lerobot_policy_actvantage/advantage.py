"""Advantage labels: from batch values or a precomputed parquet to the binary "positive" label."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

# Rows of the indicator embedding. "Dropped" means NULL, never NEGATIVE.
NEGATIVE, POSITIVE, NULL = 0, 1, 2
NUM_INDICATORS = 3

# Marks a dataset index that the advantage file does not cover.
MISSING = -1


def advantage_to_positive(advantage: Tensor, threshold: float, key: str, batch_size: int) -> Tensor:
    """One bool per sample: bools are taken as is, integers must be ±1, floats are `> threshold`."""
    values = advantage.reshape(-1)
    if values.numel() != batch_size:
        raise ValueError(
            f"batch[{key!r}] has shape {tuple(advantage.shape)}; expected one advantage per sample "
            f"(batch size {batch_size})."
        )
    if values.dtype == torch.bool:
        return values
    if not values.is_floating_point():
        invalid = values[(values != 1) & (values != -1)]
        if invalid.numel():
            raise ValueError(f"Integer batch[{key!r}] must hold -1 or +1, got {invalid[0].item()}.")
        return values == 1
    if torch.isnan(values).any():
        raise ValueError(f"batch[{key!r}] contains NaN advantages; every training frame needs a label.")
    return values > threshold


@dataclass(frozen=True)
class AdvantageTable:
    """Dense per-dataset-index labels read from an advantages parquet.

    `positive[i]` is 1/0 for a labelled frame and MISSING otherwise; `episode_index[i]` (when the
    file has that column) lets a lookup detect that the file belongs to another dataset.
    """

    path: str
    positive: Tensor
    episode_index: Tensor | None


def _column(table: pa.Table, name: str, path: str) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        raise ValueError(
            f"Advantage file {path}: column {name!r} has {column.null_count} empty (null/NaN) values."
        )
    return column.to_numpy()


def _read_parquet(path: str) -> pa.Table:
    if not Path(path).is_file():
        raise FileNotFoundError(f"Advantage file {path} does not exist.")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"Advantage file {path} is not a readable parquet file: {error}") from error
    missing = [name for name in ("index", "advantage") if name not in schema.names]
    if missing:
        raise ValueError(
            f"Advantage file {path} lacks column(s) {missing}; it has {schema.names} "
            "(expected at least 'index' and 'advantage', as written by precompute_advantage)."
        )
    wanted = [name for name in ("index", "advantage", "positive", "episode_index") if name in schema.names]
    table = pq.read_table(path, columns=wanted)
    if table.num_rows == 0:
        raise ValueError(f"Advantage file {path} has no rows.")
    return table


def _indices(table: pa.Table, path: str) -> np.ndarray:
    index = _column(table, "index", path)
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"Advantage file {path}: column 'index' must hold integers, got {index.dtype}.")
    if index.min() < 0:
        raise ValueError(f"Advantage file {path}: negative dataset index {int(index.min())}.")
    unique, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"Advantage file {path}: dataset index {int(unique[counts > 1][0])} appears twice.")
    return index.astype(np.int64)


def _positive_labels(table: pa.Table, index: np.ndarray, threshold: float, path: str) -> np.ndarray:
    """The file's `positive` column when present (it carries the per-task threshold), else thresholding."""
    if "positive" in table.column_names:
        positive = _column(table, "positive", path)
        if positive.dtype != np.bool_:
            if not np.issubdtype(positive.dtype, np.integer) or not np.isin(positive, (0, 1)).all():
                raise ValueError(f"Advantage file {path}: column 'positive' must hold booleans.")
        return positive.astype(bool)
    advantage = _column(table, "advantage", path).astype(np.float64)
    non_finite = ~np.isfinite(advantage)
    if non_finite.any():
        raise ValueError(
            f"Advantage file {path}: advantage {advantage[non_finite][0]} at dataset index "
            f"{int(index[non_finite][0])} is not finite."
        )
    return advantage > threshold


def load_advantage_table(path: str | Path, threshold: float) -> AdvantageTable:
    """Read and validate an advantages parquet (SPEC §4.5) into dense lookup tensors."""
    path = str(path)
    table = _read_parquet(path)
    index = _indices(table, path)
    positive = np.full(int(index.max()) + 1, MISSING, dtype=np.int8)
    positive[index] = _positive_labels(table, index, threshold, path)
    episode_index = None
    if "episode_index" in table.column_names:
        episodes = np.full(positive.shape, MISSING, dtype=np.int64)
        episodes[index] = _column(table, "episode_index", path)
        episode_index = torch.from_numpy(episodes)
    return AdvantageTable(path=path, positive=torch.from_numpy(positive), episode_index=episode_index)
