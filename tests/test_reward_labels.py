"""Reward labels: linear progress, keypoint interpolation, the keypoint sidecar and the target table."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import PchipInterpolator

from lerobot_policy_rewact import reward_labels
from lerobot_policy_rewact.reward_labels import (
    KEYPOINTS_RELATIVE_PATH,
    KeypointFileError,
    KeypointReward,
    dense_reward_table,
    dense_rewards,
    load_keypoints,
    progress,
    save_keypoints,
)

from local_datasets import make_local_dataset

FPS = 10
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)

# ------------------------------------------------------------------------------------------------
# progress


def test_progress_endpoints_and_one_frame_episode():
    assert progress(0, 100) == 0.0
    assert progress(99, 100) == 1.0
    assert progress(0, 1) == 0.0


def test_progress_is_flat_outside_start_end_and_linear_between():
    length = 101  # frame f sits at position f / 100
    values = progress(np.arange(length), length, start=0.1, end=0.9)
    assert values.shape == (length,)
    np.testing.assert_array_equal(values[:11], 0.0)
    np.testing.assert_array_equal(values[90:], 1.0)
    np.testing.assert_allclose(values[10:91], np.linspace(0.0, 1.0, 81), atol=1e-12)
    assert progress(50, 101) == pytest.approx((0.5 - 0.05) / 0.9)


def test_progress_broadcasts_over_arrays_of_lengths():
    frames = np.array([0, 5, 9, 3, 0])
    lengths = np.array([10, 10, 10, 4, 1])
    expected = [progress(int(f), int(n)) for f, n in zip(frames, lengths, strict=True)]
    np.testing.assert_allclose(progress(frames, lengths), expected)
    np.testing.assert_allclose(progress(frames[:3], 10), expected[:3])


@pytest.mark.parametrize(("start", "end"), [(0.5, 0.5), (0.6, 0.4), (-0.1, 0.9), (0.1, 1.2)])
def test_progress_rejects_bad_start_end(start, end):
    with pytest.raises(ValueError, match="start"):
        progress(0, 10, start=start, end=end)


def test_progress_rejects_frames_outside_the_episode():
    with pytest.raises(ValueError, match="outside"):
        progress(10, 10)
    with pytest.raises(ValueError, match="lengths"):
        progress(0, 0)


# ------------------------------------------------------------------------------------------------
# KeypointReward


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reward": 0.5},
        {"reward": 0.5, "frame_index": 1, "timestamp": 0.1},
        {"reward": 0.5, "frame_index": -1},
        {"reward": 0.5, "timestamp": -0.1},
        {"reward": float("nan"), "frame_index": 1},
        {"reward": 0.5, "frame_index": 1.5},
        {"reward": 0.5, "frame_index": True},
    ],
)
def test_keypoint_reward_validates(kwargs):
    with pytest.raises(ValueError, match="KeypointReward"):
        KeypointReward(**kwargs)


def test_keypoint_reward_frame():
    assert KeypointReward(0.5, frame_index=np.int64(7)).frame(FPS) == 7
    assert KeypointReward(0.5, timestamp=1.26).frame(FPS) == 13
    assert type(KeypointReward(0.5, frame_index=np.int64(7)).frame_index) is int


# ------------------------------------------------------------------------------------------------
# dense_rewards: properties


@st.composite
def labelled_episodes(draw, monotone=False, max_step_down=None):
    """(length, keypoints in random order, frames sorted, rewards in frame order)."""
    length = draw(st.integers(1, 120))
    frames = sorted(draw(st.lists(st.integers(0, length - 1), unique=True, max_size=min(length, 10))))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    if max_step_down is None:
        rewards = draw(st.lists(unit, min_size=len(frames), max_size=len(frames)))
        if monotone:
            rewards.sort()
    else:
        rewards, level = [], 0.0
        for _ in frames:
            level = min(1.0, max(0.0, level + draw(st.floats(-max_step_down, 1.0))))
            rewards.append(level)
    keypoints = [KeypointReward(r, frame_index=f) for f, r in zip(frames, rewards, strict=True)]
    keypoints = draw(st.permutations(keypoints))
    return length, keypoints, frames, rewards


def _knots(frames, rewards):
    """The keypoints the curve passes through: frame 0 is 0 unless labelled."""
    if not frames or frames[0] != 0:
        return [0, *frames], [0.0, *rewards]
    return list(frames), list(rewards)


@PROPERTY_SETTINGS
@given(labelled_episodes())
def test_dense_rewards_cover_every_frame_in_range_and_exact_at_keypoints(episode):
    length, keypoints, frames, rewards = episode
    values = dense_rewards(keypoints, length, FPS)
    assert values.shape == (length,) and values.dtype == np.float32
    assert np.all((values >= 0.0) & (values <= 1.0))
    for frame, reward in zip(*_knots(frames, rewards), strict=True):
        assert values[frame] == np.float32(reward)


@PROPERTY_SETTINGS
@given(labelled_episodes())
def test_dense_rewards_frame_zero_and_last_value_holds(episode):
    length, keypoints, frames, rewards = episode
    values = dense_rewards(keypoints, length, FPS)
    if 0 not in frames:
        assert values[0] == 0.0
    last_frame, last_reward = _knots(frames, rewards)[0][-1], _knots(frames, rewards)[1][-1]
    np.testing.assert_array_equal(values[last_frame:], np.float32(last_reward))


@PROPERTY_SETTINGS
@given(labelled_episodes(monotone=True))
def test_dense_rewards_monotone_between_monotone_keypoints(episode):
    length, keypoints, _, _ = episode
    values = dense_rewards(keypoints, length, FPS)
    assert np.all(np.diff(values) >= 0)


@PROPERTY_SETTINGS
@given(labelled_episodes())
def test_dense_rewards_never_overshoot_neighbours_and_hold_through_resets(episode):
    length, keypoints, frames, rewards = episode
    values = dense_rewards(keypoints, length, FPS)
    knot_frames, knot_rewards = _knots(frames, rewards)
    for k in range(len(knot_frames) - 1):
        (x0, x1), (y0, y1) = knot_frames[k : k + 2], knot_rewards[k : k + 2]
        piece = values[x0 : x1 + 1]
        assert np.all(piece >= np.float32(min(y0, y1))) and np.all(piece <= np.float32(max(y0, y1)))
        if y0 - y1 > 0.5:
            np.testing.assert_array_equal(values[x0:x1], np.float32(y0))
            assert values[x1] == np.float32(y1)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # scipy, on tiny secants
@PROPERTY_SETTINGS
@given(labelled_episodes(max_step_down=0.45))
def test_dense_rewards_match_scipy_pchip_without_resets(episode):
    length, keypoints, frames, rewards = episode
    values = dense_rewards(keypoints, length, FPS)
    knot_frames, knot_rewards = _knots(frames, rewards)
    if len(knot_frames) < 2:
        return
    span = np.arange(knot_frames[-1] + 1)
    expected = PchipInterpolator(knot_frames, knot_rewards)(span)
    np.testing.assert_allclose(values[span], expected, atol=1e-6, rtol=0)


@PROPERTY_SETTINGS
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.floats(0.51, 1.0),
    st.floats(0.0, 1.0),
)
def test_a_reset_holds_then_jumps_and_interpolation_restarts(gap, tail, high, fraction):
    low = fraction * (high - 0.5 - 1e-6)
    rise_end, drop_at = 10, 10 + gap
    keypoints = [
        KeypointReward(high, frame_index=rise_end),
        KeypointReward(low, frame_index=drop_at),
        KeypointReward(high, frame_index=drop_at + tail),
    ]
    values = dense_rewards(keypoints, drop_at + tail + 5, FPS)
    np.testing.assert_array_equal(values[rise_end:drop_at], np.float32(high))
    assert values[drop_at] == np.float32(low)
    # After the reset the curve climbs again from the later keypoint, as a fresh PCHIP run.
    expected = PchipInterpolator([drop_at, drop_at + tail], [low, high])(
        np.arange(drop_at, drop_at + tail + 1)
    )
    np.testing.assert_allclose(values[drop_at : drop_at + tail + 1], expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# dense_rewards: examples and errors


def test_dense_rewards_without_keypoints_is_value_min():
    np.testing.assert_array_equal(dense_rewards([], 5, FPS), np.zeros(5, np.float32))
    np.testing.assert_array_equal(dense_rewards([], 5, FPS, value_min=-1.0, value_max=0.0), -np.ones(5))


def test_dense_rewards_respects_the_value_range():
    keypoints = [
        KeypointReward(1.0, frame_index=4),
        KeypointReward(0.2, frame_index=8),  # drop of 0.8 in a range of width 2: no reset
        KeypointReward(-0.9, frame_index=12),  # drop of 1.1 > 0.5 * 2: a reset
    ]
    values = dense_rewards(keypoints, 16, FPS, value_min=-1.0, value_max=1.0)
    assert values[0] == -1.0
    assert np.all((values >= -1.0) & (values <= 1.0))
    assert 0.2 < values[6] < 1.0
    np.testing.assert_array_equal(values[8:12], np.float32(0.2))
    np.testing.assert_array_equal(values[12:], np.float32(-0.9))


def test_dense_rewards_places_timestamped_keypoints_with_fps():
    by_time = dense_rewards([KeypointReward(0.8, timestamp=0.5)], 10, fps=10)
    by_frame = dense_rewards([KeypointReward(0.8, frame_index=5)], 10, fps=10)
    np.testing.assert_array_equal(by_time, by_frame)


@pytest.mark.parametrize(
    ("keypoints", "message"),
    [
        ([KeypointReward(1.5, frame_index=2)], r"Keypoint 0 .*reward 1\.5 is outside"),
        ([KeypointReward(0.2, frame_index=1), KeypointReward(-0.1, frame_index=3)], r"Keypoint 1 .*-0\.1"),
        ([KeypointReward(0.5, frame_index=10)], r"Keypoint 0 .*frame 10, past the end .*length 10"),
        (
            [KeypointReward(0.5, frame_index=3), KeypointReward(0.6, timestamp=0.3)],
            r"Keypoints 0 and 1 .*frame 3",
        ),
    ],
)
def test_dense_rewards_rejects_bad_keypoints(keypoints, message):
    with pytest.raises(ValueError, match=message):
        dense_rewards(keypoints, 10, FPS)


# ------------------------------------------------------------------------------------------------
# Sidecar file


@pytest.fixture
def sidecar(tmp_path):
    return tmp_path / "dataset" / KEYPOINTS_RELATIVE_PATH


def test_save_then_load_round_trips(sidecar):
    written = {
        0: [KeypointReward(1.0, frame_index=9), KeypointReward(0.25, frame_index=3)],
        2: [KeypointReward(0.5, timestamp=0.4)],
    }
    save_keypoints(sidecar, written, fps=FPS)
    loaded = load_keypoints(sidecar, episode_lengths={0: 12, 1: 16, 2: 10})
    assert loaded == {
        0: [KeypointReward(0.25, frame_index=3), KeypointReward(1.0, frame_index=9)],
        2: [KeypointReward(0.5, frame_index=4)],
    }
    raw = json.loads(sidecar.read_text())
    assert raw["0"] == {
        "keypoints": [
            {"frame_index": 3, "timestamp": 0.3, "reward": 0.25},
            {"frame_index": 9, "timestamp": 0.9, "reward": 1.0},
        ],
        "fps": FPS,
    }
    assert raw["2"]["keypoints"] == [{"frame_index": 4, "timestamp": 0.4, "reward": 0.5}]


def test_save_keeps_other_episodes_verbatim_and_replaces_the_given_ones(sidecar):
    sidecar.parent.mkdir(parents=True)
    hand_written = {"keypoints": [{"timestamp": 0.5, "reward": 0.7}], "fps": FPS}
    sidecar.write_text(json.dumps({"3": hand_written, "1": {"keypoints": [], "fps": FPS}}))
    save_keypoints(sidecar, {1: [KeypointReward(0.4, frame_index=2)]}, fps=FPS)
    raw = json.loads(sidecar.read_text())
    assert list(raw) == ["1", "3"]
    assert raw["3"] == hand_written
    assert load_keypoints(sidecar)[1] == [KeypointReward(0.4, frame_index=2)]


def test_save_with_clear_existing_drops_other_episodes(sidecar):
    save_keypoints(sidecar, {0: [KeypointReward(0.5, frame_index=1)]}, fps=FPS)
    save_keypoints(sidecar, {1: [KeypointReward(0.6, frame_index=2)]}, fps=FPS, clear_existing=True)
    assert load_keypoints(sidecar) == {1: [KeypointReward(0.6, frame_index=2)]}
    sidecar.write_text("{broken")
    save_keypoints(sidecar, {2: [KeypointReward(0.6, frame_index=2)]}, fps=FPS, clear_existing=True)
    assert list(load_keypoints(sidecar)) == [2]


def test_save_is_atomic(sidecar, monkeypatch):
    save_keypoints(sidecar, {0: [KeypointReward(0.5, frame_index=1)]}, fps=FPS)
    assert os.listdir(sidecar.parent) == [sidecar.name]
    before = sidecar.read_bytes()

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(reward_labels.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_keypoints(sidecar, {1: [KeypointReward(0.6, frame_index=2)]}, fps=FPS)
    assert sidecar.read_bytes() == before
    assert os.listdir(sidecar.parent) == [sidecar.name]


def test_save_rejects_duplicate_frames(sidecar):
    with pytest.raises(ValueError, match="frame 3"):
        save_keypoints(
            sidecar, {0: [KeypointReward(0.1, frame_index=3), KeypointReward(0.2, timestamp=0.3)]}, FPS
        )
    assert not sidecar.exists()


def test_load_places_timestamp_only_entries_with_the_episode_fps(sidecar):
    sidecar.parent.mkdir(parents=True)
    entries = [{"timestamp": 1.0, "reward": 0.5}, {"timestamp": 0.2, "reward": 0.1}]
    sidecar.write_text(json.dumps({"0": {"keypoints": entries, "fps": 20}}))
    assert load_keypoints(sidecar, {0: 30}) == {
        0: [KeypointReward(0.1, frame_index=4), KeypointReward(0.5, frame_index=20)]
    }


def _episode(*entries, fps=FPS):
    return {"keypoints": list(entries), "fps": fps}


LENGTHS = {0: 12, 1: 16}

# (case id, file content, text the message must contain, whether save_keypoints must also refuse it)
MALFORMED = [
    ("bad-json", '{"0": {"keypoints": [', ["invalid JSON"], True),
    ("top-level-list", "[]", ["top level"], True),
    ("non-int-episode", {"ep1": _episode()}, ["episode key 'ep1'"], True),
    ("negative-episode", {"-1": _episode()}, ["episode key '-1'"], True),
    ("episode-not-object", {"0": [1, 2]}, ["episode 0"], True),
    ("missing-keypoints", {"0": {"fps": FPS}}, ["episode 0", "keypoints"], True),
    ("missing-fps", {"0": {"keypoints": []}}, ["episode 0", "fps"], True),
    ("bad-fps", {"0": _episode(fps=0)}, ["episode 0", "fps"], True),
    ("no-reward", {"1": _episode({"frame_index": 2})}, ["episode 1, keypoint 0", "reward"], True),
    ("no-position", {"1": _episode({"reward": 0.5})}, ["episode 1, keypoint 0", "frame_index"], True),
    (
        "non-numeric-reward",
        {"0": _episode({"frame_index": 1, "reward": "high"})},
        ["episode 0, keypoint 0", "'high'"],
        True,
    ),
    (
        "non-int-frame",
        {"0": _episode({"frame_index": "3", "reward": 0.5})},
        ["episode 0, keypoint 0", "'3'"],
        True,
    ),
    ("negative-frame", {"0": _episode({"frame_index": -2, "reward": 0.5})}, ["keypoint 0", "-2"], True),
    (
        "unknown-entry-key",
        {"0": _episode({"frame_idx": 3, "timestamp": 0.3, "reward": 0.5})},
        ["episode 0, keypoint 0", "frame_idx"],
        True,
    ),
    (
        "frame-timestamp-disagree",
        {"0": _episode({"frame_index": 3, "timestamp": 0.9, "reward": 0.5})},
        ["episode 0, keypoint 0", "disagrees"],
        True,
    ),
    (
        "duplicate-frame",
        {"1": _episode({"frame_index": 3, "reward": 0.2}, {"timestamp": 0.3, "reward": 0.4})},
        ["episode 1, keypoint 1", "frame 3"],
        True,
    ),
    (
        "reward-out-of-range",
        {"0": _episode({"frame_index": 1, "reward": 0.1}, {"frame_index": 2, "reward": 1.5})},
        ["episode 0, keypoint 1", "1.5"],
        False,
    ),
    (
        "frame-past-end",
        {"0": _episode({"frame_index": 12, "reward": 0.5})},
        ["episode 0, keypoint 0", "frame 12", "length 12"],
        False,
    ),
    ("unknown-episode", {"7": _episode({"frame_index": 1, "reward": 0.5})}, ["episode 7"], False),
]


@pytest.mark.parametrize(
    ("content", "expected", "save_refuses"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_sidecar_raises_naming_file_and_entry(sidecar, content, expected, save_refuses):
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text(content if isinstance(content, str) else json.dumps(content))
    before = sidecar.read_bytes()
    with pytest.raises(KeypointFileError) as error:
        load_keypoints(sidecar, episode_lengths=LENGTHS)
    message = str(error.value)
    assert str(sidecar) in message
    for text in expected:
        assert text in message
    if save_refuses:
        with pytest.raises(KeypointFileError, match="keypoint|episode|JSON|top level"):
            save_keypoints(sidecar, {0: [KeypointReward(0.5, frame_index=1)]}, fps=FPS)
    assert sidecar.read_bytes() == before
    assert os.listdir(sidecar.parent) == [sidecar.name]


def test_load_checks_rewards_against_the_given_value_range(sidecar):
    save_keypoints(sidecar, {0: [KeypointReward(-0.5, frame_index=1)]}, fps=FPS)
    assert load_keypoints(sidecar, value_min=-1.0, value_max=0.0)[0][0].reward == -0.5
    with pytest.raises(KeypointFileError, match=r"reward -0\.5 is outside the value range \[0\.0, 1\.0\]"):
        load_keypoints(sidecar)


def test_load_reports_a_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(KeypointFileError, match="cannot read"):
        load_keypoints(missing)


# ------------------------------------------------------------------------------------------------
# dense_reward_table on a real dataset


@pytest.fixture
def dataset(tmp_path):
    return make_local_dataset(tmp_path / "dataset", cameras=(), env_state_dim=2, episode_lengths=(12, 16, 10))


def _lengths(dataset):
    episodes = dataset.meta.episodes
    return dict(zip(episodes["episode_index"], episodes["length"], strict=True))


def test_dense_reward_table_without_sidecar_is_linear_progress(dataset):
    lengths = _lengths(dataset)
    table = dense_reward_table(dataset.root, lengths, dataset.meta.fps, value_min=-1.0, value_max=1.0)
    assert sorted(table) == [0, 1, 2]
    for episode, length in lengths.items():
        assert table[episode].dtype == np.float32
        np.testing.assert_allclose(
            table[episode], -1.0 + 2.0 * progress(np.arange(length), length), atol=1e-6
        )


def test_dense_reward_table_uses_keypoints_where_labelled(dataset):
    lengths = _lengths(dataset)
    keypoints = [KeypointReward(0.6, frame_index=5), KeypointReward(1.0, frame_index=12)]
    save_keypoints(dataset.root / KEYPOINTS_RELATIVE_PATH, {1: keypoints}, fps=dataset.meta.fps)
    table = dense_reward_table(dataset.root, lengths, dataset.meta.fps, start=0.1, end=0.8)
    np.testing.assert_array_equal(table[1], dense_rewards(keypoints, lengths[1], dataset.meta.fps))
    for episode in (0, 2):
        expected = progress(np.arange(lengths[episode]), lengths[episode], 0.1, 0.8)
        np.testing.assert_allclose(table[episode], expected, atol=1e-6)


def test_dense_reward_table_validates_the_sidecar_against_the_dataset(dataset):
    lengths = _lengths(dataset)
    path = dataset.root / KEYPOINTS_RELATIVE_PATH
    save_keypoints(path, {5: [KeypointReward(0.5, frame_index=1)]}, fps=dataset.meta.fps)
    with pytest.raises(KeypointFileError, match="episode 5"):
        dense_reward_table(dataset.root, lengths, dataset.meta.fps)
    save_keypoints(path, {2: [KeypointReward(0.5, frame_index=1)]}, fps=30, clear_existing=True)
    with pytest.raises(KeypointFileError, match="episode 2: fps 30"):
        dense_reward_table(dataset.root, lengths, dataset.meta.fps)
