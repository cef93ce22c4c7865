"""Credit around takeovers: where a human (or scripted corrector) took control of a rollout.

pi*0.6 labels each episode by its outcome, so in a rollout that a correction rescued, the policy's
own frames before the takeover (the stall that needed rescuing) are credited like a success. Two
remedies, each one function used by every caller (advantages, value targets, benchmarks):

- *segment credit* (`takeover_segments`): every takeover ends the stretch of the episode before it
  as a failure, as RLIF reads an intervention as a negative reward. A segment runs from the episode
  start or a takeover to the next takeover (exclusive) or the episode end; a segment that ends in a
  takeover is a failure, the last one has the episode's outcome. Corrections and the policy's run
  after a hand-back are thus credited with what followed them, up to the next takeover.
- a *pre-takeover window* (`pre_takeover_index`): the last K policy frames before each takeover,
  which Sirius gives (almost) no weight and which advantage conditioning can force negative.

A takeover is a frame under human control whose previous frame in the same episode was not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from rewact_tools.returns import FRAME_COLUMNS, check_frame_table

CREDITS = ("episode", "segment")
"""How outcomes are credited: per `episode` (pi*0.6's recipe) or per takeover `segment`."""


def human_mask(table: pd.DataFrame, human_index: Iterable[int], source: str = "frame table") -> np.ndarray:
    """Per row of `table` (named `source` in errors), whether its dataset index is in `human_index`
    (every one must be a frame of it)."""
    human = pd.Index(np.asarray(list(human_index), dtype=np.int64))
    unknown = human.difference(table["index"])
    if not unknown.empty:
        raise ValueError(
            f"human_index: {len(unknown)} frame(s) are not in the {source}, first index {unknown[0]}"
        )
    return table["index"].isin(human).to_numpy()


def _sorted_with_takeovers(
    frames: pd.DataFrame, human_index: Iterable[int]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """`frames` sorted by episode and frame, and per row whether it is human and a takeover."""
    check_frame_table(frames, FRAME_COLUMNS)
    table = frames.sort_values(["episode_index", "frame_index"], kind="stable").reset_index(drop=True)
    human = human_mask(table, human_index)
    same_episode = np.r_[
        False, table["episode_index"].to_numpy()[1:] == table["episode_index"].to_numpy()[:-1]
    ]
    previous_human = np.r_[False, human[:-1]]
    return table, human, human & ~previous_human & same_episode


def takeover_segments(
    frames: pd.DataFrame, outcomes: Mapping[int, bool | None], human_index: Iterable[int]
) -> tuple[pd.DataFrame, dict[int, bool | None]]:
    """The frame table split at every takeover, and each segment's outcome.

    Returns a copy of `frames` (sorted) whose `episode_index` is a segment id (0, 1, ... in order)
    and `frame_index` the position in the segment; the original values are kept in the columns
    `episode` and `episode_frame` (`restore_episodes` puts them back). A segment that ends in a
    takeover is a failure; an episode's last segment has the episode's outcome (an unknown one, None,
    stays unknown for `pistar_returns` to resolve or report). Without takeovers every segment is its
    episode.
    """
    table, _, takeover = _sorted_with_takeovers(frames, human_index)
    episode = table["episode_index"].to_numpy()
    missing = sorted(set(np.unique(episode).tolist()) - set(outcomes))
    if missing:
        raise KeyError(f"No outcome given for episode {missing[0]}")
    new_episode = np.r_[True, episode[1:] != episode[:-1]]
    segment = np.cumsum(new_episode | takeover) - 1
    table = table.assign(episode=episode, episode_frame=table["frame_index"].to_numpy())
    table["episode_index"] = segment
    table["frame_index"] = table.groupby("episode_index").cumcount()
    segment_episode = pd.Series(episode, index=segment).groupby(level=0).first()
    ends_in_takeover = set(segment[takeover] - 1)
    segment_outcomes = {
        int(s): False if s in ends_in_takeover else outcomes[int(e)] for s, e in segment_episode.items()
    }
    return table, segment_outcomes


def credited_frames(
    frames: pd.DataFrame,
    outcomes: Mapping[int, bool | None],
    credit: str,
    human_index: Iterable[int] | None,
) -> tuple[pd.DataFrame, Mapping[int, bool | None]]:
    """The frame table and outcomes that returns are computed on under `credit` (`CREDITS`): as
    given per `episode`, split at every takeover (`takeover_segments`) per `segment`. One place, so
    value targets and advantages credit alike."""
    if credit not in CREDITS:
        raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
    if credit == "episode":
        return frames, outcomes
    if human_index is None:
        raise ValueError(
            "credit='segment' needs the frames under human control: they mark where the takeovers are"
        )
    return takeover_segments(frames, outcomes, human_index)


def restore_episodes(table: pd.DataFrame) -> pd.DataFrame:
    """A table computed on `takeover_segments`' frames with the original episode and frame indices,
    sorted by them."""
    restored = table.assign(episode_index=table["episode"], frame_index=table["episode_frame"])
    restored = restored.drop(columns=["episode", "episode_frame"])
    return restored.sort_values(["episode_index", "frame_index"], kind="stable").reset_index(drop=True)


def clean_successes(
    frames: pd.DataFrame, outcomes: Mapping[int, bool | None], human_index: Iterable[int] | None
) -> set[int]:
    """The episodes that succeeded with no frame under human control: what filtered BC keeps of a
    policy's own experience (a rescued episode's success is the corrector's, not the policy's)."""
    human = np.asarray([] if human_index is None else list(human_index), dtype=np.int64)
    taken_over = set(frames.loc[frames["index"].isin(human), "episode_index"])
    return {episode for episode, outcome in outcomes.items() if outcome and episode not in taken_over}


def pre_takeover_index(frames: pd.DataFrame, human_index: Iterable[int], window: int) -> np.ndarray:
    """Dataset indices of the last `window` policy frames before each takeover (fewer when the
    policy had control for less time), sorted."""
    if window < 0:
        raise ValueError(f"the pre-takeover window must be a number of frames >= 0, got {window}")
    table, human, takeover = _sorted_with_takeovers(frames, human_index)
    episode = table["episode_index"].to_numpy()
    chosen = np.zeros(len(table), dtype=bool)
    for start in np.flatnonzero(takeover):
        row = start - 1
        while row >= 0 and row >= start - window and episode[row] == episode[start] and not human[row]:
            chosen[row] = True
            row -= 1
    return np.sort(table["index"].to_numpy()[chosen])


FRAME_KINDS = ("demonstration", "rollout", "pre_takeover", "rescued_rollout", "correction")


def frame_kinds(frames: pd.DataFrame, human_index: Iterable[int], window: int) -> pd.Series:
    """Who chose each frame's action, by dataset index (`FRAME_KINDS`): a human through a whole
    episode (`demonstration`), the policy in an episode nobody took over (`rollout`), the policy in
    the `window` frames before a takeover (`pre_takeover`) or elsewhere in a taken-over episode
    (`rescued_rollout`), or a human who took over (`correction`). Why: each kind should be positive
    as often as the credit intends, which `precompute_advantage.py` prints."""
    table, human, takeover = _sorted_with_takeovers(frames, human_index)
    episodes = table["episode_index"]
    all_human = pd.Series(human).groupby(episodes).transform("all").to_numpy()
    rescued = pd.Series(takeover).groupby(episodes).transform("any").to_numpy()
    kinds = np.where(
        human,
        np.where(all_human, "demonstration", "correction"),
        np.where(rescued, "rescued_rollout", "rollout"),
    )
    kinds = pd.Series(kinds, index=table["index"].to_numpy(), name="kind")
    kinds[pre_takeover_index(table, table["index"].to_numpy()[human], window)] = "pre_takeover"
    return kinds
