"""compute_values: equal to a one-frame loop, every frame once, subsets, checkpoints, both read paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors
from rewact_tools.processors import make_pre_post_processors
from rewact_tools.values import VALUE_COLUMNS, FrameBatches, compute_values

from policy_helpers import TINY_ACT, chunked_dataset, policy_features
from subprocess_helpers import run_in_process

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_policy(dataset) -> RewACTPolicy:
    config = RewACTConfig(**policy_features(dataset), **TINY_ACT)
    return RewACTPolicy(config, dataset_stats=dataset.meta.stats)


def one_frame_values(policy, dataset) -> np.ndarray:
    preprocessor, _ = make_rewact_pre_post_processors(policy.config, dataset.meta.stats)
    values = []
    for position in range(len(dataset)):
        batch = preprocessor(dataset[position])
        values.append(
            policy.predict_value({k: v for k, v in batch.items() if k.startswith("observation.")}).item()
        )
    return np.array(values)


def frame_table(dataset):
    columns = ["index", "episode_index", "frame_index"]
    return dataset.hf_dataset.with_format(None).select_columns(columns).to_pandas()


@pytest.mark.parametrize("dataset_name", ["env_state_dataset", "image_dataset"])
def test_equals_a_one_frame_loop_over_every_frame(dataset_name, request):
    dataset = request.getfixturevalue(dataset_name)
    policy = tiny_policy(dataset)
    assert FrameBatches.supports(dataset)
    table = compute_values(policy, dataset, batch_size=5, progress=False)
    assert tuple(table.columns) == VALUE_COLUMNS
    assert [str(t) for t in table.dtypes] == ["int64", "int64", "int64", "float32"]
    frames = frame_table(dataset)
    assert table["index"].tolist() == list(range(len(dataset)))
    assert (
        table[["episode_index", "frame_index"]].values.tolist()
        == frames[["episode_index", "frame_index"]].values.tolist()
    )
    np.testing.assert_allclose(table["value"].to_numpy(), one_frame_values(policy, dataset), atol=1e-5)
    assert table["value"].between(0, 1).all() and table["value"].std() > 0


def test_episode_subset_gives_the_same_values_for_its_frames(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    full = compute_values(policy, env_state_dataset, progress=False).set_index("index")
    subset = LeRobotDataset(env_state_dataset.repo_id, root=env_state_dataset.root, episodes=[0, 2])
    table = compute_values(policy, subset, batch_size=7, preprocessor=None, progress=False)
    expected = frame_table(env_state_dataset).query("episode_index in [0, 2]")
    assert table["index"].tolist() == expected["index"].tolist()
    assert sorted(set(table["episode_index"])) == [0, 2]
    # The subset's own stats are the whole dataset's, so normalisation and values are unchanged.
    np.testing.assert_allclose(
        table["value"].to_numpy(), full.loc[table["index"], "value"].to_numpy(), atol=1e-6
    )


def test_item_by_item_reading_and_workers_give_the_same_table(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    reference = compute_values(policy, env_state_dataset, batch_size=16, progress=False)
    chunked = chunked_dataset(env_state_dataset, TINY_ACT["chunk_size"])
    assert not FrameBatches.supports(chunked)  # delta_timestamps: read through LeRobot's items
    by_item = compute_values(policy, chunked, batch_size=9, progress=False)
    np.testing.assert_allclose(by_item["value"].to_numpy(), reference["value"].to_numpy(), atol=1e-6)
    assert by_item["index"].tolist() == reference["index"].tolist()
    workers = compute_values(policy, env_state_dataset, batch_size=16, num_workers=2, progress=False)
    np.testing.assert_allclose(workers["value"].to_numpy(), reference["value"].to_numpy(), atol=1e-6)


def test_checkpoint_policy_and_preprocessor(image_dataset, tmp_path):
    policy = tiny_policy(image_dataset)
    preprocessor, postprocessor = make_rewact_pre_post_processors(policy.config, image_dataset.meta.stats)
    for component in (policy, preprocessor, postprocessor):
        component.save_pretrained(tmp_path)
    loaded = RewACTPolicy.from_pretrained(tmp_path)
    loaded_preprocessor, _ = make_pre_post_processors(loaded.config, pretrained_path=tmp_path)
    expected = compute_values(policy, image_dataset, progress=False)
    table = compute_values(
        loaded, image_dataset, preprocessor=loaded_preprocessor, device="cpu", progress=False
    )
    np.testing.assert_allclose(table["value"].to_numpy(), expected["value"].to_numpy(), atol=1e-6)
    # Other normalisation statistics change the values: the given preprocessor is the one used.
    shifted = {
        k: {s: v + 1 if s == "mean" else v for s, v in d.items()} for k, d in image_dataset.meta.stats.items()
    }
    other, _ = make_rewact_pre_post_processors(policy.config, shifted)
    assert not np.allclose(
        compute_values(policy, image_dataset, preprocessor=other, progress=False)["value"],
        expected["value"],
        atol=1e-4,
    )


def test_rejects_a_bad_batch_size(env_state_dataset):
    with pytest.raises(ValueError, match="batch_size >= 1, got 0"):
        compute_values(tiny_policy(env_state_dataset), env_state_dataset, batch_size=0)


def test_quick_benchmark_runs(tmp_path):
    output = tmp_path / "bench.json"
    completed = run_in_process(
        REPO_ROOT / "benchmarks" / "bench_compute_values.py",
        ["--quick", "--repeats", "1", "--output", output],
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "speed-up" in completed.stdout and "threads=1" in completed.stdout
    row = json.loads(output.read_text())["scenarios"]["tiny_keypoints"]
    assert row["max_abs_value_difference"] < 1e-5 and row["speedup"] > 1
    assert row["frames"] == 400
