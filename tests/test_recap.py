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
from rewact_tools import load_episode_outcomes
from rewact_tools.pusht import GenerationConfig, generate_pusht_dataset
from rewact_tools.takeovers import pre_takeover_index

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
        "--finetune-steps",
        "3",
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


@pytest.mark.duration(125)
def test_two_recap_rounds(demonstrations, tmp_path):
    """Round 0 (the default successes recipe) trains on the demonstrations, its value pass split over
    two processes (gloo on CPU), and creates the rollout dataset; round 1 (the takeover recipe)
    fine-tunes round 0's policy on both, corrections forced positive and the stall before each
    takeover negative, and appends its rollouts; round 2 (pi*0.6's recipe) thresholds each dataset
    apart and fine-tunes round 0's policy again at its own learning rate; every artefact loads as
    LeRobot's."""
    args = recap_args(demonstrations, tmp_path)
    options, train_flags = args[: -len(TRAIN_FLAGS)], args[-len(TRAIN_FLAGS) :]
    first = run_script("recap.py", *options, "--value-pass-processes", "2", *train_flags).check()
    assert "$ " in first.stdout and "round 0 done" in first.stdout
    round0 = json.loads((tmp_path / "recap" / "round_0" / "round.json").read_text())
    assert [d["repo_id"] for d in round0["datasets"]] == ["local/pusht"] and len(round0["commands"]) == 5
    assert round0["policy_start"] is None and "--policy.type=actvantage" in " ".join(round0["commands"][-2])
    assert round0["recipe"] == {
        "name": "successes",
        "positive_fraction": 0.5,
        "credit": "segment",
        "pre_takeover_window": 0,  # no rollouts yet: no stall patience recorded
        "negative_weight": 0.25,
        "n_step": None,
        "n_step_seconds": 1.0,
        "rollouts_positive_fraction": None,
        "successes_positive": True,
        "guidance_scale": 1.5,
        "guidance_reference": "negative",
    }
    (precompute,) = [" ".join(c) for c in round0["commands"] if "precompute_advantage.py" in " ".join(c)]
    assert "torch.distributed.run --standalone --nproc_per_node=2" in precompute
    assert precompute.endswith("--n-step-seconds 1.0 --successes-positive")
    # The three clean successes are positive throughout, on top of the 50 % the advantage marks.
    advantages0 = pd.read_parquet(tmp_path / "recap" / "round_0" / "advantages_demonstrations.parquet")
    outcomes = load_episode_outcomes(LeRobotDataset("local/pusht", root=demonstrations))
    successes = advantages0["episode_index"].map(outcomes).astype(bool)
    assert successes.sum() > 0 and advantages0.loc[successes, "positive"].all()
    assert advantages0["positive"].mean() >= 0.5
    # The demonstrations hold successes and a failure: the success call is calibrated on them.
    assert round0["success_threshold_calibrated_on"] == str(demonstrations)
    value_model0 = (
        tmp_path / "recap" / "round_0" / "value_model" / "checkpoints" / "last" / "pretrained_model"
    )
    assert "success_threshold" in json.loads((value_model0 / "config.json").read_text())
    rollouts = LeRobotDataset("local/rollouts", root=tmp_path / "rollouts")
    assert rollouts.meta.total_episodes == 2 and rollouts.meta.features["intervention"]["dtype"] == "bool"
    # The recipe's guidance is saved with the policy, so its rollouts were collected with it.
    policy0 = ACTvantagePolicy.from_pretrained(
        tmp_path / "recap" / "round_0" / "policy" / "checkpoints" / "last" / "pretrained_model"
    )
    assert (policy0.config.guidance_scale, policy0.config.guidance_reference) == (1.5, "negative")

    second = run_script("recap.py", *options, "--recipe", "takeover", *train_flags).check()
    folder = tmp_path / "recap" / "round_1"
    round1 = json.loads((folder / "round.json").read_text())
    # The takeover recipe; the window is the stall patience the collector recorded (--correct-stall 2).
    assert round1["recipe"] == {
        "name": "takeover",
        "positive_fraction": 0.5,
        "credit": "segment",
        "pre_takeover_window": 2,
        "negative_weight": 0.25,
        "n_step": None,
        "n_step_seconds": None,
        "rollouts_positive_fraction": None,
        "successes_positive": False,
        "guidance_scale": 1.0,
        "guidance_reference": "null",
    }
    commands = [" ".join(command) for command in round1["commands"]]
    assert "--reward pistar --max-length" in commands[0] and "--credit segment" in commands[0]
    # Ten-step rollouts never succeed, so there is nothing to calibrate the call on; it says so.
    assert (
        round1["success_threshold_calibrated_on"] is None
        and "the collector uses the default" in second.stdout
    )
    # Takeover credit reaches the rollouts' advantages only: demonstrations have no takeovers.
    precomputes = [command for command in commands if "precompute_advantage.py" in command]
    credit = "--credit segment --pre-takeover-window 2"
    assert [credit in command for command in precomputes] == [False, True, False, True]
    # The pooled pass relabels each file with its first pass's values: no second model pass.
    assert not any("--values-from" in command for command in precomputes[:2])
    for command in precomputes[2:]:
        assert f"--values-from {command.split('--output ')[1].split()[0]}" in command
    assert [d["repo_id"] for d in round1["datasets"]] == ["local/pusht", "local/rollouts"]
    assert isinstance(
        RewACTPolicy.from_pretrained(folder / "value_model" / "checkpoints" / "last" / "pretrained_model"),
        RewACTPolicy,
    )
    policy_path = folder / "policy" / "checkpoints" / "last" / "pretrained_model"
    policy = ACTvantagePolicy.from_pretrained(policy_path)
    assert policy.config.negative_weight == 0.25
    # Fine-tuned from round 0's guided policy, it takes the takeover recipe's guidance (beta 1).
    assert (policy.config.guidance_scale, policy.config.guidance_reference) == (1.0, "null")
    # By default a later round fine-tunes the previous round's policy for --finetune-steps.
    round0_policy = tmp_path / "recap" / "round_0" / "policy" / "checkpoints" / "last" / "pretrained_model"
    assert round1["policy_start"] == str(round0_policy)
    (policy_training,) = [c for c in commands if "--job_name=actvantage" in c]
    assert f"--policy.path={round0_policy}" in policy_training and "--policy.type" not in policy_training
    train_config = json.loads((policy_path / "train_config.json").read_text())
    assert train_config["policy"]["pretrained_path"] == str(round0_policy) and train_config["steps"] == 3
    rollouts = LeRobotDataset("local/rollouts", root=tmp_path / "rollouts")
    assert rollouts.meta.total_episodes == 4
    # Round 1's advantages cover round 0's rollouts: corrections are all positive, the two policy
    # frames before each takeover negative.
    advantages = pd.read_parquet(folder / "advantages_rollouts.parquet")
    frames = pd.DataFrame(
        {
            "index": np.asarray(rollouts.hf_dataset["index"]),
            "episode_index": np.asarray(rollouts.hf_dataset["episode_index"]),
            "frame_index": np.asarray(rollouts.hf_dataset["frame_index"]),
            "task_index": np.asarray(rollouts.hf_dataset["task_index"]),
            "intervention": np.asarray(rollouts.hf_dataset["intervention"]).reshape(-1).astype(bool),
        }
    )
    table = advantages.merge(frames[["index", "intervention"]], on="index", validate="one_to_one")
    first_round = table["episode_index"] < 2
    assert len(table[first_round]) == len(advantages) and table["intervention"].any()
    window = pre_takeover_index(frames, frames.loc[frames["intervention"], "index"], 2)
    in_window = table["index"].isin(window)
    assert in_window.any() and not table.loc[in_window, "positive"].any()
    # One threshold over demonstrations and rollouts together: the positive fraction (0.5) holds for
    # all their frames, not for each dataset; corrections are positive and the window negative on top.
    threshold = round1["advantage_threshold"]
    demonstrations_table = pd.read_parquet(folder / "advantages_demonstrations.parquet")
    assert (demonstrations_table["positive"] == (demonstrations_table["advantage"] > threshold)).all()
    expected = ((table["advantage"] > threshold) & ~in_window) | table["intervention"]
    assert (table["positive"] == expected).all()
    pooled = pd.concat([demonstrations_table["advantage"], table["advantage"]])
    assert (pooled > threshold).mean() == pytest.approx(0.5, abs=0.05)
    assert len(round1["commands"]) == 7 and round0["advantage_threshold"] is None

    # pi*0.6's recipe with rollouts: each dataset its own threshold, 30 % and 40 % positive.
    pistar_start = ["--finetune-from", "round0", "--finetune-lr", "3e-4"]
    run_script("recap.py", *options, "--recipe", "pistar", *pistar_start, *train_flags).check()
    folder = tmp_path / "recap" / "round_2"
    round2 = json.loads((folder / "round.json").read_text())
    assert round2["policy_start"] == str(round0_policy)
    train_config = json.loads(
        (folder / "policy" / "checkpoints" / "last" / "pretrained_model" / "train_config.json").read_text()
    )
    assert train_config["policy"]["pretrained_path"] == str(round0_policy)
    assert train_config["policy"]["optimizer_lr"] == 3e-4
    assert round2["recipe"] == {
        "name": "pistar",
        "positive_fraction": 0.3,
        "credit": "episode",
        "pre_takeover_window": 0,
        "negative_weight": 1.0,
        "n_step": None,
        "n_step_seconds": 1.0,
        "rollouts_positive_fraction": 0.4,
        "successes_positive": False,
        "guidance_scale": 1.0,
        "guidance_reference": "null",
    }
    calibration = round2["success_threshold_calibrated_on"] is not None
    assert (
        round2["advantage_threshold"] is None and len(round2["commands"]) == 5 + calibration
    )  # no pooled pass
    precomputes = [" ".join(c) for c in round2["commands"] if "precompute_advantage.py" in " ".join(c)]
    assert ["--positive-fraction 0.3" in c for c in precomputes] == [True, False]
    assert ["--positive-fraction 0.4" in c for c in precomputes] == [False, True]
    demonstrations_table = pd.read_parquet(folder / "advantages_demonstrations.parquet")
    assert demonstrations_table["positive"].mean() == pytest.approx(0.3, abs=0.05)
    rollouts_table = pd.read_parquet(folder / "advantages_rollouts.parquet")
    assert rollouts_table["positive"].mean() >= 0.35  # 40 % by advantage, corrections on top

    # A round that stopped half-way must be cleared before it runs again.
    (tmp_path / "recap" / "round_3").mkdir()
    run_script("recap.py", *args).check_user_error("round_3 is an unfinished round")


