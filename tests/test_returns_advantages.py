"""pi*0.6 returns, N-step advantages, the advantages parquet and episode outcomes (SPEC §4.3, §4.5).

The hand-worked example has two tasks, each with a successful and a failed episode:

  episode  task  length  outcome   L_max(task)  c_fail (default = L_max)
     0      0      4     success        4           -
     1      0      3     failure        4           4
     2      1      3     success        3           -
     3      1      2     failure        3           3
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from rewact_tools.advantages import (
    ADVANTAGE_COLUMNS,
    check_advantages,
    compute_advantages,
    n_step_advantage,
    read_advantages,
    task_thresholds,
    time_baseline_advantages,
    values_from_advantages,
    write_advantages,
)
from rewact_tools.outcomes import (
    DEFAULT_SUCCESS_THRESHOLD,
    OUTCOMES_RELATIVE_PATH,
    MissingOutcomesError,
    load_episode_outcomes,
    outcomes_from_success_column,
    outcomes_from_values,
    read_outcomes_file,
    write_episode_outcomes,
)
from rewact_tools.returns import dataset_frames, pistar_returns

from local_datasets import make_local_dataset

EPISODES = [(4, 0), (3, 0), (3, 1), (2, 1)]  # (length, task) of episodes 0..3
OUTCOMES = {0: True, 1: False, 2: True, 3: False}
# RewACT values in [0, 1], per episode in frame order; the normalised value is v - 1.
VALUES = [[0.0, 0.5, 0.5, 1.0], [0.5, 0.25, 0.0], [0.2, 0.6, 1.0], [0.3, 0.1]]
INDEX_OFFSET = 100  # dataset indices need not start at 0


@pytest.fixture
def frames() -> pd.DataFrame:
    """The hand example's frame table, rows shuffled (order must not matter)."""
    rows = []
    for episode, (length, task) in enumerate(EPISODES):
        for frame in range(length):
            rows.append({"episode_index": episode, "frame_index": frame, "task_index": task})
    table = pd.DataFrame(rows)
    table.insert(0, "index", np.arange(len(table)) + INDEX_OFFSET)
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture
def values(frames) -> pd.DataFrame:
    flat = [value for episode in VALUES for value in episode]
    return pd.DataFrame({"index": np.arange(len(flat)) + INDEX_OFFSET, "value": flat})


def column(table: pd.DataFrame, name: str, episode: int) -> list[float]:
    rows = table[table["episode_index"] == episode].sort_values("frame_index")
    return rows[name].tolist()


# --------------------------------------------------------------------------------------------------
# Returns (§4.3)


def test_rewards_and_raw_returns(frames):
    table = pistar_returns(frames, OUTCOMES)
    assert column(table, "reward", 0) == [-1, -1, -1, 0]  # success: 0 at the last frame
    assert column(table, "reward", 1) == [-1, -1, -4]  # failure: -c_fail, c_fail = L_max(task 0) = 4
    assert column(table, "reward", 2) == [-1, -1, 0]
    assert column(table, "reward", 3) == [-1, -3]  # c_fail = L_max(task 1) = 3
    assert column(table, "return", 0) == [-3, -2, -1, 0]
    assert column(table, "return", 1) == [-6, -5, -4]
    assert column(table, "return", 2) == [-2, -1, 0]
    assert column(table, "return", 3) == [-4, -3]


def test_normalised_returns_and_value_targets(frames):
    table = pistar_returns(frames, OUTCOMES)
    # Task 0 divides by L_max - 1 = 3, task 1 by 2; the result is clipped to [-1, 0].
    assert column(table, "normalised_return", 0) == pytest.approx([-1, -2 / 3, -1 / 3, 0])
    assert column(table, "normalised_return", 1) == pytest.approx([-1, -1, -1])  # -2, -5/3, -4/3 clipped
    assert column(table, "normalised_return", 2) == pytest.approx([-1, -0.5, 0])
    assert column(table, "normalised_return", 3) == pytest.approx([-1, -1])  # -2, -1.5 clipped
    assert column(table, "value_target", 0) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert column(table, "value_target", 1) == pytest.approx([0, 0, 0])
    assert column(table, "value_target", 2) == pytest.approx([0, 0.5, 1])
    assert column(table, "normalised_reward", 1) == pytest.approx([-1 / 3, -1 / 3, -4 / 3])
    assert column(table, "normalised_reward", 3) == pytest.approx([-0.5, -1.5])
    assert table["index"].tolist() == sorted(table["index"])  # sorted by episode, then frame


