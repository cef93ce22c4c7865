"""pi*0.6 rewards and returns-to-go (SPEC §4.3), computed on a per-frame table.

The table has one row per frame (any order) with the columns `index`, `episode_index`,
`frame_index` and `task_index`, as in a LeRobot dataset. `dataset_frames` builds it from a
`LeRobotDataset`; everything else works on plain pandas / numpy so it can be tested by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

FRAME_COLUMNS = ("index", "episode_index", "frame_index", "task_index")


def describe_frame(frames: pd.DataFrame, row: int) -> str:
    """`index I (episode E, frame F)` for row `row` of a frame table."""
    index, episode, frame = (int(frames[c].iloc[row]) for c in ("index", "episode_index", "frame_index"))
    return f"index {index} (episode {episode}, frame {frame})"


def dataset_frames(dataset: LeRobotDataset, extra_columns: Iterable[str] = ()) -> pd.DataFrame:
    """The per-frame table of the episodes `dataset` has loaded (`FRAME_COLUMNS` + `extra_columns`).

    Reads only the named columns, never images, so it is cheap on large datasets.
    """
    columns = [*FRAME_COLUMNS, *extra_columns]
    missing = [column for column in columns if column not in dataset.hf_dataset.column_names]
    if missing:
        raise KeyError(f"Dataset {dataset.repo_id} at {dataset.root} has no column(s) {missing}")
    return dataset.hf_dataset.with_format(None).select_columns(columns).to_pandas()


def check_frame_table(frames: pd.DataFrame, columns: Iterable[str], source: str = "frames") -> None:
    """Raise unless `frames` has `columns` and every episode is whole: frame_index 0..len-1 once each.

    Returns and advantages look at whole episodes (the terminal reward sits on the last frame), so a
    table missing a frame would silently shift every return of that episode.
    """
    missing = [column for column in columns if column not in frames.columns]
    if missing:
        raise KeyError(f"{source}: missing column(s) {missing}; has {list(frames.columns)}")
    for column in ("index", "episode_index", "frame_index", "task_index"):
        if column in columns and not pd.api.types.is_integer_dtype(frames[column]):
            raise TypeError(
                f"{source}: column {column!r} must hold integers, got dtype {frames[column].dtype}"
            )
    if "index" in columns and frames["index"].duplicated().any():
        duplicated = frames.loc[frames["index"].duplicated(), "index"].iloc[0]
        raise ValueError(f"{source}: index {duplicated} appears more than once")
    if frames.empty:
        raise ValueError(f"{source}: the table has no frames")
    groups = frames.groupby("episode_index")["frame_index"]
    lengths = groups.size()
    complete = (groups.min() == 0) & (groups.max() == lengths - 1) & (groups.nunique() == lengths)
    if not complete.all():
        episode = complete.index[~complete.to_numpy()][0]
        present = sorted(frames.loc[frames["episode_index"] == episode, "frame_index"].tolist())
        raise ValueError(
            f"{source}: episode {episode} is not whole: frame_index must be 0..{lengths[episode] - 1} once "
            f"each, got {present}"
        )
    if "task_index" in columns:
        tasks_per_episode = frames.groupby("episode_index")["task_index"].nunique()
        if (tasks_per_episode > 1).any():
            episode = tasks_per_episode.index[(tasks_per_episode > 1).to_numpy()][0]
            raise ValueError(f"{source}: episode {episode} has more than one task_index")


def _episode_outcomes(
    episodes: Iterable[int], outcomes: Mapping[int, bool | None], unknown_as: bool | None
) -> dict[int, bool]:
    """Resolve each episode's outcome; a missing or unknown outcome raises unless `unknown_as` says."""
    resolved = {}
    for episode in episodes:
        if episode not in outcomes:
            raise KeyError(f"No outcome given for episode {episode}")
        outcome = outcomes[episode]
        if outcome is None:
            if unknown_as is None:
                raise ValueError(
                    f"Episode {episode} has an unknown outcome; label it, or pass unknown_as=True/False "
                    "to treat unknown outcomes as successes/failures"
                )
            outcome = unknown_as
        resolved[int(episode)] = bool(outcome)
    return resolved


def _per_task(value: float | Mapping[int, float] | None, task: int, name: str) -> float | None:
    """A per-task setting given either once for all tasks or as a {task_index: value} mapping."""
    if value is None or not isinstance(value, Mapping):
        return value
    if task not in value:
        raise KeyError(f"{name} has no entry for task_index {task}; given for tasks {sorted(value)}")
    return value[task]