def test_a_round_without_the_policy_to_fine_tune_fails_before_training(demonstrations, tmp_path):
    round0 = tmp_path / "recap" / "round_0"
    round0.mkdir(parents=True)
    (round0 / "round.json").write_text("{}")
    run_script("recap.py", *recap_args(demonstrations, tmp_path)).check_user_error(
        f"--finetune-from previous: policy path {round0 / 'policy'} does not exist"
    )


def test_a_fine_tuning_learning_rate_without_fine_tuning_is_refused(demonstrations, tmp_path):
    args = recap_args(demonstrations, tmp_path)
    run_script("recap.py", "--finetune-from", "scratch", "--finetune-lr", "1e-4", *args).check_user_error(
        "--finetune-lr", "--finetune-from scratch"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--guidance-scale", "-1"], "guidance_scale must be a finite number >= 0, got -1.0"),
        (
            ["--guidance-reference", "zero"],
            "guidance_reference must be one of 'null', 'negative'; got 'zero'",
        ),
    ],
)
def test_an_invalid_guidance_is_refused_before_training(demonstrations, tmp_path, flags, message):
    args = recap_args(demonstrations, tmp_path)
    run_script("recap.py", *flags, *args).check_user_error(message)
    assert not (tmp_path / "recap").exists()


@pytest.mark.parametrize(
    ("flags", "advice"),
    [(["--policy.guidance_scale=2"], "--guidance-scale"), (["--steps", "5"], "--policy-steps")],
)
def test_a_training_flag_recap_sets_itself_is_refused(demonstrations, tmp_path, flags, advice):
    """recap.py's own value comes later on the training command line and would override the user's."""
    name = flags[0].split("=")[0]
    run_script("recap.py", *recap_args(demonstrations, tmp_path), *flags).check_user_error(
        f"{name} after `--` is set by recap.py", advice
    )
    assert not (tmp_path / "recap").exists()