def test_explicit_c_fail_scalar_and_per_task(frames):
    table = pistar_returns(frames, OUTCOMES, c_fail=1)
    assert column(table, "reward", 1) == [-1, -1, -1]
    assert column(table, "normalised_return", 1) == pytest.approx([-1, -2 / 3, -1 / 3])
    table = pistar_returns(frames, OUTCOMES, c_fail={0: 0, 1: 10})
    assert column(table, "reward", 1) == [-1, -1, 0]
    assert column(table, "reward", 3) == [-1, -10]
    with pytest.raises(KeyError, match="c_fail has no entry for task_index 1"):
        pistar_returns(frames, OUTCOMES, c_fail={0: 2})
    with pytest.raises(ValueError, match="non-negative"):
        pistar_returns(frames, OUTCOMES, c_fail=-1)


def test_task_without_success_needs_explicit_max_length(frames):
    outcomes = {**OUTCOMES, 2: False}
    with pytest.raises(ValueError, match="Task 1 has no successful episode"):
        pistar_returns(frames, outcomes)
    table = pistar_returns(frames, outcomes, max_length={0: 4, 1: 5})
    assert column(table, "reward", 2) == [-1, -1, -5]  # c_fail defaults to the given max_length
    assert column(table, "normalised_return", 2) == pytest.approx([-1, -1, -1])  # -7/4, -6/4, -5/4
    assert column(table, "normalised_return", 0) == pytest.approx([-1, -2 / 3, -1 / 3, 0])


def test_unknown_and_missing_outcomes(frames):
    with pytest.raises(ValueError, match="Episode 3 has an unknown outcome"):
        pistar_returns(frames, {**OUTCOMES, 3: None})
    as_failure = pistar_returns(frames, {**OUTCOMES, 3: None}, unknown_as=False)
    pd.testing.assert_frame_equal(as_failure, pistar_returns(frames, OUTCOMES))
    as_success = pistar_returns(frames, {**OUTCOMES, 3: None}, unknown_as=True)
    assert column(as_success, "reward", 3) == [-1, 0]
    with pytest.raises(KeyError, match="No outcome given for episode 2"):
        pistar_returns(frames, {0: True, 1: False, 3: False})


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            lambda f: f[~((f["episode_index"] == 0) & (f["frame_index"] == 2))],
            ValueError,
            r"episode 0 is not whole.*\[0, 1, 3\]",
        ),
        (
            lambda f: f[~((f["episode_index"] == 2) & (f["frame_index"] == 0))],
            ValueError,
            "episode 2 is not whole",
        ),
        (lambda f: pd.concat([f, f.iloc[:1].assign(index=999)]), ValueError, "is not whole"),
        (lambda f: f.drop(columns="task_index"), KeyError, r"missing column\(s\) \['task_index'\]"),
        (
            lambda f: f.assign(frame_index=f["frame_index"].astype(float)),
            TypeError,
            "'frame_index' must hold integers",
        ),
        (lambda f: f.assign(index=0), ValueError, "index 0 appears more than once"),
        (lambda f: f.assign(task_index=np.arange(len(f)) % 2), ValueError, "more than one task_index"),
        (lambda f: f.iloc[:0], ValueError, "no frames"),
    ],
)
def test_bad_frame_tables_raise(frames, mutate, error, message):
    with pytest.raises(error, match=message):
        pistar_returns(mutate(frames), OUTCOMES)


# --------------------------------------------------------------------------------------------------
# Advantages (§4.5)