def _failure_cost(c_fail: float | Mapping[int, float] | None, task: int, task_max_length: int) -> float:
    """c_fail for `task`: as given, else the task's L_max (every failure frame normalises to -1)."""
    cost = _per_task(c_fail, task, "c_fail")
    if cost is None:
        return float(task_max_length)
    if not cost >= 0:
        raise ValueError(f"c_fail must be a non-negative number, got {cost} for task_index {task}")
    return float(cost)


def _task_max_lengths(
    lengths: pd.Series,
    tasks: pd.Series,
    success: pd.Series,
    max_length: int | Mapping[int, int] | None = None,
) -> dict[int, int]:
    """L_max per task: its longest successful episode, unless `max_length` gives it explicitly.

    The three series are indexed by episode. A task without a successful episode has no natural
    scale, so it raises rather than guess one.
    """
    result = {}
    for task in sorted(tasks.unique()):
        explicit = _per_task(max_length, task, "max_length")
        if explicit is not None:
            task_max = int(explicit)
        else:
            successful = lengths[(tasks == task) & success]
            if successful.empty:
                raise ValueError(
                    f"Task {task} has no successful episode, so its longest successful length (the return "
                    "normaliser) is undefined; pass max_length (and optionally c_fail) for it"
                )
            task_max = int(successful.max())
        if task_max < 2:
            raise ValueError(
                f"Task {task}: the return normaliser L_max - 1 must be positive, got L_max={task_max}"
            )
        result[int(task)] = task_max
    return result


def pistar_returns(
    frames: pd.DataFrame,
    outcomes: Mapping[int, bool | None],
    *,
    c_fail: float | Mapping[int, float] | None = None,
    max_length: int | Mapping[int, int] | None = None,
    unknown_as: bool | None = None,
) -> pd.DataFrame:
    """pi*0.6 rewards and returns for every frame of `frames`, sorted by episode and frame.

    Rewards are -1 per step; the last frame gets 0 on success and -c_fail on failure (default
    c_fail = L_max of the task, so every failure frame normalises to the bottom). Per task, returns
    are divided by L_max - 1, L_max being the task's longest successful episode (or `max_length`).

    Added columns: `reward`, `normalised_reward` (reward / (L_max - 1), the scale N-step advantages
    sum in), `return` (raw return-to-go), `normalised_return` (clipped to [-1, 0]) and
    `value_target` (normalised_return + 1, RewACT's [0, 1] value range).

    `outcomes` maps every episode to True (success), False (failure) or None (unknown); unknown
    outcomes raise unless `unknown_as` is True or False. `c_fail` and `max_length` accept one number
    for all tasks or a {task_index: number} mapping.
    """
    check_frame_table(frames, FRAME_COLUMNS)
    table = frames.sort_values(["episode_index", "frame_index"], kind="stable").reset_index(drop=True)
    episodes = table.groupby("episode_index").agg(
        length=("frame_index", "size"), task=("task_index", "first")
    )
    resolved = _episode_outcomes(episodes.index, outcomes, unknown_as)
    episodes["success"] = pd.Series(resolved)
    max_lengths = _task_max_lengths(episodes["length"], episodes["task"], episodes["success"], max_length)

    episodes["normaliser"] = episodes["task"].map(lambda task: max_lengths[task] - 1).astype(float)
    episodes["terminal_reward"] = [
        0.0 if success else -_failure_cost(c_fail, task, max_lengths[task])
        for task, success in zip(episodes["task"], episodes["success"], strict=True)
    ]

    per_frame = episodes.loc[table["episode_index"]].reset_index(drop=True)
    is_last = table["frame_index"].to_numpy() == per_frame["length"].to_numpy() - 1
    table["reward"] = np.where(is_last, per_frame["terminal_reward"].to_numpy(), -1.0)
    normaliser = per_frame["normaliser"].to_numpy()
    table["normalised_reward"] = table["reward"] / normaliser
    by_episode = table.groupby("episode_index")["reward"]
    # Return-to-go = episode total minus the rewards before t (rows are sorted by frame).
    table["return"] = by_episode.transform("sum") - by_episode.cumsum() + table["reward"]
    table["normalised_return"] = np.clip(table["return"] / normaliser, -1.0, 0.0)
    table["value_target"] = table["normalised_return"] + 1.0
    return table
