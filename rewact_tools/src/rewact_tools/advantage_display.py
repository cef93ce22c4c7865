"""Reading an advantages parquet back for display: its fit to a dataset, each task's threshold, a
per-task summary and where in their episodes the positive frames lie.

The parquet stores which frames are positive, not the threshold that split them; for a task, any
threshold between its highest non-positive and its lowest positive advantage gives the same split,
so plots show that band.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

# Where precompute_advantage.py writes by default, relative to the dataset root.
ADVANTAGES_RELATIVE_PATH = Path("rewact_extensions/advantages.parquet")


def check_matches_dataset(table: pd.DataFrame, lengths: Mapping[int, int], path: Path) -> None:
    """Raise unless the advantages table has exactly the dataset's episodes, each with its length."""
    counts = table.groupby("episode_index").size()
    missing = sorted(set(lengths) - set(counts.index))
    extra = sorted(set(counts.index) - set(lengths))
    if missing or extra:
        raise ValueError(
            f"{path} does not belong to this dataset: episodes missing from the file {missing[:10]}, "
            f"episodes the dataset lacks {extra[:10]}"
        )
    wrong = [(int(e), int(n), lengths[int(e)]) for e, n in counts.items() if n != lengths[int(e)]]
    if wrong:
        episode, in_file, in_dataset = wrong[0]
        raise ValueError(
            f"{path} does not belong to this dataset: episode {episode} has {in_file} frames there and "
            f"{in_dataset} in the dataset"
        )


def threshold_band(table: pd.DataFrame, task_index: int) -> tuple[float, float]:
    """(highest non-positive, lowest positive) advantage of the task; one side repeats the other
    when every frame, or none, is positive."""
    rows = table[table["task_index"] == task_index]
    if rows.empty:
        raise KeyError(f"the advantages table has no frames of task {task_index}")
    positive = rows.loc[rows["positive"], "advantage"]
    negative = rows.loc[~rows["positive"], "advantage"]
    low = float(negative.max()) if not negative.empty else float(positive.min())
    high = float(positive.min()) if not positive.empty else low
    return low, high


def task_summary(
    table: pd.DataFrame, thresholds: Mapping[int, float], tasks: Mapping[int, str]
) -> pd.DataFrame:
    """One row per task: its episodes, frames, threshold, positive fraction and advantage statistics."""
    rows = []
    for task, group in table.groupby("task_index"):
        rows.append(
            {
                "task_index": int(task),
                "task": tasks.get(int(task), "?"),
                "episodes": group["episode_index"].nunique(),
                "frames": len(group),
                "threshold": thresholds[int(task)],
                "positive": group["positive"].mean(),
                "advantage_mean": group["advantage"].mean(),
                "advantage_std": group["advantage"].std(ddof=0),
            }
        )
    return pd.DataFrame(rows)


def positive_by_phase(table: pd.DataFrame, groups: Mapping[int, str], phases: int = 5) -> pd.DataFrame:
    """Positive fraction per group of episodes (outcome, data quality, ...) and episode phase (the
    k-th of `phases` equal parts of each episode's duration), and over whole episodes (`all`).

    Why: Monte Carlo advantages are largest where the return is least predictable, the start of an
    episode, so one threshold can mark the start of every success positive and its finish negative;
    the conditioned policy then never sees "positive" where the task is completed.
    """
    if phases < 1:
        raise ValueError(f"positive_by_phase needs at least one phase, got {phases}")
    missing = sorted(set(table["episode_index"].unique().tolist()) - set(groups))
    if missing:
        raise KeyError(f"no group for episodes {missing[:10]} of the advantages table")
    lengths = table.groupby("episode_index")["frame_index"].transform("size")
    phase = (table["frame_index"] * phases // lengths).clip(upper=phases - 1)
    frame = pd.DataFrame(
        {
            "group": table["episode_index"].map(groups),
            "phase": phase,
            "positive": table["positive"].astype(float),
        }
    )
    by_phase = frame.pivot_table(index="group", columns="phase", values="positive", aggfunc="mean")
    by_phase.columns = [f"{k + 1}/{phases}" for k in by_phase.columns]
    by_phase["all"] = frame.groupby("group")["positive"].mean()
    by_phase.index.name = None
    return by_phase
