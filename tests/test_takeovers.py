"""Credit around takeovers (rewact_tools.takeovers) and the advantage options built on it: segment
credit, the pre-takeover window and thresholds per value bin, on hand-made frame tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rewact_tools.advantages import compute_advantages
from rewact_tools.returns import pistar_returns
from rewact_tools.takeovers import (
    clean_successes,
    frame_kinds,
    pre_takeover_index,
    restore_episodes,
    takeover_segments,
)

# Episode 0 (a rescued rollout, 10 frames): policy 0-3, takeover at 4 (human 4-5), hand-back 6-7,
# takeover at 8 (human 8-9), ends in success. Episode 1: a policy success (6 frames). Episode 2:
# a demonstration, human from its first frame (no takeover), 4 frames, failure.
LENGTHS = (10, 6, 4)
HUMAN = [4, 5, 8, 9, 16, 17, 18, 19]
OUTCOMES = {0: True, 1: True, 2: False}


@pytest.fixture
def frames() -> pd.DataFrame:
    """The frame table, rows shuffled: nothing may depend on their order."""
    table = pd.DataFrame(
        {
            "index": np.arange(sum(LENGTHS)),
            "episode_index": np.repeat(np.arange(len(LENGTHS)), LENGTHS),
            "frame_index": np.concatenate([np.arange(length) for length in LENGTHS]),
            "task_index": 0,
        }
    )
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture
def values() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"index": np.arange(sum(LENGTHS)), "value": rng.uniform(0.05, 0.95, sum(LENGTHS))})


def test_segments_end_at_takeovers_as_failures(frames):
    segments, outcomes = takeover_segments(frames, OUTCOMES, HUMAN)
    by_index = segments.set_index("index").sort_index()
    assert by_index["episode_index"].tolist() == [0] * 4 + [1] * 4 + [2] * 2 + [3] * 6 + [4] * 4
    assert by_index["frame_index"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, *range(6), *range(4)]
    # Segments 0 and 1 end in a takeover; the episode's last segment keeps its outcome.
    assert outcomes == {0: False, 1: False, 2: True, 3: True, 4: False}
    restored = restore_episodes(segments)
    expected = frames.sort_values(["episode_index", "frame_index"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(restored[list(expected.columns)], expected)


def test_segments_without_takeovers_are_the_episodes(frames):
    segments, outcomes = takeover_segments(frames, OUTCOMES, [])
    assert outcomes == OUTCOMES
    assert (segments["episode_index"] == segments["episode"]).all()


def test_segments_need_every_outcome_and_known_frames(frames):
    with pytest.raises(KeyError, match="No outcome given for episode 2"):
        takeover_segments(frames, {0: True, 1: True}, HUMAN)
    with pytest.raises(ValueError, match="first index 999"):
        takeover_segments(frames, OUTCOMES, [999])


def test_clean_successes_leave_out_rescued_episodes(frames):
    """Filtered BC's episodes: a success with a takeover is the corrector's, not the policy's."""
    assert clean_successes(frames, OUTCOMES, HUMAN) == {1}
    assert clean_successes(frames, OUTCOMES, None) == clean_successes(frames, OUTCOMES, []) == {0, 1}
    assert clean_successes(frames, {**OUTCOMES, 1: None}, HUMAN) == set()


def test_pre_takeover_window_stops_at_human_frames_and_episode_starts(frames):
    assert pre_takeover_index(frames, HUMAN, 2).tolist() == [2, 3, 6, 7]
    # The second takeover's window cannot reach back past the correction before it (frame 5).
    assert pre_takeover_index(frames, HUMAN, 10).tolist() == [0, 1, 2, 3, 6, 7]
    assert pre_takeover_index(frames, HUMAN, 0).tolist() == []
    with pytest.raises(ValueError, match="got -1"):
        pre_takeover_index(frames, HUMAN, -1)