def test_n_step_advantage_of_one_episode():
    """Episode 1 (failure): normalised rewards -1/3, -1/3, -4/3; V = v - 1 = -0.5, -0.75, -1."""
    rewards, values = np.array([-1, -1, -4]) / 3, np.array([-0.5, -0.75, -1.0])
    targets, advantages = n_step_advantage(rewards, values, n_steps=1)
    assert targets == pytest.approx([-1 / 3 - 0.75, -1 / 3 - 1, -4 / 3])  # last: terminal reward, bootstrap 0
    assert advantages == pytest.approx([-7 / 12, -7 / 12, -1 / 3])
    # N=2 from frame 1 reaches the end: both remaining rewards, the terminal one included, no bootstrap.
    _, advantages = n_step_advantage(rewards, values, n_steps=2)
    assert advantages == pytest.approx([-2 / 3 - 1 + 0.5, -5 / 3 + 0.75, -4 / 3 + 1])
    _, monte_carlo = n_step_advantage(rewards, values)
    assert monte_carlo == pytest.approx([-2 + 0.5, -5 / 3 + 0.75, -4 / 3 + 1])
    for n_steps in (3, 50):
        assert n_step_advantage(rewards, values, n_steps)[1] == pytest.approx(monte_carlo)
    with pytest.raises(ValueError, match="n_steps"):
        n_step_advantage(rewards, values, n_steps=0)
    with pytest.raises(ValueError, match="equal length"):
        n_step_advantage(rewards, values[:2])


# Hand-computed advantages of the example, per episode, in the normalised scale.
EXPECTED_ADVANTAGES = {
    1: [[1 / 6, -1 / 3, 1 / 6, 0], [-7 / 12, -7 / 12, -1 / 3], [-0.1, -0.1, 0], [-0.7, -0.6]],
    2: [[-1 / 6, -1 / 6, 1 / 6, 0], [-7 / 6, -11 / 12, -1 / 3], [-0.2, -0.1, 0], [-1.3, -0.6]],
    None: [[0, -1 / 6, 1 / 6, 0], [-3 / 2, -11 / 12, -1 / 3], [-0.2, -0.1, 0], [-1.3, -0.6]],
}
# Positive frames with the default 30 % per task. Task 0 (7 frames) at N=1: the 0.7 quantile lies
# between 0 and 1/6, so the two 1/6 frames are positive; task 1 (5 frames): only the 0 frame.
EXPECTED_POSITIVE = {
    1: [[True, False, True, False], [False] * 3, [False, False, True], [False, False]],
    2: [[False, False, True, True], [False] * 3, [False, True, True], [False, False]],
    None: [[False, False, True, False], [False] * 3, [False, True, True], [False, False]],
}


@pytest.mark.parametrize("n_steps", [1, 2, None])
def test_compute_advantages_hand_example(frames, values, n_steps):
    table = compute_advantages(frames, values, OUTCOMES, n_steps=n_steps)
    assert tuple(table.columns) == ADVANTAGE_COLUMNS
    assert len(table) == len(frames)
    for episode in range(4):
        assert column(table, "advantage", episode) == pytest.approx(EXPECTED_ADVANTAGES[n_steps][episode])
        assert column(table, "value", episode) == pytest.approx(np.array(VALUES[episode]) - 1)
        assert column(table, "positive", episode) == EXPECTED_POSITIVE[n_steps][episode]
    np.testing.assert_allclose(table["return"] - table["value"], table["advantage"])


def test_fixed_threshold(frames, values):
    table = compute_advantages(frames, values, OUTCOMES, n_steps=1, threshold=0.0)
    assert table.loc[table["positive"], "index"].tolist() == [100, 102]  # the two 1/6 frames only
    table = compute_advantages(frames, values, OUTCOMES, n_steps=1, threshold=-0.65)
    assert table["positive"].sum() == 12 - 1  # all but episode 3 frame 0 (-0.7)


