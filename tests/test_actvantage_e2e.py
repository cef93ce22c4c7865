"""Stock `lerobot-train --policy.type=actvantage --policy.advantage_file=...`, then `lerobot-eval` on PushT.

The evaluation runs after the advantage file is deleted: inference needs no advantages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from local_datasets import make_local_dataset

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, (
        f"{' '.join(command)}\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    )
    return completed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 4-step training run on a PushT-shaped dataset with an advantages parquet."""
    work = tmp_path_factory.mktemp("actvantage_e2e")
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
    run(
        [
            str(BIN / "lerobot-train"),
            "--dataset.repo_id=local/actvantage_e2e",
            f"--dataset.root={dataset.root}",
            "--policy.type=actvantage",
            f"--policy.advantage_file={advantages}",
            "--policy.dim_model=32",
            "--policy.dim_feedforward=64",
            "--policy.n_encoder_layers=1",
            "--policy.chunk_size=4",
            "--policy.n_action_steps=4",
            "--policy.pretrained_backbone_weights=null",
            "--policy.push_to_hub=false",
            "--policy.device=cpu",
            "--num_workers=0",
            "--batch_size=4",
            "--steps=4",
            "--eval_freq=0",
            f"--output_dir={work / 'train'}",
        ],
        cwd=work,
    )
    advantages.unlink()
    return work / "train" / "checkpoints" / "last" / "pretrained_model"


def test_training_writes_a_checkpoint_without_the_lookup_table(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["type"] == "actvantage"
    assert config["advantage_file"].endswith("advantages.parquet")
    with safe_open(checkpoint / "model.safetensors", "pt") as saved:
        keys = list(saved.keys())
    assert "model.encoder.indicator_embed.weight" in keys
    assert not [key for key in keys if "lookup" in key]


@pytest.mark.parametrize("guidance_scale", ["1.0", "2.0"])
def test_lerobot_eval_on_pusht(checkpoint, guidance_scale, tmp_path):
    run(
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
