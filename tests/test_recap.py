"""scripts/recap.py: two RECAP rounds end to end on tiny models, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_actvantage import ACTvantagePolicy
from lerobot_policy_rewact import RewACTPolicy
from rewact_tools.pusht import GenerationConfig, generate_pusht_dataset

from subprocess_helpers import TINY_POLICY_FLAGS, run_script

TRAIN_FLAGS = ["--", *TINY_POLICY_FLAGS, "--num_workers=0", "--batch_size=4", "--log_freq=1"]


@pytest.fixture(scope="module")
def demonstrations(tmp_path_factory) -> Path:
    """Built-in PushT keypoint demonstrations: three clean successes and one failure."""
    root = tmp_path_factory.mktemp("recap") / "pusht"
    generate_pusht_dataset(root, GenerationConfig({"clean": 3, "giveup": 1}, max_steps=120), with_image=False)
    return root


def recap_args(demonstrations: Path, work: Path) -> list:
    return [
        "--dataset-repo-id",
        "local/pusht",
        "--dataset-root",
        demonstrations,
        "--rollouts-root",
        work / "rollouts",
        "--work-dir",
        work / "recap",
        "--value-steps",
        "2",
        "--policy-steps",
        "2",
        "--episodes",
        "2",
        "--env-batch",
        "2",
        "--max-steps",
        "10",
        "--obs-type",
        "environment_state_agent_pos",
        "--correct-stall",
        "2",
        "--correct-steps",
        "3",
        *TRAIN_FLAGS,
    ]


def test_two_recap_rounds(demonstrations, tmp_path):
    """Round 0 trains on the demonstrations and creates the rollout dataset; round 1 trains on both,
    corrections forced positive, and appends its rollouts; every artefact loads as LeRobot's."""
    args = recap_args(demonstrations, tmp_path)
    first = run_script("recap.py", *args).check()
    assert "$ " in first.stdout and "round 0 done" in first.stdout
    round0 = json.loads((tmp_path / "recap" / "round_0" / "round.json").read_text())
    assert [d["repo_id"] for d in round0["datasets"]] == ["local/pusht"] and len(round0["commands"]) == 4
    rollouts = LeRobotDataset("local/rollouts", root=tmp_path / "rollouts")
    assert rollouts.meta.total_episodes == 2 and rollouts.meta.features["intervention"]["dtype"] == "bool"

    credit = ["--credit", "segment", "--pre-takeover-window", "2"]
    run_script("recap.py", *args[: -len(TRAIN_FLAGS)], *credit, *TRAIN_FLAGS).check()
    folder = tmp_path / "recap" / "round_1"
    round1 = json.loads((folder / "round.json").read_text())
    # Takeover credit reaches the rollouts' advantages only: demonstrations have no takeovers.
    precomputes = [
        command for command in round1["commands"] if command[1].endswith("precompute_advantage.py")
    ]
    assert [credit[0] in command for command in precomputes] == [False, True, False, True]
    assert all(" ".join(credit) in " ".join(command) for command in precomputes if credit[0] in command)
    assert [d["repo_id"] for d in round1["datasets"]] == ["local/pusht", "local/rollouts"]
    assert isinstance(
        RewACTPolicy.from_pretrained(folder / "value_model" / "checkpoints" / "last" / "pretrained_model"),
        RewACTPolicy,
    )
    assert isinstance(
        ACTvantagePolicy.from_pretrained(folder / "policy" / "checkpoints" / "last" / "pretrained_model"),
        ACTvantagePolicy,
    )
    rollouts = LeRobotDataset("local/rollouts", root=tmp_path / "rollouts")
    assert rollouts.meta.total_episodes == 4
    # Round 1's advantages cover round 0's rollouts, whose corrections are all positive.
    advantages = pd.read_parquet(folder / "advantages_rollouts.parquet")
    intervention = pd.DataFrame(
        {
            "index": np.asarray(rollouts.hf_dataset["index"]),
            "intervention": np.asarray(rollouts.hf_dataset["intervention"]).reshape(-1).astype(bool),
        }
    )
    table = advantages.merge(intervention, on="index", validate="one_to_one")
    first_round = table["episode_index"] < 2
    assert len(table[first_round]) == len(advantages) and table["intervention"].any()
    assert table.loc[table["intervention"], "positive"].all()
    # One threshold over demonstrations and rollouts together: the positive fraction (0.3) holds for
    # all their frames, not for each dataset, and corrections are positive on top of it.
    threshold = round1["advantage_threshold"]
    demonstrations_table = pd.read_parquet(folder / "advantages_demonstrations.parquet")
    assert (demonstrations_table["positive"] == (demonstrations_table["advantage"] > threshold)).all()
    assert (table["positive"] == ((table["advantage"] > threshold) | table["intervention"])).all()
    pooled = pd.concat([demonstrations_table["advantage"], table["advantage"]])
    assert (pooled > threshold).mean() == pytest.approx(0.3, abs=0.05)
    assert len(round1["commands"]) == 7 and round0["advantage_threshold"] is None

    # A round that stopped half-way must be cleared before it runs again.
    (tmp_path / "recap" / "round_2").mkdir()
    run_script("recap.py", *args).check_user_error("round_2 is an unfinished round")