def test_human_frames_are_positive_whatever_their_advantage(frames, values):
    plain = compute_advantages(frames, values, OUTCOMES, n_steps=1, threshold=0.0)
    # Episode 1 frame 0 (index 104) and episode 3 frame 0 (index 110) were driven by a human.
    table = compute_advantages(frames, values, OUTCOMES, n_steps=1, threshold=0.0, human_index=[104, 110])
    assert table.loc[table["positive"], "index"].tolist() == [100, 102, 104, 110]
    pd.testing.assert_frame_equal(table.drop(columns="positive"), plain.drop(columns="positive"))
    # Per-task thresholds are taken before forcing: the 3 frames of EXPECTED_POSITIVE[1], plus 104.
    fraction = compute_advantages(frames, values, OUTCOMES, n_steps=1, human_index=np.array([104]))
    assert fraction.loc[fraction["positive"], "index"].tolist() == [100, 102, 104, 109]
    with pytest.raises(
        ValueError, match=r"human_index: 1 frame\(s\) are not in the advantages table, first index 99"
    ):
        compute_advantages(frames, values, OUTCOMES, human_index=[99, 104])


def test_successes_without_a_takeover_are_positive_whatever_their_advantage(frames, values):
    """`successes_positive`: the frames filtered BC keeps stay positive; the advantage ranks the rest."""
    plain = compute_advantages(frames, values, OUTCOMES, n_steps=1, threshold=0.0)
    assert plain.loc[plain["positive"], "index"].tolist() == [100, 102]
    kept = compute_advantages(frames, values, OUTCOMES, n_steps=1, threshold=0.0, successes_positive=True)
    assert kept.loc[kept["positive"], "index"].tolist() == [100, 101, 102, 103, 107, 108, 109]
    pd.testing.assert_frame_equal(kept.drop(columns="positive"), plain.drop(columns="positive"))
    # A human drove frame 108: episode 2 is a rescued success, its own frames keep their labels.
    rescued = compute_advantages(
        frames, values, OUTCOMES, n_steps=1, threshold=0.0, human_index=[108], successes_positive=True
    )
    assert rescued.loc[rescued["positive"], "index"].tolist() == [100, 101, 102, 103, 108]
    # Under segment credit the successes are still whole episodes: a takeover at frame 102 makes
    # episode 0 rescued, and only episode 2's frames join the advantage's positives.
    segment = {"n_steps": 1, "threshold": 0.0, "human_index": [102], "credit": "segment"}
    plain = compute_advantages(frames, values, OUTCOMES, **segment)
    kept = compute_advantages(frames, values, OUTCOMES, **segment, successes_positive=True)
    assert set(kept.loc[kept["positive"], "index"]) == set(plain.loc[plain["positive"], "index"]) | {
        107,
        108,
        109,
    }


def test_time_baseline_keeps_successes_positive_too(frames):
    plain = time_baseline_advantages(frames, OUTCOMES, threshold=0.0)
    kept = time_baseline_advantages(frames, OUTCOMES, threshold=0.0, successes_positive=True)
    assert kept.loc[kept["positive"], "index"].tolist() == [100, 101, 102, 103, 107, 108, 109]
    pd.testing.assert_frame_equal(kept.drop(columns="positive"), plain.drop(columns="positive"))


def test_time_baseline_advantages_hand_example(frames):
    """V(s_t) is the task's mean Monte-Carlo return at frame t: successes sit above it, failures below."""
    table = time_baseline_advantages(frames, OUTCOMES, threshold=0.0)
    assert tuple(table.columns) == ADVANTAGE_COLUMNS
    # Task 0 returns: episode 0 [-1, -2/3, -1/3, 0], episode 1 [-2, -5/3, -4/3]; frame 3 has episode 0 only.
    assert column(table, "value", 0) == pytest.approx([-1.5, -7 / 6, -5 / 6, 0])
    assert column(table, "advantage", 0) == pytest.approx([0.5, 0.5, 0.5, 0])
    assert column(table, "advantage", 1) == pytest.approx([-0.5, -0.5, -0.5])
    # Task 1 returns: episode 2 [-1, -0.5, 0], episode 3 [-2, -1.5].
    assert column(table, "advantage", 2) == pytest.approx([0.5, 0.5, 0])
    assert column(table, "advantage", 3) == pytest.approx([-0.5, -0.5])
    assert table.loc[table["positive"], "index"].tolist() == [100, 101, 102, 107, 108]
    check_advantages(table)


