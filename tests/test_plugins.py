"""robocandywrapper plugins: labels per frame on episode subsets and dataset mixes, collation,
fixed dtypes, and validation errors raised at attach time."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from torch.utils.data import DataLoader

from rewact_tools.advantages import ADVANTAGE_COLUMNS, write_advantages
from rewact_tools.candywrapper import WrappedRobotDataset
from rewact_tools.control_modes import EPISODE_MODES_RELATIVE_PATH, human_frame_index
from rewact_tools.labels import KEYPOINTS_RELATIVE_PATH, KeypointFileError, KeypointReward, save_keypoints
from rewact_tools.outcomes import OUTCOMES_RELATIVE_PATH
from rewact_tools.plugins import (
    ControlModePlugin,
    DenseRewardPlugin,
    LabelledRewardPlugin,
    PiStar0_6AdvantagePlugin,
    PiStar0_6CumulativeRewardPlugin,
)
from rewact_tools.returns import dataset_frames
from rewact_tools.reward_dataset import LeRobotDatasetWithReward

from local_datasets import make_local_dataset

# Dataset A: four episodes of one task; next.success is true at the end of episodes 0 and 2.
LENGTHS_A = (6, 9, 7, 8)
LENGTHS_B = (5, 4)
SUBSET = [1, 3]
FPS = 10

# A plugin error inside an item would only be a warning and a missing key; make it fail the test.
pytestmark = pytest.mark.filterwarnings("error:Plugin")


@pytest.fixture(scope="module")
def source_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("plugin_datasets")
    common = {"cameras": (), "state_dim": 2, "action_dim": 2, "env_state_dim": 3, "with_next_fields": True}
    make_local_dataset(base / "a", repo_id="local/a", episode_lengths=LENGTHS_A, **common)
    make_local_dataset(base / "b", repo_id="local/b", episode_lengths=LENGTHS_B, seed=1, **common)
    return {"local/a": base / "a", "local/b": base / "b"}


@pytest.fixture
def roots(source_roots, tmp_path):
    """Private copies of the datasets, so a test can write sidecar files into them."""
    return {
        repo_id: shutil.copytree(root, tmp_path / repo_id.split("/")[1])
        for repo_id, root in source_roots.items()
    }


def open_dataset(roots, repo_id, episodes=None):
    return LeRobotDataset(repo_id, root=roots[repo_id], episodes=episodes)


def collate_all(dataset, batch_size=4):
    """Every item through a DataLoader, as one dict of concatenated tensors (lists for strings)."""
    out: dict[str, list] = {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        for key, value in batch.items():
            out.setdefault(key, []).append(value)
    return {
        key: torch.cat(parts) if isinstance(parts[0], torch.Tensor) else sum(parts, [])
        for key, parts in out.items()
    }


def frames_of(batch):
    return list(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist(), strict=True))


def linear_progress(frame, length, start=0.05, end=0.95):
    position = frame / (length - 1)
    return min(max((position - start) / (end - start), 0.0), 1.0)


# --- DenseRewardPlugin ------------------------------------------------------------------------


def test_dense_reward_on_subset_is_linear_progress_per_frame(roots):
    wrapped = WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[DenseRewardPlugin()])
    batch = collate_all(wrapped)
    assert sorted(set(batch["episode_index"].tolist())) == SUBSET
    assert len(batch["reward"]) == LENGTHS_A[1] + LENGTHS_A[3]
    assert batch["reward"].dtype == torch.float32 and batch["reward"].ndim == 1
    expected = [linear_progress(f, LENGTHS_A[e]) for e, f in frames_of(batch)]
    np.testing.assert_allclose(batch["reward"].numpy(), expected, atol=1e-6)


def test_dense_reward_uses_keypoints_and_value_range(roots):
    keypoints = [KeypointReward(0.5, frame_index=2), KeypointReward(1.0, frame_index=5)]
    save_keypoints(roots["local/a"] / KEYPOINTS_RELATIVE_PATH, {3: keypoints}, fps=FPS)
    plugin = DenseRewardPlugin(value_min=-1.0, value_max=1.0)
    batch = collate_all(WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[plugin]))
    by_frame = dict(zip(frames_of(batch), batch["reward"].tolist(), strict=True))
    # Episode 3 follows its keypoints (rescaled range: frame 0 is value_min), episode 1 linear progress.
    assert by_frame[(3, 0)] == pytest.approx(-1.0)
    assert by_frame[(3, 2)] == pytest.approx(0.5)
    assert all(by_frame[(3, f)] == pytest.approx(1.0) for f in range(5, 8))
    assert -1.0 < by_frame[(3, 1)] < 0.5 and 0.5 < by_frame[(3, 4)] < 1.0
    for frame in range(LENGTHS_A[1]):
        assert by_frame[(1, frame)] == pytest.approx(-1 + 2 * linear_progress(frame, LENGTHS_A[1]), abs=1e-6)


def test_dense_reward_rejects_a_bad_sidecar_at_attach(roots):
    path = roots["local/a"] / KEYPOINTS_RELATIVE_PATH
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"2": {"keypoints": [{"frame_index": 99, "reward": 0.5}], "fps": FPS}}))
    with pytest.raises(KeypointFileError, match=r"reward_keypoints\.json.*episode 2.*past the end"):
        WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[DenseRewardPlugin()])


def test_dense_reward_on_a_mix_of_two_datasets(roots):
    datasets = [open_dataset(roots, "local/a", SUBSET), open_dataset(roots, "local/b")]
    batch = collate_all(WrappedRobotDataset(datasets, plugins=[DenseRewardPlugin()]))
    lengths = {0: LENGTHS_A, 1: LENGTHS_B}
    sources = batch["dataset_index"].tolist()
    assert sorted(set(sources)) == [0, 1]
    expected = [
        linear_progress(f, lengths[s][e]) for s, (e, f) in zip(sources, frames_of(batch), strict=True)
    ]
    np.testing.assert_allclose(batch["reward"].numpy(), expected, atol=1e-6)


def test_lerobot_dataset_with_reward_without_robocandywrapper(roots):
    dataset = LeRobotDatasetWithReward(open_dataset(roots, "local/a", SUBSET))
    assert dataset.meta.total_episodes == 4 and len(dataset) == LENGTHS_A[1] + LENGTHS_A[3]
    batch = collate_all(dataset)
    assert batch["reward"].dtype == torch.float32
    expected = [linear_progress(f, LENGTHS_A[e]) for e, f in frames_of(batch)]
    np.testing.assert_allclose(batch["reward"].numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="already has a feature 'next.reward'"):
        LeRobotDatasetWithReward(open_dataset(roots, "local/a"), key="next.reward")


# --- LabelledRewardPlugin ---------------------------------------------------------------------


def label_of(index):
    return (index * 37 % 11) / 10


def write_labels(path, rows: dict[str, list], column="reward"):
    pd.DataFrame(rows).to_parquet(path)
    return path


def all_index_labels(lengths):
    index = np.arange(sum(lengths))
    return {"index": index, "reward": [label_of(i) for i in index]}


def test_labelled_reward_on_a_mix_by_index_and_by_episode_frame(roots, tmp_path):
    path_a = write_labels(tmp_path / "a.parquet", all_index_labels(LENGTHS_A))
    episodes_b = [e for e, n in enumerate(LENGTHS_B) for _ in range(n)]
    frames_b = [f for n in LENGTHS_B for f in range(n)]
    path_b = write_labels(
        tmp_path / "b.parquet",
        {"episode_index": episodes_b, "frame_index": frames_b, "progress": [0.1 * f for f in frames_b]},
    )
    # One file per dataset, keyed by repo id for one and by root for the other; another column.
    plugin_a = LabelledRewardPlugin({"local/a": path_a, str(roots["local/b"]): path_b}, column="reward")
    datasets = [open_dataset(roots, "local/a", SUBSET), open_dataset(roots, "local/b")]
    with pytest.raises(KeyError, match="no column 'reward'.*progress"):
        WrappedRobotDataset(datasets, plugins=[plugin_a])
    renamed = write_labels(
        tmp_path / "b2.parquet",
        {"episode_index": episodes_b, "frame_index": frames_b, "reward": [0.1 * f for f in frames_b]},
    )
    plugin = LabelledRewardPlugin({"local/a": path_a, "local/b": renamed})
    batch = collate_all(WrappedRobotDataset(datasets, plugins=[plugin]))
    assert batch["reward"].dtype == torch.float32
    for source, index, (_, frame), value in zip(
        batch["dataset_index"].tolist(),
        batch["index"].tolist(),
        frames_of(batch),
        batch["reward"].tolist(),
        strict=True,
    ):
        assert value == pytest.approx(label_of(index) if source == 0 else 0.1 * frame)


def test_labelled_reward_needs_only_the_loaded_frames(roots, tmp_path):
    subset = open_dataset(roots, "local/a", SUBSET)
    loaded = subset.hf_dataset.with_format(None).select_columns(["index"]).to_pandas()["index"].to_numpy()
    path = write_labels(
        tmp_path / "subset.parquet", {"index": loaded, "reward": [label_of(i) for i in loaded]}
    )
    batch = collate_all(WrappedRobotDataset(subset, plugins=[LabelledRewardPlugin(path)]))
    assert batch["reward"].tolist() == pytest.approx([label_of(i) for i in batch["index"].tolist()])
    with pytest.raises(
        ValueError, match=r"subset\.parquet has no 'reward' label for 6 of the 23 loaded.*index 0 "
    ):
        WrappedRobotDataset(open_dataset(roots, "local/a", [0, 1, 3]), plugins=[LabelledRewardPlugin(path)])


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ({"index": [0, 1], "reward": [0.5, float("nan")]}, ValueError, r"column 'reward'.*nan.*'index': 1"),
        (
            {"index": [0, 1], "reward": [0.5, 1.5]},
            ValueError,
            r"outside \[0.0, 1.0\]; first 1.5 at frame \{'index': 1",
        ),
        ({"index": [0, 0], "reward": [0.5, 0.5]}, ValueError, r"labels frame \{'index': 0\} more than once"),
        (
            {"index": [0, 500], "reward": [0.5, 0.5]},
            ValueError,
            r"labels frame \{'index': 500\}.*does not have",
        ),
        (
            {"episode_index": [0, 7], "frame_index": [0, 0], "reward": [0.5, 0.5]},
            ValueError,
            r"'episode_index': 7",
        ),
        (
            {"frame": [0], "reward": [0.5]},
            KeyError,
            r"needs an 'index' column or 'episode_index' and 'frame_index'",
        ),
        ({"index": [0.0], "reward": [0.5]}, TypeError, r"column 'index' must hold integers"),
    ],
)
def test_labelled_reward_validates_the_file_at_attach(roots, tmp_path, rows, error, message):
    path = write_labels(tmp_path / "bad.parquet", rows)
    with pytest.raises(error, match=message) as info:
        WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[LabelledRewardPlugin(path)])
    assert "bad.parquet" in str(info.value)


def test_labelled_reward_rejects_a_file_of_another_dataset_and_unknown_datasets(roots, tmp_path):
    labels = all_index_labels(LENGTHS_A)
    episodes = [e for e, n in enumerate(LENGTHS_A) for _ in range(n)]
    frames = [f for n in LENGTHS_A for f in range(n)]
    shifted = write_labels(
        tmp_path / "shifted.parquet",
        {**labels, "episode_index": episodes, "frame_index": [f + 1 for f in frames]},
    )
    with pytest.raises(
        ValueError, match=r"shifted\.parquet puts index \d+ \(episode 1, frame 0\) at frame_index 1"
    ):
        WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[LabelledRewardPlugin(shifted)])
    with pytest.raises(KeyError, match=r"no file given for dataset 'local/a'.*\['local/b'\]"):
        WrappedRobotDataset(
            open_dataset(roots, "local/a"), plugins=[LabelledRewardPlugin({"local/b": shifted})]
        )
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        WrappedRobotDataset(
            open_dataset(roots, "local/a"), plugins=[LabelledRewardPlugin(tmp_path / "missing.parquet")]
        )


# --- PiStar0_6CumulativeRewardPlugin ----------------------------------------------------------


def pistar_value(frame, length, success, longest_success):
    """SPEC §4.3 by hand: -1 per step, terminal 0 / -L_max, return-to-go / (L_max - 1), clipped, + 1."""
    terminal = 0.0 if success else -float(longest_success)
    steps_after = length - 1 - frame
    ret = -steps_after + terminal
    return min(max(ret / (longest_success - 1), -1.0), 0.0) + 1.0


def test_pistar_reward_on_a_subset_matches_the_whole_dataset(roots):
    # Outcomes from next.success: episodes 0 and 2 succeed, so L_max = 7 even though the subset
    # holds only the failures 1 and 3.
    plugin = PiStar0_6CumulativeRewardPlugin()
    batch = collate_all(WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[plugin]))
    assert batch["reward"].dtype == torch.float32
    expected = [pistar_value(f, LENGTHS_A[e], success=False, longest_success=7) for e, f in frames_of(batch)]
    np.testing.assert_allclose(batch["reward"].numpy(), expected, atol=1e-6)
    full = collate_all(WrappedRobotDataset(open_dataset(roots, "local/a"), plugins=[plugin]))
    full_by_index = dict(zip(full["index"].tolist(), full["reward"].tolist(), strict=True))
    assert batch["reward"].tolist() == [full_by_index[i] for i in batch["index"].tolist()]
    success_values = [v for (e, _), v in zip(frames_of(full), full["reward"].tolist(), strict=True) if e == 2]
    assert success_values[-1] == pytest.approx(1.0) and success_values[0] == pytest.approx(
        pistar_value(0, 7, True, 7)
    )


def test_pistar_reward_reads_robocandywrapper_outcomes_on_a_mix(roots):
    outcomes = [
        {"episode_index": 1, "outcome": "success"},
        {"episode_index": 3, "outcome": "failure"},
        {"episode_index": 0, "outcome": "failure"},
        {"episode_index": 2, "outcome": "unknown"},
    ]
    path = roots["local/a"] / OUTCOMES_RELATIVE_PATH
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(outcomes))
    datasets = [open_dataset(roots, "local/a", SUBSET), open_dataset(roots, "local/b")]
    with pytest.raises(ValueError, match="Episode 2 has an unknown outcome"):
        WrappedRobotDataset(datasets, plugins=[PiStar0_6CumulativeRewardPlugin()])
    plugin = PiStar0_6CumulativeRewardPlugin(unknown_as=False, key="return_value")
    batch = collate_all(WrappedRobotDataset(datasets, plugins=[plugin]))
    # Dataset A: only episode 1 (length 9) succeeds, so L_max = 9. Dataset B (next.success): episode 0.
    success = {0: {1: True, 3: False}, 1: {0: True, 1: False}}
    longest = {0: 9, 1: LENGTHS_B[0]}
    lengths = {0: LENGTHS_A, 1: LENGTHS_B}
    expected = [
        pistar_value(f, lengths[s][e], success[s][e], longest[s])
        for s, (e, f) in zip(batch["dataset_index"].tolist(), frames_of(batch), strict=True)
    ]
    np.testing.assert_allclose(batch["return_value"].numpy(), expected, atol=1e-6)


def test_pistar_reward_with_segment_credit_fails_the_stretch_before_a_takeover(tmp_path):
    # Episode 0 (6 frames) succeeds after a takeover at frame 2: its frames 0-1 are a failed segment
    # of 2 frames, frames 2-5 a successful one of 4. Episode 1 (7 frames) fails; episode 2 succeeds.
    root = tmp_path / "rescued"
    make_local_dataset(
        root,
        repo_id="local/rescued",
        cameras=(),
        episode_lengths=(6, 7, 5),
        with_next_fields=True,
        intervention=lambda episode, frame: episode == 0 and 2 <= frame <= 3,
    )
    dataset = LeRobotDataset("local/rescued", root=root)
    segment = collate_all(
        WrappedRobotDataset(
            dataset, plugins=[PiStar0_6CumulativeRewardPlugin(max_length=6, credit="segment")]
        )
    )
    segments = {0: [(0, 2, False)] * 2 + [(-2, 4, True)] * 4, 1: [(0, 7, False)] * 7, 2: [(0, 5, True)] * 5}
    expected = [
        pistar_value(f + segments[e][f][0], segments[e][f][1], segments[e][f][2], 6)
        for e, f in frames_of(segment)
    ]
    np.testing.assert_allclose(segment["reward"].numpy(), expected, atol=1e-6)
    episode = collate_all(
        WrappedRobotDataset(dataset, plugins=[PiStar0_6CumulativeRewardPlugin(max_length=6)])
    )
    assert episode["reward"][:2].tolist() == pytest.approx([pistar_value(f, 6, True, 6) for f in (0, 1)])
    assert segment["reward"][:2].tolist() == [0.0, 0.0] and episode["reward"][1] > 0.0
    assert segment["reward"][2:].tolist() == pytest.approx(episode["reward"][2:].tolist())


def test_pistar_reward_segment_credit_on_a_dataset_without_control_modes_is_per_episode(roots):
    # Demonstrations record no control modes, hence no takeovers: their segments are their episodes.
    dataset = open_dataset(roots, "local/a")
    episode = collate_all(WrappedRobotDataset(dataset, plugins=[PiStar0_6CumulativeRewardPlugin()]))
    segment = collate_all(
        WrappedRobotDataset(dataset, plugins=[PiStar0_6CumulativeRewardPlugin(credit="segment")])
    )
    assert segment["reward"].tolist() == episode["reward"].tolist()
    with pytest.raises(ValueError, match="credit must be one of"):
        PiStar0_6CumulativeRewardPlugin(credit="takeover")


def test_pistar_reward_needs_outcomes(tmp_path):
    root = tmp_path / "no_outcomes"
    make_local_dataset(root, repo_id="local/c", cameras=(), episode_lengths=(4, 5))
    with pytest.raises(FileNotFoundError, match=r"no episode outcomes.*outcomes\.json.*'next\.success'"):
        WrappedRobotDataset(LeRobotDataset("local/c", root=root), plugins=[PiStar0_6CumulativeRewardPlugin()])


# --- PiStar0_6AdvantagePlugin -----------------------------------------------------------------


def advantages_table(lengths, episodes=None):
    episodes = range(len(lengths)) if episodes is None else episodes
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rows = [(starts[e] + f, e, f) for e in episodes for f in range(lengths[e])]
    index, episode_index, frame_index = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    advantage = np.sin(index.astype(float))
    return pd.DataFrame(
        {
            "index": index,
            "episode_index": episode_index,
            "frame_index": frame_index,
            "task_index": np.zeros_like(index),
            "value": np.zeros(len(index)),
            "return": advantage,
            "advantage": advantage,
            "positive": advantage > 0.5,
        }
    )[list(ADVANTAGE_COLUMNS)]


def test_advantage_plugin_on_a_mix(roots, tmp_path):
    path_a = write_advantages(advantages_table(LENGTHS_A), tmp_path / "a" / "advantages.parquet")
    path_b = write_advantages(advantages_table(LENGTHS_B), tmp_path / "b" / "advantages.parquet")
    datasets = [open_dataset(roots, "local/a", SUBSET), open_dataset(roots, "local/b")]
    batch = collate_all(
        WrappedRobotDataset(
            datasets, plugins=[PiStar0_6AdvantagePlugin({"local/a": path_a, "local/b": path_b})]
        )
    )
    assert batch["advantage"].dtype == torch.float32 and batch["advantage_positive"].dtype == torch.bool
    expected = np.sin(batch["index"].numpy().astype(float))
    np.testing.assert_allclose(batch["advantage"].numpy(), expected, atol=1e-6)
    assert batch["advantage_positive"].tolist() == (expected > 0.5).tolist()
    only = collate_all(
        WrappedRobotDataset(datasets[1], plugins=[PiStar0_6AdvantagePlugin(path_b, positive_key=None)])
    )
    assert "advantage_positive" not in only


def test_advantage_plugin_rejects_missing_and_foreign_frames(roots, tmp_path):
    partial = write_advantages(advantages_table(LENGTHS_A, episodes=[0, 1, 2]), tmp_path / "partial.parquet")
    with pytest.raises(
        ValueError,
        match=r"partial\.parquet has no row for 8 loaded frame\(s\).*index 22 \(episode 3, frame 0\)",
    ):
        WrappedRobotDataset(
            open_dataset(roots, "local/a", SUBSET), plugins=[PiStar0_6AdvantagePlugin(partial)]
        )
    # A file of dataset B covers dataset A's first frames with other episodes.
    foreign = write_advantages(advantages_table(LENGTHS_B), tmp_path / "foreign.parquet")
    with pytest.raises(
        ValueError, match=r"foreign\.parquet puts index 5 \(episode 0, frame 5\) at episode_index 1"
    ):
        WrappedRobotDataset(open_dataset(roots, "local/a", [0]), plugins=[PiStar0_6AdvantagePlugin(foreign)])


# --- ControlModePlugin ------------------------------------------------------------------------


def write_modes(root, data):
    path = root / EPISODE_MODES_RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


MODES_A = {
    "1": [
        {"start_index": 0, "end_index": 3, "mode": "human"},
        {"start_index": 4, "end_index": 6, "mode": "policy"},
    ],
    "3": {"segments": [{"start_index": 2, "end_index": 5, "mode": "policy"}]},
}


def expected_mode(episode, frame):
    if episode == 1:
        return "human" if frame <= 3 else "policy" if frame <= 6 else "unknown"
    if episode == 3:
        return "policy" if 2 <= frame <= 5 else "unknown"
    return "unknown"


def test_control_mode_on_a_subset_uses_frame_positions(roots):
    write_modes(roots["local/a"], MODES_A)
    batch = collate_all(
        WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[ControlModePlugin()])
    )
    modes = [expected_mode(e, f) for e, f in frames_of(batch)]
    assert batch["control_mode"] == modes
    assert (
        batch["control_mode_autonomous"].dtype == torch.bool
        and batch["control_mode_human"].dtype == torch.bool
    )
    assert batch["control_mode_autonomous"].tolist() == [m == "policy" for m in modes]
    assert batch["control_mode_human"].tolist() == [m == "human" for m in modes]


def test_control_mode_on_a_mix_with_a_dataset_without_modes(roots):
    write_modes(roots["local/a"], MODES_A)
    datasets = [open_dataset(roots, "local/a", SUBSET), open_dataset(roots, "local/b")]
    with pytest.raises(FileNotFoundError, match=r"local/b.*no control modes file.*allow_missing"):
        WrappedRobotDataset(datasets, plugins=[ControlModePlugin()])
    batch = collate_all(WrappedRobotDataset(datasets, plugins=[ControlModePlugin(allow_missing=True)]))
    expected = [
        expected_mode(e, f) if s == 0 else "unknown"
        for s, (e, f) in zip(batch["dataset_index"].tolist(), frames_of(batch), strict=True)
    ]
    assert batch["control_mode"] == expected
    assert batch["control_mode_human"].tolist() == [m == "human" for m in expected]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"1": [{"start_index": 0, "end_index": 9, "mode": "human"}]},
            r"episode 1, segment 0.*end_index < 9",
        ),
        ({"1": [{"start_index": 0, "end_index": 2, "mode": "teleop"}]}, r"mode must be one of.*'teleop'"),
        (
            {
                "1": [
                    {"start_index": 0, "end_index": 4, "mode": "human"},
                    {"start_index": 4, "end_index": 5, "mode": "policy"},
                ]
            },
            r"segment 1.*overlaps",
        ),
        ({"9": []}, r"episode '9' is not an episode of the dataset"),
        ({"1": [{"start_index": 0, "end_index": 2}]}, r"exactly \['end_index', 'mode', 'start_index'\]"),
        ({"1": {"spans": []}}, r"episode 1: expected a list of segments"),
    ],
)
def test_control_mode_validates_the_file_at_attach(roots, data, message):
    write_modes(roots["local/a"], data)
    with pytest.raises(ValueError, match=message) as info:
        WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=[ControlModePlugin()])
    assert "episode_modes.json" in str(info.value)


# Dataset C, as lerobot-rollout's DAgger strategy records it: an `intervention` column, True where a
# corrector drove (frames 2..4 of odd episodes), no episode_modes.json.
LENGTHS_C = (6, 7, 5)
SUBSET_C = [1, 2]


def intervened(episode, frame):
    return episode % 2 == 1 and 2 <= frame <= 4


@pytest.fixture
def rollout_root(tmp_path):
    root = tmp_path / "c"
    common = {"cameras": (), "state_dim": 2, "action_dim": 2, "env_state_dim": 3}
    make_local_dataset(root, repo_id="local/c", episode_lengths=LENGTHS_C, intervention=intervened, **common)
    return root


def test_control_mode_from_the_intervention_column_on_a_subset_and_a_mix(roots, rollout_root):
    write_modes(roots["local/a"], MODES_A)
    datasets = [
        LeRobotDataset("local/c", root=rollout_root, episodes=SUBSET_C),
        open_dataset(roots, "local/a", SUBSET),
    ]
    batch = collate_all(WrappedRobotDataset(datasets, plugins=[ControlModePlugin()]))
    expected = [
        ("human" if intervened(e, f) else "policy") if s == 0 else expected_mode(e, f)
        for s, (e, f) in zip(batch["dataset_index"].tolist(), frames_of(batch), strict=True)
    ]
    sources = batch["dataset_index"].tolist()
    rollout_frames = [frame for source, frame in zip(sources, frames_of(batch), strict=True) if source == 0]
    assert rollout_frames == [(e, f) for e in SUBSET_C for f in range(LENGTHS_C[e])]
    assert batch["control_mode"] == expected and "human" in expected
    assert batch["control_mode_human"].tolist() == [m == "human" for m in expected]
    assert batch["control_mode_autonomous"].tolist() == [m == "policy" for m in expected]


def test_control_mode_file_must_agree_with_the_intervention_column(rollout_root):
    # The file calls frames 1..3 of episode 1 "policy"; the column says 2..4 are human.
    write_modes(rollout_root, {"1": [{"start_index": 1, "end_index": 3, "mode": "policy"}]})
    with pytest.raises(ValueError, match="disagree") as info:
        WrappedRobotDataset(LeRobotDataset("local/c", root=rollout_root), plugins=[ControlModePlugin()])
    message = str(info.value)
    assert "episode_modes.json" in message and "'intervention' column" in message
    assert "disagree on 2 frame(s)" in message and "(episode 1, frame 2)" in message
    # Agreeing on the frames it labels; its unlabelled frames (episodes 0 and 2) take the column's.
    write_modes(
        rollout_root,
        {
            "1": [
                {"start_index": 0, "end_index": 1, "mode": "policy"},
                {"start_index": 2, "end_index": 4, "mode": "human"},
            ]
        },
    )
    batch = collate_all(
        WrappedRobotDataset(LeRobotDataset("local/c", root=rollout_root), plugins=[ControlModePlugin()])
    )
    assert batch["control_mode"] == ["human" if intervened(e, f) else "policy" for e, f in frames_of(batch)]


def test_human_frame_index_reads_either_source(roots, rollout_root):
    rollout = LeRobotDataset("local/c", root=rollout_root, episodes=SUBSET_C)
    frames = dataset_frames(rollout)
    human = [intervened(e, f) for e, f in zip(frames["episode_index"], frames["frame_index"], strict=True)]
    expected = frames.loc[human, "index"]
    assert human_frame_index(rollout).tolist() == expected.tolist() and len(expected) == 3
    assert human_frame_index(open_dataset(roots, "local/a")) is None
    write_modes(roots["local/a"], MODES_A)
    # Episode 1 of dataset A starts at index 6; its frames 0..3 are human.
    assert human_frame_index(open_dataset(roots, "local/a", SUBSET)).tolist() == [6, 7, 8, 9]


# --- everything together ----------------------------------------------------------------------


def test_all_plugins_together_collate_with_fixed_dtypes(roots, tmp_path):
    write_modes(roots["local/a"], MODES_A)
    path = write_advantages(advantages_table(LENGTHS_A), tmp_path / "advantages.parquet")
    plugins = [
        DenseRewardPlugin(),
        PiStar0_6CumulativeRewardPlugin(key="pistar_reward"),
        PiStar0_6AdvantagePlugin(path),
        ControlModePlugin(),
        LabelledRewardPlugin(
            write_labels(tmp_path / "labels.parquet", all_index_labels(LENGTHS_A)), key="labelled_reward"
        ),
    ]
    wrapped = WrappedRobotDataset(open_dataset(roots, "local/a", SUBSET), plugins=plugins)
    dtypes = {
        "reward": torch.float32,
        "pistar_reward": torch.float32,
        "advantage": torch.float32,
        "advantage_positive": torch.bool,
        "control_mode_autonomous": torch.bool,
        "control_mode_human": torch.bool,
        "labelled_reward": torch.float32,
    }
    for batch in DataLoader(wrapped, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0)):
        size = len(batch["index"])
        for key, dtype in dtypes.items():
            assert batch[key].dtype == dtype and batch[key].shape == (size,), key
        assert len(batch["control_mode"]) == size
