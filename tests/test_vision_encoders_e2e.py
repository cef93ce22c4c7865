"""Both policies with timm encoders under stock `lerobot-train`; RewACT's checkpoint under `lerobot-eval`
in gym-pusht (ACTvantage's camera path is the same code).

The trunks start from weight files the tests write; the files are deleted before the checkpoints are
reloaded, which therefore carry everything they need.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from lerobot_policy_actvantage import ACTvantagePolicy
from lerobot_policy_rewact import RewACTPolicy

from local_datasets import make_local_dataset
from subprocess_helpers import BIN, SMOKE_TRAIN_FLAGS, TINY_POLICY_FLAGS, run_ok

VIT = ("vit_tiny_patch16_224", {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 96})
CNN = ("resnet10t", {"channels": [8, 16, 32, 64], "stem_width": 8})
POLICY_FLAGS = [flag for flag in TINY_POLICY_FLAGS if "pretrained_backbone_weights" not in flag]


@pytest.fixture(scope="module")
def pusht_dataset(tmp_path_factory):
    """PushT's schema: one 96x96 camera, 2-D state and action; and an advantages parquet."""
    work = tmp_path_factory.mktemp("timm_e2e")
    dataset = make_local_dataset(
        work / "pusht", repo_id="local/pusht_timm", image_size=(96, 96), episode_lengths=(10, 12)
    )
    index = np.arange(dataset.meta.total_frames)
    pd.DataFrame(
        {
            "index": index,
            "episode_index": np.array(dataset.hf_dataset["episode_index"]),
            "advantage": np.sin(index),
        }
    ).to_parquet(work / "advantages.parquet")
    return dataset


def write_trunk_weights(path, name: str, kwargs: dict) -> None:
    torch.manual_seed(3)
    model = timm.create_model(name, pretrained=False, **kwargs)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, path)


def train(dataset, tmp_path, policy_type: str, encoder: tuple[str, dict], *extra: str):
    """4 steps of stock lerobot-train from a trunk weight file, which is deleted afterwards."""
    name, kwargs = encoder
    weights = tmp_path / "trunk.safetensors"
    write_trunk_weights(weights, name, kwargs)
    output = tmp_path / "train"
    run_ok(
        [
            str(BIN / "lerobot-train"),
            f"--dataset.repo_id={dataset.repo_id}",
            f"--dataset.root={dataset.root}",
            f"--policy.type={policy_type}",
            *POLICY_FLAGS,
            "--policy.vision_encoder_type=timm",
            f"--policy.vision_backbone={name}",
            f"--policy.vision_encoder_kwargs={json.dumps(kwargs)}",
            f"--policy.pretrained_backbone_weights={weights}",
            *extra,
            *SMOKE_TRAIN_FLAGS,
            "--steps=4",
            "--save_freq=4",
            f"--output_dir={output}",
            "--wandb.enable=false",
        ],
        cwd=tmp_path,
    )
    saved = load_file(weights)
    weights.unlink()
    return output / "checkpoints" / "last" / "pretrained_model", saved


def evaluate(checkpoint, tmp_path) -> None:
    run_ok(
        [
            str(BIN / "lerobot-eval"),
            f"--policy.path={checkpoint}",
            "--policy.device=cpu",
            "--env.type=pusht",
            "--env.observation_height=96",
            "--env.observation_width=96",
            "--env.episode_length=8",
            "--eval.n_episodes=1",
            "--eval.batch_size=1",
            f"--output_dir={tmp_path / 'eval'}",
        ],
        cwd=tmp_path,
    )
    assert list((tmp_path / "eval").rglob("eval_info.json"))


@pytest.mark.duration(20)
def test_rewact_trains_a_timm_vit_with_stock_lerobot_train_and_evaluates(pusht_dataset, tmp_path):
    checkpoint, _ = train(pusht_dataset, tmp_path, "rewact", VIT)
    policy = RewACTPolicy.from_pretrained(checkpoint)
    assert policy.config.vision_encoder_type == "timm" and policy.config.vision_backbone == VIT[0]
    observation = {"observation.image": torch.rand(2, 3, 96, 96), "observation.state": torch.randn(2, 2)}
    assert policy.predict_value(observation).shape == (2,)
    evaluate(checkpoint, tmp_path)


@pytest.mark.duration(10)
def test_actvantage_trains_a_frozen_timm_cnn_with_stock_lerobot_train(pusht_dataset, tmp_path):
    checkpoint, trunk_weights = train(
        pusht_dataset,
        tmp_path,
        "actvantage",
        CNN,
        "--policy.freeze_vision_encoder=true",
        f"--policy.advantage_file={pusht_dataset.root.parent / 'advantages.parquet'}",
    )
    trunk = ACTvantagePolicy.from_pretrained(checkpoint).model.backbone.trunk.model
    for key, tensor in trunk.state_dict().items():  # frozen: the checkpoint holds the file's weights
        assert torch.equal(tensor, trunk_weights[key]), key