def test_thresholds_give_the_requested_fraction_per_task():
    rng = np.random.default_rng(0)
    tasks = pd.Series(np.repeat([0, 1, 2], [200, 50, 1000]))
    # Tasks on very different scales: one global threshold would make task 2 all negative.
    advantages = pd.Series(
        rng.normal(size=len(tasks)) * np.array([1.0, 10.0, 0.01])[tasks] - 5 * (tasks == 2)
    )
    for fraction in (0.1, 0.3, 0.7):
        thresholds = task_thresholds(advantages, tasks, fraction)
        positive = advantages > tasks.map(thresholds)
        for task, size in zip([0, 1, 2], [200, 50, 1000], strict=True):
            assert abs(positive[tasks == task].mean() - fraction) <= 1 / size
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="positive_fraction"):
            task_thresholds(advantages, tasks, fraction)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: v.iloc[1:], r"no value for 1 frame\(s\), first index 100"),
        (
            lambda v: pd.concat([v, pd.DataFrame({"index": [7], "value": [0.5]})]),
            "not in the table, first index 7",
        ),
        (lambda v: v.assign(value=v["value"] + 0.5), r"value range \[0, 1\]"),
        (lambda v: v.assign(value=np.nan), r"value range \[0, 1\], got nan"),
        (lambda v: v.rename(columns={"value": "v"}), "missing column 'value'"),
        (lambda v: pd.concat([v, v.iloc[:1]]), "index 100 appears twice"),
    ],
)
def test_bad_values_raise(frames, values, mutate, message):
    with pytest.raises((KeyError, ValueError), match=message):
        compute_advantages(frames, mutate(values), OUTCOMES)


def test_advantages_parquet_round_trip(tmp_path, frames, values):
    table = compute_advantages(frames, values, OUTCOMES, n_steps=2)
    path = write_advantages(table, tmp_path / "out" / "advantages.parquet")
    assert os.listdir(path.parent) == ["advantages.parquet"]  # no temporary file left behind
    pd.testing.assert_frame_equal(read_advantages(path), table)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda t: t.drop(columns="advantage"), KeyError, r"missing column\(s\) \['advantage'\]"),
        (lambda t: t.assign(extra=1), KeyError, r"unexpected column\(s\) \['extra'\]"),
        (lambda t: t.assign(positive=t["positive"].astype(int)), TypeError, "'positive' must hold booleans"),
        (lambda t: t.assign(value=t["value"].astype(str)), TypeError, "'value' must hold floats"),
        (lambda t: t.assign(advantage=np.nan), ValueError, "'advantage' holds NaN"),
        (lambda t: t.iloc[1:], ValueError, "episode 0 is not whole"),
    ],
)
def test_read_advantages_validates(tmp_path, frames, values, mutate, error, message):
    path = tmp_path / "advantages.parquet"
    mutate(compute_advantages(frames, values, OUTCOMES)).to_parquet(path)
    with pytest.raises(error, match=message) as raised:
        read_advantages(path)
    assert str(path) in str(raised.value)
    with pytest.raises(error, match=message):
        write_advantages(mutate(compute_advantages(frames, values, OUTCOMES)), tmp_path / "other.parquet")
    assert not (tmp_path / "other.parquet").exists()
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        read_advantages(tmp_path / "missing.parquet")


def test_values_from_advantages_give_back_each_frames_value(tmp_path, frames, values):
    path = write_advantages(compute_advantages(frames, values, OUTCOMES), tmp_path / "advantages.parquet")
    read = values_from_advantages(path, frames)
    assert read["index"].tolist() == sorted(frames["index"])  # as compute_values gives them
    assert np.allclose(read["value"], values.set_index("index").loc[read["index"], "value"])


