"""End to end as a user would: lerobot-train, from_pretrained, lerobot-eval in gym-pusht."""

from __future__ import annotations

import pytest
import torch

from lerobot_policy_rewact import RewACTPolicy

from local_datasets import make_local_dataset
from subprocess_helpers import BIN, SMOKE_TRAIN_FLAGS, TINY_POLICY_FLAGS, run_ok


@pytest.fixture(scope="module")
def pusht_schema_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "pusht"
    make_local_dataset(
        root,
        repo_id="local/pusht_schema",
        image_size=(96, 96),
        state_dim=2,
        action_dim=2,
        episode_lengths=(10, 12),
        with_next_fields=True,
    )
    return root


@pytest.mark.duration(19)
def test_lerobot_train_then_reload_then_eval(pusht_schema_dataset, tmp_path):
    output = tmp_path / "train"
    run_ok(
        [
            str(BIN / "lerobot-train"),
            "--dataset.repo_id=local/pusht_schema",
            f"--dataset.root={pusht_schema_dataset}",
            "--policy.type=rewact",
            *TINY_POLICY_FLAGS,
            *SMOKE_TRAIN_FLAGS,
            "--steps=4",
            "--save_freq=4",
            f"--output_dir={output}",
            "--job_name=e2e",
            "--wandb.enable=false",
        ],
        cwd=tmp_path,
    )
    checkpoint = output / "checkpoints" / "last" / "pretrained_model"
    assert (checkpoint / "model.safetensors").is_file()

    policy = RewACTPolicy.from_pretrained(checkpoint)
    assert policy.config.type == "rewact"
    observation = {
        "observation.image": torch.rand(2, 3, 96, 96),
        "observation.state": torch.randn(2, 2),
    }
    assert policy.predict_value(observation).shape == (2,)

    eval_dir = tmp_path / "eval"
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
            f"--output_dir={eval_dir}",
        ],
        cwd=tmp_path,
    )
    assert list(eval_dir.rglob("eval_info.json"))
