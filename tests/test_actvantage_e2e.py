"""Stock `lerobot-train --policy.type=actvantage --policy.advantage_file=...`, then `lerobot-eval` on PushT.

The evaluation runs after the advantage file is deleted: inference needs no advantages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from local_datasets import make_local_dataset
from subprocess_helpers import BIN, SMOKE_TRAIN_FLAGS, TINY_POLICY_FLAGS, run_ok


def train(work: Path) -> None:
    """A 4-step training run on a PushT-shaped dataset with an advantages parquet."""
    dataset = make_local_dataset(
        work / "dataset",
        cameras=("observation.image",),
        image_size=(96, 96),
        state_dim=2,
        action_dim=2,
        episode_lengths=(10, 12),
    )
    index = np.arange(dataset.meta.total_frames)
    advantages = work / "advantages.parquet"
    pd.DataFrame(
        {
            "index": index,
            "episode_index": np.array(dataset.hf_dataset["episode_index"]),
            "advantage": np.sin(index),
        }
    ).to_parquet(advantages)
    run_ok(
        [
            str(BIN / "lerobot-train"),
            "--dataset.repo_id=local/actvantage_e2e",
            f"--dataset.root={dataset.root}",
            "--policy.type=actvantage",
            f"--policy.advantage_file={advantages}",
            *TINY_POLICY_FLAGS,
            *SMOKE_TRAIN_FLAGS,
            "--steps=4",
            f"--output_dir={work / 'train'}",
        ],
        cwd=work,
    )
    advantages.unlink()


@pytest.fixture(scope="module")
def checkpoint(build_once) -> Path:
    return build_once("actvantage_e2e", train) / "train" / "checkpoints" / "last" / "pretrained_model"


@pytest.mark.duration(10)
def test_training_writes_a_checkpoint_without_the_lookup_table(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["type"] == "actvantage"
    assert config["advantage_file"].endswith("advantages.parquet")
    with safe_open(checkpoint / "model.safetensors", "pt") as saved:
        keys = list(saved.keys())
    assert "model.encoder.indicator_embed.weight" in keys
    assert not [key for key in keys if "lookup" in key]


@pytest.mark.duration(9)
@pytest.mark.parametrize("guidance_scale", ["1.0", "2.0"])
def test_lerobot_eval_on_pusht(checkpoint, guidance_scale, tmp_path):
    run_ok(
        [
            str(BIN / "lerobot-eval"),
            f"--policy.path={checkpoint}",
            "--env.type=pusht",
            "--env.observation_height=96",
            "--env.observation_width=96",
            "--env.episode_length=10",
            "--eval.n_episodes=1",
            "--eval.batch_size=1",
            "--policy.device=cpu",
            f"--policy.guidance_scale={guidance_scale}",
            f"--output_dir={tmp_path / 'eval'}",
        ],
        cwd=tmp_path,
    )
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 1
