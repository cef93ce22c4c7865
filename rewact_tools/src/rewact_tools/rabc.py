"""RewACT progress as the progress file of LeRobot's reward-aligned behaviour cloning (SPEC §4.9).

LeRobot 0.6 weights any policy's training samples by task progress (`--sample_weighting.type=rabc`):
it reads a parquet with `index`, `episode_index`, `frame_index` (int64) and one `progress_<head>`
column (float32 in [0, 1]), and weights each sample by how much progress rises over the next
`chunk_size` frames (weight 0 where it falls). This module turns `compute_values` output into that
file, with `head_mode="rewact"`, so the column is `progress_rewact`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rewact_tools.atomic import write_atomically

HEAD_MODE = "rewact"
PROGRESS_COLUMN = f"progress_{HEAD_MODE}"
RABC_COLUMNS = ("index", "episode_index", "frame_index", PROGRESS_COLUMN)
DEFAULT_PROGRESS_FILE = "sarm_progress.parquet"
"""Where `--sample_weighting.progress_path` points by default: `<dataset root>/sarm_progress.parquet`."""


def progress_table(values: pd.DataFrame, value_min: float = 0.0, value_max: float = 1.0) -> pd.DataFrame:
    """The RA-BC progress table of a `compute_values` table, progress rescaled to [0, 1].

    RA-BC expects progress in [0, 1]; a RewACT value range other than [0, 1] is mapped onto it
    linearly. Rows keep `compute_values`' order (by `index`).
    """
    missing = [
        column for column in ("index", "episode_index", "frame_index", "value") if column not in values
    ]
    if missing:
        raise KeyError(f"value table lacks column(s) {missing}; it has {list(values.columns)}")
    if not value_max > value_min:
        raise ValueError(f"value_max ({value_max}) must be greater than value_min ({value_min})")
    progress = (values["value"].to_numpy(np.float64) - value_min) / (value_max - value_min)
    return pd.DataFrame(
        {
            "index": values["index"].to_numpy(np.int64),
            "episode_index": values["episode_index"].to_numpy(np.int64),
            "frame_index": values["frame_index"].to_numpy(np.int64),
            PROGRESS_COLUMN: np.clip(progress, 0.0, 1.0).astype(np.float32),
        }
    )


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing progress file unless told to (it may be a user's labels)."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")


def write_progress_file(table: pd.DataFrame, path: Path | str, overwrite: bool = False) -> Path:
    """Write the progress table as parquet, atomically; an existing file needs `overwrite`."""
    path = Path(path)
    check_writable(path, overwrite)
    columns = list(RABC_COLUMNS)
    if list(table.columns) != columns:
        raise KeyError(f"RA-BC progress table must have columns {columns}, got {list(table.columns)}")
    write_atomically(path, lambda temporary: table.to_parquet(temporary, index=False))
    return path


def falling_fraction(table: pd.DataFrame, chunk_size: int) -> float:
    """Fraction of frames whose progress falls over the next `chunk_size` frames of their episode.

    RA-BC gives those frames weight 0. As in LeRobot, a look-ahead past the episode end stops at its
    last frame.
    """
    falling = 0
    for _, episode in table.sort_values("index").groupby("episode_index", sort=False):
        progress = episode[PROGRESS_COLUMN].to_numpy()
        ahead = np.minimum(np.arange(len(progress)) + chunk_size, len(progress) - 1)
        falling += int(np.count_nonzero(progress[ahead] < progress))
    return falling / len(table)


def progress_summary(table: pd.DataFrame, chunk_size: int) -> dict[str, Any]:
    """What a user checks before training on the file: coverage, progress spread, zero weights."""
    progress = table[PROGRESS_COLUMN]
    return {
        "frames": len(table),
        "episodes": int(table["episode_index"].nunique()),
        "progress_mean": float(progress.mean()),
        "progress_min": float(progress.min()),
        "progress_max": float(progress.max()),
        "chunk_size": chunk_size,
        "falling_fraction": falling_fraction(table, chunk_size),
    }