@pytest.mark.parametrize(
    ("frames_instead", "message"),
    [
        (lambda f: f[f["episode_index"] != 3], "holds a frame not in the dataset: 2 frame"),
        (
            lambda f: pd.concat([f, f.iloc[[0]].assign(index=999, frame_index=9)], ignore_index=True),
            "has no value for 1 frame.*index 999",
        ),
        (
            lambda f: f.assign(episode_index=f["episode_index"].replace({0: 1, 1: 0})),
            "is episode 0 frame .* there but episode 1 frame .* in the dataset",
        ),
    ],
)
def test_values_from_advantages_of_another_dataset_are_refused(
    tmp_path, frames, values, frames_instead, message
):
    path = write_advantages(compute_advantages(frames, values, OUTCOMES), tmp_path / "advantages.parquet")
    with pytest.raises(ValueError, match=message) as raised:
        values_from_advantages(path, frames_instead(frames))
    assert str(path) in str(raised.value)


# --------------------------------------------------------------------------------------------------
# Episode outcomes


def write_raw_outcomes(root, data) -> str:
    path = root / OUTCOMES_RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_outcomes_file_round_trip_in_robocandywrapper_format(tmp_path):
    path = write_episode_outcomes(tmp_path, {2: None, 0: True, 1: False})
    assert path == tmp_path / "candywrapper_plugins" / "episode_outcome" / "outcomes.json"
    assert json.loads(path.read_text()) == [
        {"episode_index": 0, "outcome": "success"},
        {"episode_index": 1, "outcome": "failure"},
        {"episode_index": 2, "outcome": "unknown"},
    ]
    assert read_outcomes_file(path) == {0: True, 1: False, 2: None}
    write_episode_outcomes(tmp_path, {1: True, 5: np.bool_(False)})  # keeps the episodes not mentioned
    assert read_outcomes_file(path) == {0: True, 1: True, 2: None, 5: False}
    assert sorted(os.listdir(path.parent)) == ["outcomes.json"]
    for bad in ({-1: True}, {1.5: True}, {0: "success"}):
        with pytest.raises(ValueError, match="must be"):
            write_episode_outcomes(tmp_path, bad)
    assert read_outcomes_file(path) == {0: True, 1: True, 2: None, 5: False}  # untouched by failed writes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[{", "not valid JSON"),
        ({"0": "success"}, "expected a JSON list"),
        ([{"episode_index": 0}], r"entry 0 .*exactly 'episode_index' and 'outcome'"),
        ([{"episode_index": 0, "outcome": "success", "x": 1}], "entry 0 .*exactly"),
        (["success"], "entry 0 .*exactly"),
        (
            [{"episode_index": 0, "outcome": "success"}, {"episode_index": 1, "outcome": "won"}],
            r"entry 1 .*got 'won'",
        ),
        ([{"episode_index": "0", "outcome": "success"}], "non-negative integer, got '0'"),
        ([{"episode_index": True, "outcome": "success"}], "non-negative integer, got True"),
        ([{"episode_index": -1, "outcome": "success"}], "non-negative integer, got -1"),
        (
            [{"episode_index": 4, "outcome": "success"}],
            "episode 4 does not exist; the dataset has 4 episodes",
        ),
        (
            [{"episode_index": 1, "outcome": "success"}, {"episode_index": 1, "outcome": "failure"}],
            "entry 1 .*more than once",
        ),
    ],
)
def test_bad_outcomes_files_raise(tmp_path, data, message):
    path = write_raw_outcomes(tmp_path, data)
    with pytest.raises(ValueError, match=message) as raised:
        read_outcomes_file(path, num_episodes=4)
    assert path in str(raised.value)


def test_success_column_uses_the_last_frame(frames):
    last = (
        frames["frame_index"]
        == frames["episode_index"].map(dict(enumerate(length for length, _ in EPISODES))) - 1
    )
    table = frames.assign(**{"next.success": last & frames["episode_index"].isin([0, 3])})
    # Episode 1 reaches success mid-way and loses it again: a failure.
    table.loc[(table["episode_index"] == 1) & (table["frame_index"] == 1), "next.success"] = True
    assert outcomes_from_success_column(table) == {0: True, 1: False, 2: False, 3: True}
    with pytest.raises(TypeError, match="'next.success' must hold booleans"):
        outcomes_from_success_column(table.assign(**{"next.success": 1.0}))


