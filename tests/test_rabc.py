"""RewACT progress as LeRobot's RA-BC progress file: the table, the script, stock `lerobot-train`.

The format checks read the file back with LeRobot's own RA-BC weighter (LeRobot 0.6), so they fail
if the file is not what LeRobot reads. The end-to-end test trains RewACT with
`--sample_weighting.type=rabc` on the script's output and reads the weights it logs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rewact_tools.lerobot_compat import HAS_SAMPLE_WEIGHTING
from rewact_tools.rabc import (
    PROGRESS_COLUMN,
    RABC_COLUMNS,
    falling_fraction,
    progress_summary,
    progress_table,
    write_progress_file,
)

from local_datasets import make_local_dataset
from subprocess_helpers import (
    dataset_args,
    last_checkpoint,
    run_script,
    run_scripts,
    train_tiny,
)

needs_sample_weighting = pytest.mark.skipif(
    not HAS_SAMPLE_WEIGHTING, reason="RA-BC sample weighting (--sample_weighting.*) needs LeRobot 0.6"
)
CHUNK = 4  # TINY_ACT's chunk_size


def _values(progress_by_episode: list[list[float]]) -> pd.DataFrame:
    """A `compute_values` table: episodes one after another, global index counting on."""
    rows, index = [], 0
    for episode, values in enumerate(progress_by_episode):
        for frame, value in enumerate(values):
            rows.append({"index": index, "episode_index": episode, "frame_index": frame, "value": value})
            index += 1
    return pd.DataFrame(rows)


def test_progress_table_has_lerobots_schema_and_rescales_the_value_range():
    table = progress_table(_values([[-1.0, 0.0, 1.0]]), value_min=-1.0, value_max=1.0)
    assert list(table.columns) == list(RABC_COLUMNS)
    assert [str(table[c].dtype) for c in RABC_COLUMNS] == ["int64", "int64", "int64", "float32"]
    np.testing.assert_allclose(table[PROGRESS_COLUMN], [0.0, 0.5, 1.0])


def test_progress_table_rejects_bad_input():
    with pytest.raises(KeyError, match="lacks column"):
        progress_table(pd.DataFrame({"index": [0], "value": [0.5]}))
    with pytest.raises(ValueError, match="value_max"):
        progress_table(_values([[0.5]]), value_min=1.0, value_max=1.0)


def test_write_refuses_an_existing_file_and_is_atomic(tmp_path):
    path = tmp_path / "progress.parquet"
    table = progress_table(_values([[0.1, 0.2]]))
    write_progress_file(table, path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_progress_file(table, path)
    with pytest.raises(KeyError, match="must have columns"):
        write_progress_file(table.drop(columns=["frame_index"]), path, overwrite=True)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)  # the failed write left it intact
    assert [p.name for p in tmp_path.iterdir()] == ["progress.parquet"]


def test_falling_fraction_looks_ahead_within_episodes():
    # Episode 0 rises. In episode 1 only frame 1 sees a lower value two frames ahead (0.9 -> 0.4);
    # frames 2 and 3 look ahead to the last frame, which holds their value; episode 0's end does
    # not count for episode 1's first frame.
    table = progress_table(_values([[0.0, 0.5, 1.0], [0.2, 0.9, 0.4, 0.4]]))
    assert falling_fraction(table, chunk_size=2) == pytest.approx(1 / 7)
    summary = progress_summary(table, chunk_size=2)
    assert summary["frames"] == 7 and summary["episodes"] == 2
    assert summary["progress_max"] == pytest.approx(1.0)


@needs_sample_weighting
def test_lerobots_rabc_weighter_reads_the_file_and_zeroes_falling_frames(tmp_path):
    import torch
    from lerobot.rewards.sarm.rabc import RABCWeights

    progress = [[0.0, 0.1, 0.3, 0.6, 1.0, 1.0], [0.0, 0.4, 0.8, 0.5, 0.2, 0.1]]
    table = progress_table(_values(progress))
    path = write_progress_file(table, tmp_path / "sarm_progress.parquet")
    weighter = RABCWeights(progress_path=path, chunk_size=2, head_mode="rewact", device="cpu")
    weights, stats = weighter.compute_batch_weights({"index": torch.arange(len(table))})

    falling, index = [], 0
    for values in progress:
        for frame, value in enumerate(values):
            if values[min(frame + 2, len(values) - 1)] < value:
                falling.append(index)
            index += 1
    assert falling == [8, 9, 10]
    assert stats["num_zero_weight"] == len(falling)
    assert (weights[falling] == 0).all() and (np.delete(weights.numpy(), falling) > 0).all()
    assert len(set(weights.tolist())) > 2  # not uniform


def make_rabc_dataset(root: Path) -> Path:
    make_local_dataset(root, repo_id="local/rabc", episode_lengths=(14, 18, 12), with_next_fields=True)
    return root


@pytest.fixture(scope="module")
def rabc_dataset(tmp_path_factory):
    """This worker's copy: the tests write into it."""
    return make_rabc_dataset(tmp_path_factory.mktemp("rabc") / "data")


