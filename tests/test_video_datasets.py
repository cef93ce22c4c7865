"""Datasets whose cameras are MP4 files, as every hub dataset stores them: two cameras at 30 fps,
through stock `lerobot-train`, `compute_values` and the scripts that read frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact import RewACTPolicy, make_rewact_pre_post_processors
from rewact_tools.values import FrameBatches, compute_values

from local_datasets import make_local_dataset
from subprocess_helpers import (
    dataset_args,
    last_checkpoint,
    mp4_frames,
    run_scripts,
    train_tiny,
)

REPO_ID = "local/video"
CAMERAS = ("observation.images.front", "observation.images.wrist")
LENGTHS = (24, 30, 18)


def make_video_dataset(root: Path) -> Path:
    make_local_dataset(
        root,
        repo_id=REPO_ID,
        cameras=CAMERAS,
        image_size=(36, 48),
        fps=30,
        episode_lengths=LENGTHS,
        with_next_fields=True,
        use_videos=True,
    )
    return root


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    """This worker's copy: the scripts write into it."""
    return make_video_dataset(tmp_path_factory.mktemp("video") / "data")


def train_on_videos(work: Path) -> None:
    train_tiny(make_video_dataset(work / "data"), REPO_ID, work / "rewact", "--dataset.video_backend=pyav")


@pytest.fixture(scope="module")
def video_checkpoint(build_once):
    """A RewACT trained by stock lerobot-train on an identical copy of the video dataset, decoding with
    PyAV, once per test run."""
    return last_checkpoint(build_once("video_rewact", train_on_videos) / "rewact")


def test_the_dataset_really_stores_videos(video_root):
    dataset = LeRobotDataset(REPO_ID, root=video_root, video_backend="pyav")
    assert sorted(dataset.meta.video_keys) == sorted(CAMERAS)
    assert dataset.meta.fps == 30
    for camera in CAMERAS:
        videos = list((video_root / "videos" / camera).rglob("*.mp4"))
        assert videos and sum(mp4_frames(path)[0] for path in videos) == sum(LENGTHS)


@pytest.mark.duration(10)
def test_lerobot_train_checkpoint_reads_both_cameras(video_checkpoint):
    policy = RewACTPolicy.from_pretrained(video_checkpoint)
    assert sorted(policy.config.image_features) == sorted(CAMERAS)


def test_compute_values_decodes_every_frame_once(video_root, video_checkpoint):
    dataset = LeRobotDataset(REPO_ID, root=video_root, video_backend="pyav")
    assert not FrameBatches.supports(dataset)  # videos are decoded item by item
    policy = RewACTPolicy.from_pretrained(video_checkpoint)
    table = compute_values(policy, dataset, batch_size=16, progress=False)
    assert table["index"].tolist() == list(range(sum(LENGTHS)))
    assert table.groupby("episode_index")["frame_index"].max().tolist() == [n - 1 for n in LENGTHS]

    preprocessor, _ = make_rewact_pre_post_processors(policy.config, dataset.meta.stats)
    for position in (0, 25, len(dataset) - 1):
        item = preprocessor(dataset[position])
        single = policy.predict_value({k: v for k, v in item.items() if k.startswith("observation.")})
        torch.testing.assert_close(
            torch.tensor(table["value"][position]), single.squeeze(0), rtol=0, atol=1e-5
        )


def test_scripts_read_video_datasets(video_root, video_checkpoint, tmp_path):
    predictions = tmp_path / "predictions"
    advantages = tmp_path / "advantages.parquet"
    visualised, precomputed = run_scripts(
        (
            "visualise_reward_predictions.py",
            [
                *dataset_args(video_root, REPO_ID),
                "--policy-path",
                video_checkpoint,
                "--episode-id",
                "1",
                "--output-dir",
                predictions,
            ],
        ),
        (
            "precompute_advantage.py",
            [*dataset_args(video_root, REPO_ID), "--policy-path", video_checkpoint, "--output", advantages],
        ),
    )
    visualised.check()
    precomputed.check()
    stem = predictions / "reward_predictions_episode_1"
    frames, (height, width) = mp4_frames(stem.with_suffix(".mp4"))
    # Both 36x48 cameras, scaled to 256 px high side by side (2 x 341 px), above the 256 px plot.
    assert frames == LENGTHS[1] and height == 512 and width > 2 * 256
    metrics = json.loads(stem.with_suffix(".json").read_text())
    assert metrics["num_frames"] == LENGTHS[1] and np.isfinite(metrics["voc"])
    table = pd.read_parquet(advantages)
    assert len(table) == sum(LENGTHS) and table["positive"].any()
