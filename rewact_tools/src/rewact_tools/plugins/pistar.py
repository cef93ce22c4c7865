"""pi*0.6 plugins: normalised returns as the value target, and precomputed advantages (SPEC §4.3, §4.5)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from rewact_tools.advantages import read_advantages
from rewact_tools.candywrapper import DatasetPlugin
from rewact_tools.control_modes import human_frame_index
from rewact_tools.outcomes import SUCCESS_COLUMN, episode_outcomes
from rewact_tools.plugins.frames import (
    FrameLabels,
    FrameLabelsInstance,
    PathSpec,
    all_frames,
    dataset_path,
    loaded_frames,
)
from rewact_tools.returns import describe_frame, pistar_returns
from rewact_tools.takeovers import CREDITS, credited_frames


def pistar_reward_labels(
    dataset: LeRobotDataset,
    key: str = "reward",
    c_fail: float | Mapping[int, float] | None = None,
    max_length: int | Mapping[int, int] | None = None,
    unknown_as: bool | None = None,
    credit: str = "episode",
) -> FrameLabels:
    """Float32 `key` for every loaded frame: the pi*0.6 normalised return-to-go + 1, in [0, 1].

    Returns are computed over every episode of the dataset, so a task's longest successful episode
    (the normaliser) and the labels do not depend on which episodes are loaded. `credit="segment"`
    credits each takeover segment with its own outcome (`rewact_tools.takeovers`), as the advantages
    of `precompute_advantage.py --credit segment` are: the value model is then their baseline. The
    takeovers are read from the loaded frames' control modes (the `intervention` column or
    episode_modes.json); a dataset that records none (demonstrations in a mix with rollouts) has no
    takeovers, so its segments are its episodes.
    """
    extra = (SUCCESS_COLUMN,) if SUCCESS_COLUMN in dataset.meta.features else ()
    frames = all_frames(dataset, extra)
    outcomes = episode_outcomes(dataset, frames)
    if credit == "segment":
        human = human_frame_index(dataset)
        frames, outcomes = credited_frames(frames, outcomes, credit, [] if human is None else human)
    returns = pistar_returns(frames, outcomes, c_fail=c_fail, max_length=max_length, unknown_as=unknown_as)
    by_index = returns.set_index("index")["value_target"]
    loaded = loaded_frames(dataset)
    values = by_index.loc[loaded["index"]].to_numpy(dtype=np.float32)
    return FrameLabels(loaded["index"].to_numpy(), {key: values})


class PiStar0_6CumulativeRewardPlugin(DatasetPlugin):  # noqa: N801 (the recipe's name)
    """Adds `key` (float32 scalar, default `reward`): the pi*0.6 return mapped onto [0, 1].

    Per step -1; the last frame 0 on success, -c_fail on failure (default: the task's longest
    successful episode L_max); return-to-go divided by L_max - 1 per task, clipped to [-1, 0], + 1.
    Outcomes come from robocandywrapper's `candywrapper_plugins/episode_outcome/outcomes.json` (the
    file its `EpisodeOutcomePlugin` reads) or, without it, from `next.success` on each episode's last
    frame. An unknown outcome raises at attach unless `unknown_as` says how to count it.
    `credit="segment"` ends the policy's stretch before each takeover as a failure
    (`pistar_reward_labels`).
    """

    def __init__(
        self,
        c_fail: float | Mapping[int, float] | None = None,
        max_length: int | Mapping[int, int] | None = None,
        unknown_as: bool | None = None,
        key: str = "reward",
        credit: str = "episode",
    ):
        if credit not in CREDITS:
            raise ValueError(
                f"PiStar0_6CumulativeRewardPlugin: credit must be one of {CREDITS}, got {credit!r}"
            )
        self.c_fail, self.max_length, self.unknown_as = c_fail, max_length, unknown_as
        self.key, self.credit = key, credit

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        labels = pistar_reward_labels(
            dataset, self.key, self.c_fail, self.max_length, self.unknown_as, self.credit
        )
        return FrameLabelsInstance(dataset, labels)


def advantage_labels(
    dataset: LeRobotDataset,
    path: Path,
    key: str = "advantage",
    positive_key: str | None = "advantage_positive",
) -> FrameLabels:
    """`key` (float32) and `positive_key` (bool) for every loaded frame from an advantages parquet."""
    table = read_advantages(path).set_index("index")
    frames = loaded_frames(dataset)
    present = frames["index"].isin(table.index).to_numpy()
    if not present.all():
        row = int(np.flatnonzero(~present)[0])
        raise ValueError(
            f"Advantages file {path} has no row for {int((~present).sum())} loaded frame(s) of "
            f"{dataset.repo_id}; first {describe_frame(frames, row)}."
        )
    rows = table.loc[frames["index"]]
    for name in ("episode_index", "frame_index"):
        disagree = np.flatnonzero(rows[name].to_numpy() != frames[name].to_numpy())
        if len(disagree):
            row = int(disagree[0])
            raise ValueError(
                f"Advantages file {path} puts {describe_frame(frames, row)} at {name} "
                f"{int(rows[name].iloc[row])}; the file belongs to another dataset."
            )
    values = {key: rows["advantage"].to_numpy(dtype=np.float32)}
    if positive_key is not None:
        values[positive_key] = rows["positive"].to_numpy(dtype=bool)
    return FrameLabels(frames["index"].to_numpy(), values)


class PiStar0_6AdvantagePlugin(DatasetPlugin):  # noqa: N801 (the recipe's name)
    """Adds `key` (float32 scalar, default `advantage`) and `positive_key` (bool scalar, default
    `advantage_positive`; None to leave it out) from an advantages parquet (SPEC §4.5).

    `positive` carries the file's per-task threshold; train ACTvantage on it with
    `advantage_key="advantage_positive"` (with `advantage` it thresholds at `advantage_threshold`).
    Give one path, or a mapping from repo id (or dataset root) to path when mixing datasets. Every
    loaded frame must be in the file, at the same episode and frame.
    """

    def __init__(
        self,
        path_or_per_dataset_paths: PathSpec,
        key: str = "advantage",
        positive_key: str | None = "advantage_positive",
    ):
        if key == positive_key:
            raise ValueError(f"PiStar0_6AdvantagePlugin needs two different keys, got {key!r} twice.")
        self.paths = path_or_per_dataset_paths
        self.key, self.positive_key = key, positive_key

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        path = dataset_path(self.paths, dataset, type(self).__name__)
        return FrameLabelsInstance(dataset, advantage_labels(dataset, path, self.key, self.positive_key))