@pytest.fixture(scope="module")
def next_fields_root(tmp_path_factory):
    """A real dataset whose `next.success` is true on the last frame of even episodes."""
    root = tmp_path_factory.mktemp("outcomes") / "with_next"
    make_local_dataset(root, cameras=(), episode_lengths=(5, 4, 6, 3), with_next_fields=True)
    return root


def test_outcomes_from_a_real_dataset(next_fields_root):
    dataset = LeRobotDataset("local/test", root=next_fields_root)
    outcomes = load_episode_outcomes(dataset)
    assert outcomes == {0: True, 1: False, 2: True, 3: False}
    table = pistar_returns(dataset_frames(dataset), outcomes)
    assert len(table) == 18
    assert column(table, "reward", 1) == [-1, -1, -1, -6]  # c_fail = longest success (episode 2)
    assert column(table, "value_target", 2) == pytest.approx(np.linspace(0, 1, 6))
    subset = LeRobotDataset("local/test", root=next_fields_root, episodes=[1, 2])
    assert load_episode_outcomes(subset) == {1: False, 2: True}


def test_outcomes_file_takes_precedence(tmp_path):
    root = tmp_path / "copy"
    make_local_dataset(root, cameras=(), episode_lengths=(5, 4, 6, 3), with_next_fields=True)
    write_episode_outcomes(root, {0: False, 1: True, 2: None})
    dataset = LeRobotDataset("local/test", root=root)
    assert load_episode_outcomes(dataset) == {0: False, 1: True, 2: None, 3: None}  # 3 is not listed
    write_raw_outcomes(root, [{"episode_index": 9, "outcome": "success"}])
    with pytest.raises(ValueError, match="episode 9 does not exist; the dataset has 4 episodes"):
        load_episode_outcomes(dataset)


def test_no_outcome_source_raises(tmp_path):
    dataset = make_local_dataset(tmp_path / "plain", cameras=(), episode_lengths=(3, 2))
    with pytest.raises(MissingOutcomesError, match=r"outcomes\.json.*nor a 'next\.success' column"):
        load_episode_outcomes(dataset)


def test_an_outcomes_file_given_explicitly_wins(tmp_path, next_fields_root):
    path = write_episode_outcomes(tmp_path / "elsewhere", {0: False, 1: True, 3: None})
    dataset = LeRobotDataset("local/test", root=next_fields_root)
    assert load_episode_outcomes(dataset) == {0: True, 1: False, 2: True, 3: False}  # next.success
    assert load_episode_outcomes(dataset, path) == {0: False, 1: True, 2: None, 3: None}
    with pytest.raises(FileNotFoundError, match=r"Outcomes file .*missing\.json does not exist"):
        load_episode_outcomes(dataset, tmp_path / "missing.json")


def value_table(frames, values) -> pd.DataFrame:
    """The hand example as `compute_values` returns it: index, episode_index, frame_index, value."""
    return frames.drop(columns="task_index").merge(values, on="index")


def test_outcomes_from_values_call_success_on_the_last_frame(frames, values):
    table = value_table(frames, values)  # final values: 1.0, 0.0, 1.0, 0.1
    assert outcomes_from_values(table) == {0: True, 1: False, 2: True, 3: False}  # default 0.9
    assert DEFAULT_SUCCESS_THRESHOLD == 0.9
    # Episode 1 peaks at 0.5 on its first frame but ends at 0.0; episode 3 ends exactly at 0.1.
    assert outcomes_from_values(table, threshold=0.1) == {0: True, 1: False, 2: True, 3: True}
    for threshold in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"success threshold must lie in \(0, 1\]"):
            outcomes_from_values(table, threshold)
    middle_of_episode_1 = (table["episode_index"] == 1) & (table["frame_index"] == 1)
    with pytest.raises(ValueError, match="values: episode 1 is not whole"):
        outcomes_from_values(table[~middle_of_episode_1])
    with pytest.raises(ValueError, match=r"episode 0 ends with value 1\.5, outside \[0, 1\]"):
        outcomes_from_values(table.assign(value=table["value"] * 1.5))
