"""N-step advantages on pi*0.6 returns, their binarisation, and the advantages parquet (SPEC §4.5).

Everything is in the normalised return scale of §4.3: rewards are divided by L_max - 1 of their
task, and a RewACT value v in [0, 1] is the normalised value v - 1 in [-1, 0].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rewact_tools.atomic import write_atomically
from rewact_tools.returns import FRAME_COLUMNS, check_frame_table, pistar_returns
from rewact_tools.takeovers import (
    clean_successes,
    credited_frames,
    human_mask,
    pre_takeover_index,
    restore_episodes,
)

ADVANTAGE_COLUMNS = (*FRAME_COLUMNS, "value", "return", "advantage", "positive")
_FLOAT_COLUMNS = ("value", "return", "advantage")
THRESHOLD_GROUPS = ("task", "value_bin")
"""Where the positive fraction is taken: over each task's frames (pi*0.6), or within each bin of the
value per task, so that every stage of the task, the finish included, has its share of positives."""


def n_step_advantage(
    rewards: np.ndarray, values: np.ndarray, n_steps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """N-step targets and advantages of one episode, frames in order.

    target_t = sum_{k<N} r_{t+k} + V(s_{t+N}) and A_t = target_t - V(s_t). A window that reaches the
    episode end sums every remaining reward, the terminal one included, and bootstraps with 0.
    `n_steps=None` (or >= the episode length) gives the Monte-Carlo advantage.
    """
    rewards, values = np.asarray(rewards, dtype=float), np.asarray(values, dtype=float)
    if rewards.shape != values.shape or rewards.ndim != 1:
        raise ValueError(
            f"rewards and values must be 1-D of equal length, got {rewards.shape}, {values.shape}"
        )
    if n_steps is not None and n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer or None, got {n_steps}")
    length = len(rewards)
    horizon = length if n_steps is None else min(n_steps, length)
    # With G_t the reward-to-go (G_T = 0): sum_{k<N} r_{t+k} = G_t - G_{t+N}.
    reward_to_go = np.append(np.cumsum(rewards[::-1])[::-1], 0.0)
    bootstrap_values = np.append(values, 0.0)
    window_end = np.minimum(np.arange(length) + horizon, length)
    targets = reward_to_go[:length] - reward_to_go[window_end] + bootstrap_values[window_end]
    return targets, targets - values


def task_thresholds(advantages: pd.Series, tasks: pd.Series, positive_fraction: float) -> dict[int, float]:
    """Per task, the (1 - positive_fraction) quantile of its advantages: `advantage > threshold`
    then marks that fraction of the task's frames positive (up to ties and rounding to whole frames).

    Per task, because tasks differ in length and difficulty, so their advantages differ in scale.
    """
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"positive_fraction must be strictly between 0 and 1, got {positive_fraction}")
    quantiles = advantages.groupby(tasks.to_numpy()).quantile(1.0 - positive_fraction)
    return {int(task): float(threshold) for task, threshold in quantiles.items()}


def _attach_values(table: pd.DataFrame, values: pd.DataFrame) -> np.ndarray:
    """RewACT values of `table`'s frames, matched by dataset `index`, in `table`'s row order."""
    for column in ("index", "value"):
        if column not in values.columns:
            raise KeyError(f"values: missing column {column!r}; has {list(values.columns)}")
    if values["index"].duplicated().any():
        raise ValueError(
            f"values: index {values.loc[values['index'].duplicated(), 'index'].iloc[0]} appears twice"
        )
    by_index = values.set_index("index")["value"].astype(float)
    missing = table.loc[~table["index"].isin(by_index.index), "index"]
    if not missing.empty:
        raise ValueError(f"values: no value for {len(missing)} frame(s), first index {missing.iloc[0]}")
    extra = by_index.index.difference(table["index"])
    if not extra.empty:
        raise ValueError(f"values: {len(extra)} value(s) for frames not in the table, first index {extra[0]}")
    matched = by_index.loc[table["index"]].to_numpy()
    if not np.isfinite(matched).all() or (matched < 0).any() or (matched > 1).any():
        bad = matched[~(np.isfinite(matched) & (matched >= 0) & (matched <= 1))][0]
        raise ValueError(f"values: every value must lie in RewACT's value range [0, 1], got {bad}")
    return matched


def compute_advantages(
    frames: pd.DataFrame,
    values: pd.DataFrame,
    outcomes: Mapping[int, bool | None],
    *,
    n_steps: int | None = None,
    positive_fraction: float = 0.30,
    threshold: float | None = None,
    c_fail: float | Mapping[int, float] | None = None,
    max_length: int | Mapping[int, int] | None = None,
    unknown_as: bool | None = None,
    human_index: Iterable[int] | None = None,
    credit: str = "episode",
    pre_takeover_window: int = 0,
    threshold_by: str = "task",
    value_bins: int = 10,
    successes_positive: bool = False,
) -> pd.DataFrame:
    """The advantages table (`ADVANTAGE_COLUMNS`) of every frame of `frames`.

    `frames` is the per-frame table of `pistar_returns`; `values` holds RewACT values in [0, 1] by
    dataset `index` (the table `compute_values` returns), one for each frame. In the result `value`
    is V(s_t) = v - 1, `return` the N-step target and `advantage` = return - value, all normalised;
    for failures `return` is not clipped, so it can lie below -1. `positive` is `advantage >
    threshold`, the threshold being `threshold` when given, else per task the quantile that makes
    `positive_fraction` of that task's frames positive. `c_fail`, `max_length` and `unknown_as`
    are passed to `pistar_returns`.

    `human_index` lists the dataset indices of frames under human control (corrections,
    demonstrations): as in pi*0.6 they are `positive` whatever their advantage, which stays the
    computed one. Thresholds are taken before forcing, so forced frames add to `positive_fraction`.

    Credit around takeovers (`rewact_tools.takeovers`; both need `human_index`): `credit="segment"`
    ends the stretch before every takeover as a failure (returns and N-step windows stop there);
    `pre_takeover_window=K` forces the last K policy frames before each takeover negative.
    `threshold_by="value_bin"` takes the positive fraction within each of `value_bins` quantile bins
    of the value per task instead of over the task (`THRESHOLD_GROUPS`).

    `successes_positive` makes every frame of an episode that succeeded with no frame under human
    control positive: the frames filtered BC trains on (with the forced corrections) stay positive,
    and the advantage adds the good frames of the rest (a failure's good start, a rescued episode's
    good stretches). Measured on PushT RECAP with N-step advantages (benchmarks/README.md).
    """
    if human_index is None and pre_takeover_window:
        raise ValueError(
            "pre_takeover_window needs human_index: the frames under human control mark where the "
            "takeovers are"
        )
    human = None if human_index is None else np.asarray(list(human_index), dtype=np.int64)
    credited, credited_outcomes = credited_frames(frames, outcomes, credit, human)
    table = pistar_returns(
        credited, credited_outcomes, c_fail=c_fail, max_length=max_length, unknown_as=unknown_as
    )
    table["value"] = _attach_values(table, values) - 1.0
    table = _with_advantages(table, n_steps, positive_fraction, threshold, threshold_by, value_bins)
    if credit == "segment":  # back from segments (credited_frames) to episodes
        table = restore_episodes(table)
    if pre_takeover_window:
        window = pre_takeover_index(table, human, pre_takeover_window)
        table["positive"] = table["positive"] & ~table["index"].isin(window)
    if successes_positive:
        table = _with_successes_positive(table, frames, outcomes, human)
    table = table[list(ADVANTAGE_COLUMNS)]
    return table if human is None else force_positive(table, human)


def frame_thresholds(
    table: pd.DataFrame, positive_fraction: float, threshold_by: str = "task", value_bins: int = 10
) -> pd.Series:
    """Each frame's advantage threshold (`advantage > threshold` is positive): the quantile that makes
    `positive_fraction` of its group positive, the group being its task or (task, value bin). Reads
    the columns `task_index`, `value` and `advantage` of an advantages table, in its row order."""
    groups = _threshold_groups(table, threshold_by, value_bins)
    return groups.map(task_thresholds(table["advantage"], groups, positive_fraction))


def _threshold_groups(table: pd.DataFrame, threshold_by: str, value_bins: int) -> pd.Series:
    """Per frame, the group whose frames share one threshold: its task, or (task, value bin)."""
    if threshold_by not in THRESHOLD_GROUPS:
        raise ValueError(f"threshold_by must be one of {THRESHOLD_GROUPS}, got {threshold_by!r}")
    tasks = table["task_index"].astype(np.int64)
    if threshold_by == "task":
        return tasks
    if value_bins < 1:
        raise ValueError(f"value_bins must be at least 1, got {value_bins}")
    bins = table.groupby("task_index")["value"].transform(
        lambda values: pd.qcut(values.rank(method="first"), value_bins, labels=False)
    )
    return tasks * value_bins + bins.astype(np.int64)


def force_positive(table: pd.DataFrame, index: Iterable[int]) -> pd.DataFrame:
    """`table` with `positive` set on the frames of dataset index `index` (every one must be in it)."""
    table = table.copy()
    table["positive"] = table["positive"] | human_mask(table, index, "advantages table")
    return table


def time_baseline_advantages(
    frames: pd.DataFrame,
    outcomes: Mapping[int, bool | None],
    *,
    n_steps: int | None = None,
    positive_fraction: float = 0.30,
    threshold: float | None = None,
    c_fail: float | Mapping[int, float] | None = None,
    max_length: int | Mapping[int, int] | None = None,
    unknown_as: bool | None = None,
    successes_positive: bool = False,
) -> pd.DataFrame:
    """The advantages table of `compute_advantages` with no value model: V(s_t) is the mean true
    (Monte-Carlo, normalised) return of the task's episodes at the same frame index t.

    The advantage then says how much better this episode did from t on than the dataset's average
    from the same time, from episode outcomes and lengths alone: what a perfect value model of a
    time-only state would give. Benchmarks set it beside value-model advantages to separate the
    value model's error from what advantage conditioning can do. Arguments as `compute_advantages`.
    """
    table = pistar_returns(frames, outcomes, c_fail=c_fail, max_length=max_length, unknown_as=unknown_as)
    true_returns = np.empty(len(table))
    rewards = table["normalised_reward"].to_numpy()
    for rows in table.groupby("episode_index").indices.values():
        true_returns[rows], _ = n_step_advantage(rewards[rows], np.zeros(len(rows)))
    table["value"] = (
        pd.Series(true_returns).groupby([table["task_index"], table["frame_index"]]).transform("mean")
    )
    table = _with_advantages(table, n_steps, positive_fraction, threshold, "task", 0)
    if successes_positive:
        table = _with_successes_positive(table, frames, outcomes, None)
    return table[list(ADVANTAGE_COLUMNS)]


def _with_successes_positive(
    table: pd.DataFrame, frames: pd.DataFrame, outcomes: Mapping[int, bool | None], human: np.ndarray | None
) -> pd.DataFrame:
    """`table` with every frame of a success nobody took over positive (`successes_positive`)."""
    kept = clean_successes(frames, outcomes, human)
    return table.assign(positive=table["positive"] | table["episode_index"].isin(kept))


def _with_advantages(
    table: pd.DataFrame,
    n_steps: int | None,
    positive_fraction: float,
    threshold: float | None,
    threshold_by: str,
    value_bins: int,
) -> pd.DataFrame:
    """`table` (pistar_returns' columns and `value`) with N-step `return`, `advantage` and `positive`;
    without a fixed `threshold`, `positive_fraction` of each threshold group is (`frame_thresholds`)."""
    targets = np.empty(len(table))
    for rows in table.groupby("episode_index").indices.values():
        targets[rows], _ = n_step_advantage(
            table["normalised_reward"].to_numpy()[rows], table["value"].to_numpy()[rows], n_steps
        )
    table["return"] = targets
    table["advantage"] = targets - table["value"]
    if threshold is None:
        table["positive"] = table["advantage"] > frame_thresholds(
            table, positive_fraction, threshold_by, value_bins
        )
    else:
        table["positive"] = table["advantage"] > threshold
    return table


def check_advantages(table: pd.DataFrame, source: str = "advantages") -> None:
    """Raise unless `table` has exactly `ADVANTAGE_COLUMNS` with the right dtypes and whole episodes."""
    unexpected = [column for column in table.columns if column not in ADVANTAGE_COLUMNS]
    if unexpected:
        raise KeyError(f"{source}: unexpected column(s) {unexpected}; expected {list(ADVANTAGE_COLUMNS)}")
    check_frame_table(table, ADVANTAGE_COLUMNS, source=source)
    for column in _FLOAT_COLUMNS:
        if not pd.api.types.is_float_dtype(table[column]):
            raise TypeError(f"{source}: column {column!r} must hold floats, got dtype {table[column].dtype}")
        if not np.isfinite(table[column].to_numpy()).all():
            raise ValueError(f"{source}: column {column!r} holds NaN or infinite values")
    if not pd.api.types.is_bool_dtype(table["positive"]):
        raise TypeError(
            f"{source}: column 'positive' must hold booleans, got dtype {table['positive'].dtype}"
        )


def write_advantages(table: pd.DataFrame, path: Path | str) -> Path:
    """Validate and write the advantages table as parquet, atomically (temporary file, then rename)."""
    path = Path(path)
    check_advantages(table, source=f"advantages to write to {path}")
    write_atomically(
        path, lambda temporary: table[list(ADVANTAGE_COLUMNS)].to_parquet(temporary, index=False)
    )
    return path


def read_advantages(path: Path | str) -> pd.DataFrame:
    """Read an advantages parquet and validate it; errors name the file and the column."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Advantages file {path} does not exist")
    table = pd.read_parquet(path)
    check_advantages(table, source=str(path))
    return table


