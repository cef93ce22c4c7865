"""Checkpoints cross LeRobot versions: written by stock `lerobot-train` under one platform, loaded
with their saved processors and run under the other, giving the same predictions.

Always, a RewACT and an ACTvantage checkpoint are trained here and their predictions on fixed inputs
recorded. With `REWACT_CHECKPOINT_EXCHANGE=DIR` (set by `.ci/run`, whose LeRobot 0.6.1 and 0.4.4
legs share DIR), they are also left in `DIR/lerobot-<version>/`, and every checkpoint another LeRobot
version left there must load here and reproduce the predictions recorded when it was written.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.policies.factory import get_policy_class

from rewact_tools.processors import make_pre_post_processors

from local_datasets import make_local_dataset
from subprocess_helpers import last_checkpoint, train_tiny

EXCHANGE = os.environ.get("REWACT_CHECKPOINT_EXCHANGE")
LEROBOT_VERSION = importlib.metadata.version("lerobot")
POLICY_TYPES = ("rewact", "actvantage")
PREDICTIONS_FILE = "predictions.json"


def fixed_observation() -> dict[str, torch.Tensor]:
    """Raw (unnormalised) observations, the same under every version."""
    generator = torch.Generator().manual_seed(7)
    return {
        "observation.image": torch.rand(3, 3, 32, 32, generator=generator),
        "observation.state": torch.rand(3, 2, generator=generator),
    }


def predictions(checkpoint: Path) -> dict[str, list]:
    """Load a checkpoint as a user would (policy and its saved processors) and predict."""
    policy_type = json.loads((checkpoint / "config.json").read_text())["type"]
    policy = get_policy_class(policy_type).from_pretrained(checkpoint)
    preprocessor, postprocessor = make_pre_post_processors(policy.config, pretrained_path=checkpoint)
    batch = preprocessor(fixed_observation())
    observation = {key: value for key, value in batch.items() if key.startswith("observation.")}
    chunk = policy.predict_action_chunk(observation)
    result = {"first_action": postprocessor(chunk[:, 0]).tolist()}
    if policy_type == "rewact":
        result["value"] = policy.predict_value(observation).tolist()
    return result


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """One checkpoint per policy type, trained by stock lerobot-train on this LeRobot."""
    work = tmp_path_factory.mktemp("exchange")
    dataset = make_local_dataset(work / "data", repo_id="local/exchange", episode_lengths=(10, 12))
    advantages = work / "advantages.parquet"
    pd.DataFrame(
        {
            "index": np.arange(dataset.meta.total_frames),
            "episode_index": np.array(dataset.hf_dataset["episode_index"]),
            "advantage": np.sin(np.arange(dataset.meta.total_frames)),
        }
    ).to_parquet(advantages)
    extra = {"rewact": [], "actvantage": [f"--policy.advantage_file={advantages}"]}
    checkpoints = {}
    for policy_type in POLICY_TYPES:
        train_tiny(
            dataset.root, "local/exchange", work / policy_type, *extra[policy_type], model_type=policy_type
        )
        checkpoints[policy_type] = last_checkpoint(work / policy_type)
    return checkpoints


@pytest.mark.duration(19)
def test_checkpoints_written_here_predict_and_are_handed_on(written):
    for policy_type, checkpoint in written.items():
        result = predictions(checkpoint)
        assert np.isfinite(result["first_action"]).all() and len(result["first_action"]) == 3
        if policy_type == "rewact":
            assert all(0 <= value <= 1 for value in result["value"])
        if EXCHANGE:
            target = Path(EXCHANGE) / f"lerobot-{LEROBOT_VERSION}" / policy_type
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(checkpoint, target)
            (target / PREDICTIONS_FILE).write_text(json.dumps(result))


def _foreign_checkpoints() -> list[Path]:
    if not EXCHANGE:
        return []
    return sorted(
        path.parent
        for path in Path(EXCHANGE).glob(f"lerobot-*/*/{PREDICTIONS_FILE}")
        if path.parent.parent.name != f"lerobot-{LEROBOT_VERSION}"
    )


@pytest.mark.skipif(
    not _foreign_checkpoints(),
    reason="no checkpoint of another LeRobot version in REWACT_CHECKPOINT_EXCHANGE (.ci/run sets it)",
)
@pytest.mark.parametrize(
    "checkpoint", _foreign_checkpoints(), ids=lambda path: f"{path.parent.name}-{path.name}"
)
def test_checkpoints_of_another_lerobot_version_reproduce_their_predictions(checkpoint):
    recorded = json.loads((checkpoint / PREDICTIONS_FILE).read_text())
    result = predictions(checkpoint)
    assert set(result) == set(recorded)
    for key, values in recorded.items():
        np.testing.assert_allclose(result[key], values, atol=1e-5, err_msg=f"{checkpoint}: {key}")