def train_reward_model(work: Path) -> None:
    train_tiny(make_rabc_dataset(work / "data"), "local/rabc", work / "reward_model")


@pytest.fixture(scope="module")
def reward_checkpoint(build_once):
    """Trained by stock lerobot-train on an identical copy of the dataset, once per test run."""
    return last_checkpoint(build_once("rabc_reward_model", train_reward_model) / "reward_model")


@pytest.mark.duration(9)
@needs_sample_weighting
def test_script_then_stock_lerobot_train_weights_samples(rabc_dataset, reward_checkpoint, tmp_path):
    run = run_script(
        "compute_rabc_progress.py",
        *dataset_args(rabc_dataset, "local/rabc"),
        "--policy-path",
        reward_checkpoint,
    ).check()
    path = rabc_dataset / "sarm_progress.parquet"
    table = pd.read_parquet(path)
    assert list(table.columns) == list(RABC_COLUMNS)
    assert table["index"].tolist() == list(range(14 + 18 + 12))
    assert table[PROGRESS_COLUMN].between(0, 1).all()
    assert "--sample_weighting.head_mode=rewact" in run.stdout
    assert f"{100 * falling_fraction(table, CHUNK):.1f}% of the frames" in run.stdout

    again = run_script(
        "compute_rabc_progress.py",
        *dataset_args(rabc_dataset, "local/rabc"),
        "--policy-path",
        reward_checkpoint,
    )
    again.check_user_error("already exists", "--overwrite")

    result = train_tiny(
        rabc_dataset,
        "local/rabc",
        tmp_path / "weighted",
        "--batch_size=16",
        "--sample_weighting.type=rabc",
        "--sample_weighting.head_mode=rewact",
        steps=3,
    )
    logged = result.stdout + result.stderr
    means = [float(v) for v in re.findall(r"sample_weight_mean_weight:([0-9.]+)", logged)]
    assert len(means) == 3, logged[-3000:]
    assert all(0 <= m <= 1 for m in means) and min(means) < 1.0  # weighted, not uniform


def test_features_of_another_dataset_are_refused(tmp_path):
    from lerobot_policy_rewact import RewACTConfig
    from rewact_tools.values import check_features_match

    from policy_helpers import TINY_ACT, policy_features

    trained_on = make_local_dataset(tmp_path / "same", repo_id="local/same", episode_lengths=(5,))
    config = RewACTConfig(**TINY_ACT, **policy_features(trained_on))
    check_features_match(config, trained_on)
    wider = make_local_dataset(tmp_path / "wide", repo_id="local/wide", state_dim=3, episode_lengths=(5,))
    with pytest.raises(ValueError, match=r"'observation.state' has shape \(3,\).*trained with shape \(2,\)"):
        check_features_match(config, wider)
    camera_less = make_local_dataset(
        tmp_path / "nocam", repo_id="local/nocam", cameras=(), episode_lengths=(5,)
    )
    with pytest.raises(KeyError, match="lacks the checkpoint's input feature"):
        check_features_match(config, camera_less)


@pytest.mark.duration(12)
def test_script_refuses_bad_checkpoints_and_data(rabc_dataset, reward_checkpoint, tmp_path):
    from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy

    from policy_helpers import TINY_ACT, policy_features

    dataset = make_local_dataset(tmp_path / "data", repo_id="local/data", episode_lengths=(6,))
    actvantage = tmp_path / "actvantage"
    ACTvantagePolicy(ACTvantageConfig(**TINY_ACT, **policy_features(dataset))).save_pretrained(actvantage)
    wider = make_local_dataset(tmp_path / "wide", repo_id="local/wide", state_dim=3, episode_lengths=(6,))
    not_rewact, mismatched = run_scripts(
        (
            "compute_rabc_progress.py",
            [*dataset_args(dataset.root, "local/data"), "--policy-path", actvantage],
        ),
        (
            "compute_rabc_progress.py",
            [*dataset_args(wider.root, "local/wide"), "--policy-path", reward_checkpoint],
        ),
    )
    not_rewact.check_user_error("without a value head", "RewACT checkpoint")
    mismatched.check_user_error("'observation.state' has shape (3,)", "trained with shape (2,)")
    assert not (dataset.root / "sarm_progress.parquet").exists()
    assert not (wider.root / "sarm_progress.parquet").exists()