def values_from_advantages(path: Path | str, frames: pd.DataFrame) -> pd.DataFrame:
    """The `value` of each of `frames` (`index`, `episode_index`, `frame_index`) as an advantages file
    written for the same dataset holds it: relabelling those frames (another threshold, horizon or
    credit) then needs no second pass of the value model. The file holds normalised values (v - 1);
    they come back as RewACT's v in [0, 1] (exactly, for float32 values), sorted by `index`, as
    `compute_values` returns them. Errors name the file and the frame."""
    keys = ["index", "episode_index", "frame_index"]
    table = read_advantages(path)
    merged = frames[keys].merge(
        table[[*keys, "value"]], on="index", how="outer", suffixes=("", "_file"), indicator=True
    )
    for side, says in (
        ("left_only", "has no value for"),
        ("right_only", "holds a frame not in the dataset:"),
    ):
        unmatched = merged.loc[merged["_merge"] == side, "index"]
        if not unmatched.empty:
            raise ValueError(f"{path} {says} {len(unmatched)} frame(s), first index {unmatched.iloc[0]}")
    moved = merged[
        (merged["episode_index"] != merged["episode_index_file"])
        | (merged["frame_index"] != merged["frame_index_file"])
    ]
    if not moved.empty:
        row = moved.iloc[0]
        raise ValueError(
            f"{path}: frame index {row['index']} is episode {row['episode_index_file']} frame "
            f"{row['frame_index_file']} there but episode {row['episode_index']} frame {row['frame_index']} "
            "in the dataset: the file was written for another dataset"
        )
    merged["value"] = merged["value"] + 1.0
    return merged[[*keys, "value"]].sort_values("index", ignore_index=True)