def test_segment_credit_gives_the_stall_a_failure_return(frames, values):
    episode = compute_advantages(frames, values, OUTCOMES, human_index=HUMAN)
    segment = compute_advantages(frames, values, OUTCOMES, human_index=HUMAN, credit="segment")
    # Same frames, original episode and frame indices, sorted the same way.
    pd.testing.assert_frame_equal(
        segment[["index", "episode_index", "frame_index"]], episode[["index", "episode_index", "frame_index"]]
    )
    # The stall (frames 0-3) is part of a success per episode, a failure per segment: its return
    # is then the segment's failure return, pistar_returns' on the segmented table.
    segments, outcomes = takeover_segments(frames, OUTCOMES, HUMAN)
    expected = pistar_returns(segments, outcomes).set_index("index")["return"]
    normaliser = 6 - 1  # the longest successful segment is episode 1, 6 frames
    stall = segment.set_index("index").loc[[0, 1, 2, 3], "return"]
    np.testing.assert_allclose(stall.to_numpy(), expected.loc[[0, 1, 2, 3]].to_numpy() / normaliser)
    per_episode = episode.set_index("index").loc[[0, 1, 2, 3], "return"]
    assert (stall < -1).all() and (per_episode > -1 - 1e-9).all()
    # Without takeovers, segment credit is episode credit.
    policy_only = frames[frames["episode_index"] == 1]
    policy_values = values[values["index"].isin(policy_only["index"])]
    pd.testing.assert_frame_equal(
        compute_advantages(policy_only, policy_values, OUTCOMES, human_index=[], credit="segment"),
        compute_advantages(policy_only, policy_values, OUTCOMES, human_index=[]),
    )


def test_pre_takeover_window_is_forced_negative_and_corrections_positive(frames, values):
    table = compute_advantages(
        frames, values, OUTCOMES, human_index=HUMAN, positive_fraction=0.9, pre_takeover_window=2
    ).set_index("index")
    assert not table.loc[[2, 3, 6, 7], "positive"].any()
    assert table.loc[HUMAN, "positive"].all()
    assert table.drop(index=[2, 3, 6, 7, *HUMAN])["positive"].mean() > 0.5


def test_value_bin_thresholds_give_every_stage_its_positives():
    """Advantages that shrink as the value rises (a Monte Carlo advantage near the goal): one task
    threshold leaves the high-value frames negative; per value bin each bin has its fraction."""
    length = 20
    frames = pd.DataFrame(
        {
            "index": np.arange(2 * length),
            "episode_index": np.repeat([0, 1], length),
            "frame_index": np.tile(np.arange(length), 2),
            "task_index": 0,
        }
    )
    value = np.tile(np.linspace(0.0, 0.95, length), 2) + np.repeat([0.0, 0.02], length)
    values = pd.DataFrame({"index": frames["index"], "value": value})
    # With L_max twice the episodes' length the return rises more slowly than the value.
    options = {"positive_fraction": 0.5, "max_length": 2 * length}
    outcomes = {0: True, 1: True}
    by_task = compute_advantages(frames, values, outcomes, **options)
    by_bin = compute_advantages(frames, values, outcomes, threshold_by="value_bin", value_bins=4, **options)
    high = by_task["frame_index"] >= 3 * length // 4
    assert by_task.loc[high, "positive"].mean() == 0.0
    bins = pd.qcut(value, 4, labels=False)
    per_bin = by_bin["positive"].groupby(bins[by_bin["index"]]).mean()
    assert per_bin.tolist() == [0.5] * 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"credit": "frame"}, "credit must be one of"),
        ({"credit": "segment"}, "credit='segment' needs the frames under human control"),
        ({"pre_takeover_window": 3}, "pre_takeover_window needs human_index"),
        ({"threshold_by": "phase"}, "threshold_by must be one of"),
        ({"threshold_by": "value_bin", "value_bins": 0}, "value_bins must be at least 1"),
    ],
)
def test_bad_options_raise(frames, values, options, message):
    with pytest.raises(ValueError, match=message):
        compute_advantages(frames, values, OUTCOMES, **options)


def test_frame_kinds_say_who_chose_each_action(frames):
    kinds = frame_kinds(frames, HUMAN, window=2).sort_index()
    assert kinds.tolist() == [
        *["rescued_rollout"] * 2,
        *["pre_takeover"] * 2,
        *["correction"] * 2,
        *["pre_takeover"] * 2,
        *["correction"] * 2,
        *["rollout"] * 6,
        *["demonstration"] * 4,
    ]
    assert set(frame_kinds(frames, [], window=2)) == {"rollout"}
