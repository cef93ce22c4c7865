"""The benchmarks' quick modes run end to end and write the JSON they promise; their shared data
pieces agree with LeRobot (action chunks and padding as `delta_timestamps` give them)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from rewact_tools.lerobot_compat import HAS_SAMPLE_WEIGHTING

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402

from subprocess_helpers import SUBPROCESS_ENV, Run, run_in_process  # noqa: E402

QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS = "clean=2,giveup=2", 0, 40  # the benchmarks' --quick data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data folder holding the quick dataset, generated once and reused by every quick run."""
    folder = tmp_path_factory.mktemp("bench_data")
    common.pusht_dataset(QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS, folder)
    return folder


def run_benchmark(script: str, *args: str) -> Run:
    """A benchmark in this test process (`subprocess_helpers.run_in_process`); it must exit 0."""
    run = run_in_process(BENCHMARKS / script, list(args))
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def run_quick_benchmark(script: str, *args: str) -> Run:
    return run_benchmark(script, "--quick", *args)


def test_dataset_is_cached_by_name(data_dir):
    name = common.dataset_name(QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS)
    assert name == "pusht_clean2_giveup2_seed0_steps40_hand40"
    assert common.dataset_name(QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS, 0.0, with_image=False) == (
        "pusht_clean2_giveup2_seed0_steps40_hand0_noimage"
    )
    dataset = common.pusht_dataset(QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS, data_dir)
    assert Path(dataset.root) == data_dir / name
    assert dataset.meta.total_episodes == 4
    assert sorted(common.episode_settings(dataset).values()) == ["clean", "clean", "giveup", "giveup"]


def test_interrupted_dataset_folder_raises(tmp_path):
    (tmp_path / common.dataset_name(QUICK_MIX, 1, 5)).mkdir()
    with pytest.raises(FileExistsError, match="interrupted"):
        common.pusht_dataset(QUICK_MIX, 1, 5, tmp_path)


# A SpawnPool run whose two workers record their pid and scratch folder, then wait for ever.
POOL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {benchmarks!r})
    import common

    def record(folder, scratch):
        (Path(folder) / str(os.getpid())).write_text(str(scratch))

    def wait():
        time.sleep(3600)

    if __name__ == "__main__":
        with common.SpawnPool(2, record, (sys.argv[1],)) as pool:
            pool.submit(0, wait)
            pool.submit(1, wait)
            pool.next_result()
    """
)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped has finished)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_spawn_pool_workers_end_with_a_killed_run(tmp_path, signum):
    """Killing a benchmark must free the cores: its pool's workers do not compute on for nobody."""
    script, folder = tmp_path / "pool.py", tmp_path / "workers"
    script.write_text(POOL_SCRIPT.format(benchmarks=str(BENCHMARKS)))
    folder.mkdir()
    run = subprocess.Popen([sys.executable, str(script), str(folder)], env=SUBPROCESS_ENV)
    try:
        assert _wait_until(lambda: len(list(folder.iterdir())) == 2, 300), "the workers did not start"
        workers = [int(path.name) for path in folder.iterdir()]
        scratch = Path((folder / str(workers[0])).read_text())
        assert all(_alive(pid) for pid in workers) and scratch.is_dir()
        run.send_signal(signum)
        assert run.wait(60) == (128 + signum if signum == signal.SIGTERM else -signum)
        assert _wait_until(lambda: not any(_alive(pid) for pid in workers), 30), "workers outlived the run"
        if signum == signal.SIGTERM:
            assert not scratch.exists()
    finally:
        run.kill()
        for path in folder.iterdir():
            if _alive(int(path.name)):
                os.kill(int(path.name), signal.SIGKILL)


def test_held_out_split_is_stratified_by_outcome():
    outcomes = {episode: episode % 3 != 0 for episode in range(12)}  # failures: 0, 3, 6, 9
    train, held_out = common.held_out_split(outcomes, 2)
    assert held_out == [2, 3, 5, 8, 9, 11]  # every 2nd success (1,2,4,5,7,8,10,11) and failure
    assert sorted(train + held_out) == list(range(12))
    with pytest.raises(ValueError, match="every >= 2"):
        common.held_out_split(outcomes, 1)
    with pytest.raises(ValueError, match="leaves none held out"):
        common.held_out_split({0: True, 1: False}, 5)


def test_frame_batches_match_lerobot_chunks(data_dir):
    dataset = common.pusht_dataset(QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS, data_dir)
    chunk = 6
    chunked = LeRobotDataset(
        dataset.repo_id,
        root=dataset.root,
        delta_timestamps={"action": [i / dataset.meta.fps for i in range(chunk)]},
    )
    frames = common.load_frames(dataset, ["observation.state", "observation.image"])
    # First, middle and last frames of episodes, where padding starts.
    rows = torch.tensor([0, 17, 36, 39, 40, len(frames) - 2, len(frames) - 1])
    batch = frames.batch(rows, chunk, extras={"reward": torch.arange(len(frames), dtype=torch.float32)})
    for position, row in enumerate(rows.tolist()):
        item = chunked[int(frames.index[row])]
        torch.testing.assert_close(batch["action"][position], item["action"])
        assert torch.equal(batch["action_is_pad"][position], item["action_is_pad"])
        torch.testing.assert_close(batch["observation.state"][position], item["observation.state"])
        torch.testing.assert_close(batch["observation.image"][position], item["observation.image"])
        assert int(batch["episode_index"][position]) == int(item["episode_index"])
        assert float(batch["reward"][position]) == row
    assert batch["action_is_pad"][-1, 1:].all() and not batch["action_is_pad"][-1, 0]


def test_extra_by_index_needs_every_frame(data_dir):
    frames = common.load_frames(common.pusht_dataset(QUICK_MIX, QUICK_SEED, QUICK_MAX_STEPS, data_dir), [])
    index = frames.index.numpy()
    reordered = frames.extra_by_index(index[::-1], index[::-1] * 2.0)
    assert torch.equal(reordered, frames.index * 2.0)
    with pytest.raises(KeyError, match="No value given for dataset index"):
        frames.extra_by_index(index[1:], index[1:])


def test_reward_model_quick(data_dir, tmp_path):
    output = tmp_path / "reward_model.json"
    run_quick_benchmark("bench_reward_model.py", "--data-dir", str(data_dir), "--output", str(output))
    results = json.loads(output.read_text())
    assert results["quick"] and results["threads"] == 1 and results["labels"] == "success_progress"
    assert set(results["state"]["arms"]) == {"one_hot", "two_hot", "hl_gauss", "upstream_style"}
    assert results["state"]["arms"]["upstream_style"]["config"] == {
        "value_target": "one_hot",
        "num_value_bins": 100,
        "reward_loss_weight": 0.1,
    }
    assert results["state"]["arms"]["hl_gauss"]["config"]["reward_loss_weight"] == 1.0
    for arm in results["state"]["arms"].values():
        assert arm["steps"] == results["state"]["steps"]
        assert 0.0 <= arm["metrics"]["mae"] <= 1.0
    assert set(results["image"]["arms"]) == {"frozen_bn", "batch_norm", "group_norm"}
    for arm in results["image"]["arms"].values():
        assert set(arm["seeds"]) == {"0"} and arm["summary"]["seeds"] == 1
        for run in arm["seeds"].values():
            steps = [point["step"] for point in run["curve"]]
            assert steps == sorted(set(steps)) and steps[-1] == run["steps"]
            assert run["final"] == run["curve"][-1]
    assert output.with_suffix(".png").stat().st_size > 0


def test_reward_model_image_runs_resume(data_dir, tmp_path):
    """A second call with --resume keeps the runs the file holds and adds the new ones only."""
    output = tmp_path / "image.json"
    common_args = ("--data-dir", str(data_dir), "--output", str(output), "--parts", "image")
    run_quick_benchmark("bench_reward_model.py", *common_args, "--image-arms", "group_norm")
    first = json.loads(output.read_text())["image"]["arms"]["group_norm"]["seeds"]["0"]
    arms = "group_norm,timm:resnet10t"
    run_quick_benchmark("bench_reward_model.py", *common_args, "--image-arms", arms, "--resume")
    results = json.loads(output.read_text())["image"]["arms"]
    assert results["group_norm"]["seeds"] == {"0": first}
    assert set(results["timm:resnet10t"]["seeds"]) == {"0"}
    assert results["timm:resnet10t"]["config"] == {
        "vision_encoder_type": "timm",
        "vision_backbone": "resnet10t",
    }


@pytest.mark.duration(22)
def test_actvantage_vs_act_quick(tmp_path):
    """Every arm trains on the same data and is evaluated on the same episodes at each checkpoint; the
    value model is chosen on validation episodes and scored on test ones; two seeds run apart (the
    first by a pool of two workers) merge."""
    data = str(tmp_path / "data")
    arms = "oracle,filtered_bc,act_all,actvantage,actvantage_true" + (",rabc" if HAS_SAMPLE_WEIGHTING else "")
    outputs = [tmp_path / f"seed{seed}.json" for seed in (0, 1)]
    for seed, output in enumerate(outputs):
        run_quick_benchmark(
            "bench_actvantage_vs_act.py",
            "--data-dir",
            data,
            "--arms",
            arms,
            "--seeds",
            str(seed),
            "--workers",
            str(2 - seed),
            "--negative-weight",
            "0.5",
            "--successes-positive",
            "--guidance-reference",
            "negative",
            "--output",
            str(output),
        )
    results = json.loads(outputs[0].read_text())
    assert results["advantage"]["negative_weight"] == 0.5 and results["advantage"]["successes_positive"]
    assert results["guidance_reference"] == "negative"
    assert results["complete"] and results["seeds"] == [0] and results["threads"] == 1
    assert results["workers"] == 2 and json.loads(outputs[1].read_text())["workers"] == 1
    # In --arms order, whichever job finished first.
    assert list(results["per_seed"]["0"]) == ["oracle", "filtered_bc", "act_all"] + [
        f"{arm}_beta{beta}" for arm in ("actvantage", "actvantage_true") for beta in ("1", "1.5", "2")
    ] + (["rabc"] if HAS_SAMPLE_WEIGHTING else [])
    expected = {"oracle", "filtered_bc", "act_all"} | {
        f"{arm}_beta{beta}" for arm in ("actvantage", "actvantage_true") for beta in ("1", "1.5", "2")
    }
    assert set(results["summary"]) == expected | ({"rabc"} if HAS_SAMPLE_WEIGHTING else set())
    arms_of_seed = results["per_seed"]["0"]
    for label, arm in arms_of_seed.items():
        # Guided variants are evaluated at the last checkpoint only; beta 1 gives the learning curve.
        steps = [4] if label.endswith(("_beta1.5", "_beta2")) else [2, 4]
        assert [point["step"] for point in arm["curve"]] == steps and arm["final"] == arm["curve"][-1]
        assert arm["final"]["episodes"] == 2 and len(arm["final"]["max_coverages"]) == 2
        assert all(1 <= steps <= 10 for steps in arm["final"]["steps"])
    assert arms_of_seed["oracle"]["train_frames"] < arms_of_seed["act_all"]["train_frames"]
    # Filtered BC trains on the successful episodes, the oracle on the clean ones.
    assert 0 < arms_of_seed["filtered_bc"]["train_frames"] < arms_of_seed["act_all"]["train_frames"]
    assert set(results["summary"]["filtered_bc"]) >= {"successes_per_1000_steps", "steps_to_success"}
    # Every arm is also compared with filtered BC, paired episode by episode.
    versus = results["summary_vs_filtered_bc"]
    assert set(versus) == set(results["summary"])
    assert "minus_filtered_bc" in versus["actvantage_beta1"]["steps_to_success"]
    value = results["value_model"]
    assert value["chosen_step"] in [point["step"] for point in value["curve"]]
    assert value["episodes"]["test"] > 0 and value["episodes"]["validation"] > 0
    fractions = results["advantage"]["positive_fraction_by_setting_and_phase"]["actvantage"]
    assert set(fractions) == {"clean", "wronggoal"}
    assert set(fractions["clean"]) == {"1/5", "2/5", "3/5", "4/5", "5/5", "all"}
    overall = results["advantage"]["positive_fraction_by_setting"]["actvantage"]
    assert overall == {setting: row["all"] for setting, row in fractions.items()}
    # The second seed reused the cached value model, so both runs share it and merge.
    merged_path = tmp_path / "merged.json"
    run_benchmark("bench_actvantage_vs_act.py", "--merge", *map(str, outputs), "--output", str(merged_path))
    merged = json.loads(merged_path.read_text())
    assert merged["seeds"] == [0, 1] and merged["summary"]["act_all"]["seeds"] == 2
    assert merged["summary_vs_filtered_bc"]["act_all"]["success_rate"]["minus_filtered_bc"]["ci95"]
    assert merged["value_model"] == json.loads(outputs[1].read_text())["value_model"]
    assert merged_path.with_suffix(".png").stat().st_size > 0


class _StandStill:
    """A policy that commands the agent to stay where it is: it never moves the block."""

    def __init__(self):
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.act.configuration_act import ACTConfig

        self.resets = 0
        self.config = ACTConfig(
            input_features={
                "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
                "observation.environment_state": PolicyFeature(FeatureType.ENV, (16,)),
            },
            output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))},
        )

    def eval(self):
        return self

    def reset(self):
        self.resets += 1

    def select_action(self, batch):
        return batch["observation.state"]


def test_corrections_take_over_where_the_policy_stalls():
    """The corrector drives `duration` steps once coverage has not risen for `patience` steps, at most
    `max_takeovers` times; the policy's queue is cleared each time control comes back."""
    policy = _StandStill()
    rules = common.pusht_corrections(patience=5, duration=8, max_takeovers=2)
    identity = lambda x: x  # noqa: E731
    (corrected,) = common.roll_out_pusht(policy, identity, identity, [3], max_steps=60, corrections=rules)
    (plain,) = common.roll_out_pusht(policy, identity, identity, [3], max_steps=60)
    assert plain.steps == corrected.steps == 60 and not any(plain.intervention)
    assert sum(corrected.intervention) == 16 and corrected.intervention[:5] == [False] * 5
    runs = "".join("x" if flag else "." for flag in corrected.intervention).split(".")
    assert sorted(len(run) for run in runs if run) == [8, 8]
    assert policy.resets == 2 + 2  # one per episode, one per hand-back
    # The expert's actions move the agent; the standing policy's do not.
    taken = np.flatnonzero(corrected.intervention)
    moved = [np.linalg.norm(corrected.action[i] - corrected.state[i]) for i in taken]
    assert max(moved) > 1.0 and all(
        np.allclose(corrected.action[i], corrected.state[i])
        for i in range(60)
        if not corrected.intervention[i]
    )


@pytest.mark.duration(14)
def test_recap_quick(tmp_path):
    """Every arm runs round 0 and round 1 on its own data: what it collected in round 0 (with
    corrections) is in its round-1 data; filtered BC trains on successes and corrections only; the
    summary compares each round with filtered BC of that round, of round 0, and with the last round."""
    output = tmp_path / "recap.json"
    run_quick_benchmark(
        "bench_recap.py",
        *("--data-dir", str(tmp_path / "data"), "--output", str(output)),
        *("--negative-weight", "0.5", "--negative-weight-by", "loss", "--guided-beta", "1.5,2"),
        *("--guidance-reference", "negative", "--collect-beta", "1.5"),
    )
    results = json.loads(output.read_text())
    assert results["guided_betas"] == [1.5, 2.0] and results["guidance_reference"] == "negative"
    assert results["collect_beta"] == 1.5
    arms = [
        "act_all",
        "filtered_bc",
        "weighted_bc",
        *(["rabc"] if HAS_SAMPLE_WEIGHTING else []),
        "actvantage",
        "actvantage_pistar",
        "actvantage_outcome",
        "actvantage_or_outcome",
        "actvantage_and_outcome",
    ]
    assert results["complete"] and list(results["per_seed"]["0"]) == arms and results["threads"] == 1
    for arm, rounds in results["per_seed"]["0"].items():
        first, second = rounds
        assert [first["round"], second["round"]] == [0, 1] and "collected" not in second
        assert not first["fine_tuned"] and second["fine_tuned"] and second["steps"] == 2
        collected = first["collected"]
        assert collected["episodes"] == 2 and collected["intervention_frames"] > 0
        assert collected["guidance_scale"] == (1.5 if arm.startswith("actvantage") else None)
        assert second["episodes"] == first["episodes"] + 2
        assert second["frames"] == first["frames"] + collected["env_steps"]
        assert second["intervention_frames"] == collected["intervention_frames"]
        labels = [arm, f"{arm}_beta1.5", f"{arm}_beta2"] if arm.startswith("actvantage") else [arm]
        assert list(second["eval"]) == labels and second["eval"][arm]["episodes"] == 2
        if arm not in ("act_all", "filtered_bc", "weighted_bc", "actvantage_outcome"):
            # a value model chosen on validation
            value_model = second["value_model"]
            assert value_model["chosen_step"] in (2, 4) and "voc_mean" in value_model["test"]
    # The outcome arm's positives are exactly filtered BC's frames, with no value model.
    outcome, filtered_rounds = (
        results["per_seed"]["0"]["actvantage_outcome"],
        results["per_seed"]["0"]["filtered_bc"],
    )
    for labelled, filtered in zip(outcome, filtered_rounds, strict=True):
        assert "value_model" not in labelled and labelled["train_frames"] == labelled["frames"]
        assert labelled["positive_fraction"] == pytest.approx(
            filtered["train_frames"] / labelled["frames"], abs=1e-4
        )
    assert outcome[1]["positive_fraction_by_kind"]["correction"] == 1.0
    # Exact counts against filtered BC's frames: the outcome labels are those frames, no more.
    for labelled, filtered in zip(outcome, filtered_rounds, strict=True):
        assert sum(labelled["frames_by_kind"].values()) == labelled["frames"]
        assert labelled["filtered_bc_frames"] == filtered["train_frames"]
        assert (labelled["filtered_bc_frames_positive"], labelled["positives_beyond_filtered_bc"]) == (1.0, 0)
    combined = results["per_seed"]["0"]["actvantage_or_outcome"][1]
    assert combined["filtered_bc_frames_positive"] == 1.0
    assert combined["positives_beyond_filtered_bc"] == pytest.approx(
        combined["positive_fraction"] * combined["frames"] - combined["filtered_bc_frames"], abs=1
    )
    # Round 0's data and value model are the same in every arm: the combined arms' positives are
    # the advantage's or filtered BC's frames, and the frames both choose.
    first_rounds = {arm: rounds[0] for arm, rounds in results["per_seed"]["0"].items()}
    fraction = {arm: record.get("positive_fraction") for arm, record in first_rounds.items()}
    assert first_rounds["actvantage_or_outcome"]["value_model"] == first_rounds["actvantage"]["value_model"]
    assert fraction["actvantage_or_outcome"] >= max(fraction["actvantage"], fraction["actvantage_outcome"])
    assert fraction["actvantage_and_outcome"] <= min(fraction["actvantage"], fraction["actvantage_outcome"])
    assert fraction["actvantage_or_outcome"] + fraction["actvantage_and_outcome"] == pytest.approx(
        fraction["actvantage"] + fraction["actvantage_outcome"], abs=2e-4
    )
    # Corrections are forced positive; the record says which frames "positive" asks for.
    actvantage = results["per_seed"]["0"]["actvantage"][1]
    by_kind = actvantage["positive_fraction_by_kind"]
    assert by_kind["correction"] == 1.0 and "demonstration" in by_kind
    assert set(actvantage["positive_fraction_by_phase"]) == {"1/5", "2/5", "3/5", "4/5", "5/5", "all"}
    effect = actvantage["indicator_effect"]  # how far apart the (+) and (-) chunks lie
    assert effect["plus_minus_gap"] > 0 and effect["action_spread"] > 0 and len(effect["l1"]) == 4
    # The control is pi*0.6's recipe; actvantage follows the command line (defaults here).
    control = results["per_seed"]["0"]["actvantage_pistar"][0]["recipe"]
    assert control == {
        "positive_fraction": 0.3,
        "n_steps": 10,
        "credit": "episode",
        "pre_takeover_window": 0,
        "threshold_by": "task",
        "value_bins": 10,
        "injection": "encoder_token",
        "negative_weight": 1.0,
        "negative_weight_by": "sampling",
    }
    recipe = actvantage["recipe"]
    assert recipe["n_steps"] is None and results["actvantage_recipe"] == recipe
    assert (recipe["negative_weight"], recipe["negative_weight_by"]) == (0.5, "loss")
    filtered, everything = results["per_seed"]["0"]["filtered_bc"], results["per_seed"]["0"]["act_all"]
    assert 0 < filtered[1]["train_frames"] < everything[1]["train_frames"] == everything[1]["frames"]
    summary = results["summary"]
    assert set(summary["rounds"]) == {"0", "1"} and "actvantage_beta1.5" in summary["rounds"]["1"]
    assert "minus_filtered_bc" in summary["rounds"]["1"]["actvantage"]["success_rate"]
    assert set(summary["vs_round0_filtered_bc"]["filtered_bc"]) == {"1"}
    assert set(summary["vs_previous_round"]["actvantage"]["1"]) == set(closed_loop_stats_metrics())
    assert set(summary["vs_weighted_bc"]["filtered_bc"]) == {"0", "1"}
    # Runs of one arm with other settings are merged side by side under new names.
    import bench_recap

    merged = bench_recap.merge_results(
        [f"{output}:actvantage=actvantage_copy"], None, tmp_path / "merged.json"
    )
    labels = set(merged["summary"]["rounds"]["1"])
    assert {
        "actvantage_copy",
        "actvantage_copy_beta1.5",
        "filtered_bc",
    } <= labels and "actvantage" not in labels
    assert merged["summary"]["rounds"]["1"]["actvantage_copy"] == summary["rounds"]["1"]["actvantage"]
    with pytest.raises(SystemExit, match="has act_all of seed 0 again"):
        bench_recap.merge_results([str(output), f"{output}:actvantage=other"], None, tmp_path / "twice.json")
    assert output.with_suffix(".png").stat().st_size > 0


def test_recap_resume_runs_only_the_chains_a_stopped_run_lacks(tmp_path):
    """--resume keeps the chains --output holds (they are not rerun) and adds the missing ones; a
    file run with other settings is refused by key."""
    output = tmp_path / "recap.json"
    quick = ("--data-dir", str(tmp_path / "data"), "--arms", "filtered_bc", "--output", str(output))
    run_quick_benchmark("bench_recap.py", *quick, "--seeds", "0")
    stopped = json.loads(output.read_text())
    stopped["per_seed"]["0"]["filtered_bc"][0]["marker"] = "kept, not rerun"
    stopped |= {"complete": False, "summary": None}
    output.write_text(json.dumps(stopped))
    run = run_quick_benchmark("bench_recap.py", *quick, "--seeds", "0,1", "--resume")
    assert "resuming" in run.stdout and "1 of 2 chains done" in run.stdout
    resumed = json.loads(output.read_text())
    assert resumed["complete"] and sorted(resumed["per_seed"]) == ["0", "1"]
    assert resumed["per_seed"]["0"]["filtered_bc"][0]["marker"] == "kept, not rerun"
    assert [r["round"] for r in resumed["per_seed"]["1"]["filtered_bc"]] == [0, 1]
    assert resumed["summary"]["rounds"]["1"]["filtered_bc"]["seeds"] == 2
    assert resumed["wall_seconds"] >= stopped["wall_seconds"]
    refused = run_in_process(
        BENCHMARKS / "bench_recap.py", ["--quick", *quick, "--seeds", "0,1", "--resume", "--steps", "3"]
    )
    assert refused.returncode != 0 and "was run with other steps" in refused.stderr + refused.stdout
    narrower = run_in_process(BENCHMARKS / "bench_recap.py", ["--quick", *quick, "--seeds", "0", "--resume"])
    assert narrower.returncode != 0 and "holds filtered_bc of seed 1" in narrower.stderr
    assert json.loads(output.read_text()) == resumed  # a refused resume leaves the file alone


def test_recap_guidance_holds_for_its_block_only(tmp_path):
    """Evaluation and collection run an ACTvantage policy at their scale; after the block, also a
    failed one, it is back at 1, what the next round fine-tunes; an arm without guidance is left
    alone; a negative scale to collect or evaluate at is refused before any training."""
    from lerobot_policy_actvantage import ACTvantageConfig

    policy = types.SimpleNamespace(config=ACTvantageConfig(guidance_reference="negative"))
    with common.guidance(policy, 1.5):
        assert policy.config.guidance_scale == 1.5
    assert policy.config.guidance_scale == 1.0
    with pytest.raises(RuntimeError, match="rollout failed"), common.guidance(policy, 2.0):
        raise RuntimeError("rollout failed")
    assert policy.config.guidance_scale == 1.0
    plain = types.SimpleNamespace(config=types.SimpleNamespace())
    with common.guidance(plain, None):
        pass
    assert vars(plain.config) == {}
    for script, flags in (
        ("bench_recap.py", ["--collect-beta", "-1"]),
        ("bench_recap.py", ["--guided-beta", "1.5,-1"]),
        ("bench_actvantage_vs_act.py", ["--betas", "1,-1"]),
    ):
        refused = run_in_process(BENCHMARKS / script, ["--quick", *flags, "--output", tmp_path / "r.json"])
        name = "--betas" if script == "bench_actvantage_vs_act.py" else "--collect-beta / --guided-beta"
        assert refused.returncode == 2, refused.stderr
        assert f"{name}: ACTvantage guidance_scale must be a finite number >= 0, got -1.0" in refused.stderr
        assert not (tmp_path / "r.json").exists()


def test_recap_filtered_bc_keeps_own_successes_and_corrections_only():
    """Filtered BC's rows: a success the policy finished alone, all of it; a success after a
    correction, only the corrected frames; a failure with a correction, only those; a plain failure,
    nothing."""
    import bench_recap

    def episode(success: bool, intervention: list[bool]) -> common.RolloutEpisode:
        steps = len(intervention)
        return common.RolloutEpisode(
            seed=0,
            state=[np.zeros(2)] * steps,
            environment_state=[np.zeros(16)] * steps,
            action=[np.zeros(2)] * steps,
            intervention=intervention,
            success=success,
        )

    experience = bench_recap.Experience(
        [
            episode(True, [False] * 3),  # rows 0-2
            episode(True, [False, True, True, False]),  # rows 3-6
            episode(False, [True, False]),  # rows 7-8
            episode(False, [False] * 2),  # rows 9-10
        ],
        pre_takeover_window=0,
    )
    assert experience.filtered_rows().tolist() == [0, 1, 2, 4, 5, 7]
    assert experience.corrected_episodes == {1, 2}
    assert experience.frame_kinds.tolist() == [
        *["rollout"] * 3,
        *["corrected_rollout", "correction", "correction", "corrected_rollout"],
        *["correction", "corrected_rollout"],
        *["rollout"] * 2,
    ]
    demonstration = dataclasses.replace(episode(False, [False] * 2), seed=bench_recap.DEMONSTRATION_SEED)
    assert bench_recap.Experience([demonstration], 0).frame_kinds.tolist() == ["demonstration"] * 2


def test_recap_weighted_bc_in_siriuss_form():
    """Sirius's weights as sampling weights: the pre-takeover window 0, the corrections together as
    heavy as every other frame together, the rest 1; the window is also a frame kind of its own."""
    import bench_recap

    steps = [False, False, False, True, True, False]  # policy 0-2, takeover 3-4, hand-back 5
    episodes = [
        common.RolloutEpisode(
            seed=0,
            state=[np.zeros(2)] * len(steps),
            environment_state=[np.zeros(16)] * len(steps),
            action=[np.zeros(2)] * len(steps),
            intervention=steps,
            success=True,
        ),
        common.RolloutEpisode(
            seed=bench_recap.DEMONSTRATION_SEED,
            state=[np.zeros(2)] * 4,
            environment_state=[np.zeros(16)] * 4,
            action=[np.zeros(2)] * 4,
            intervention=[False] * 4,
            success=True,
        ),
    ]
    experience = bench_recap.Experience(episodes, pre_takeover_window=2)
    assert experience.sirius_weights().tolist() == [1, 0, 0, 3, 3, 1, 1, 1, 1, 1]
    assert experience.frame_kinds.tolist() == [
        "corrected_rollout",
        "pre_takeover",
        "pre_takeover",
        "correction",
        "correction",
        "corrected_rollout",
        *["demonstration"] * 4,
    ]
    assert bench_recap.Experience(episodes[1:], 2).sirius_weights().tolist() == [1] * 4


def test_recap_summary_compares_only_what_every_seed_evaluated():
    """Merged runs where a guided variant was evaluated on some seeds only: the summary pairs the
    rest over every seed and names what it left out, instead of failing."""
    import bench_recap

    def evaluation(successes):
        return {"successes": successes, "max_coverages": [0.5] * 4, "steps": [100] * 4}

    def arm(name, guided):
        labels = {name: evaluation([True, False, True, False])}
        if guided:
            labels[f"{name}_beta1.5"] = evaluation([True] * 4)
        return [{"round": 0, "eval": labels}]

    per_seed = {
        seed: {"filtered_bc": arm("filtered_bc", False), "actvantage": arm("actvantage", seed == "2")}
        for seed in ("0", "1", "2")
    }
    summary = bench_recap.summarise(per_seed, 0)
    assert summary["not_on_every_seed"] == ["actvantage_beta1.5"]
    assert set(summary["rounds"]["0"]) == {"filtered_bc", "actvantage"}
    assert summary["rounds"]["0"]["actvantage"]["success_rate"]["minus_filtered_bc"]["mean"] == 0.0


def test_train_policy_draws_rows_by_weight():
    """Rows of weight 0 are never drawn; the batch comes from the weighted rows only."""
    frames = common.Frames(
        observations={"observation.state": torch.zeros(6, 2)},
        action=torch.zeros(6, 2),
        index=torch.arange(6),
        episode_index=torch.zeros(6, dtype=torch.long),
        episode_end=torch.full((6,), 6),
        image_keys=frozenset(),
    )
    seen: list[int] = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.config = type("Config", (), {"chunk_size": 1})()

        def get_optim_params(self):
            return self.parameters()

        def forward(self, batch):
            seen.extend(batch["index"].tolist())
            return self.weight.square().sum(), {}

    weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0, 0.0])
    common.train_policy(
        Recorder(),
        lambda batch: batch,
        frames,
        torch.arange(6),
        common.TrainSettings(steps=50, batch_size=8),
        row_weights=weights,
    )
    assert set(seen) == {1, 3} and seen.count(3) > seen.count(1)
    with pytest.raises(ValueError, match="one weight >= 0 per row"):
        common.train_policy(
            Recorder(),
            lambda batch: batch,
            frames,
            torch.arange(6),
            common.TrainSettings(steps=1),
            row_weights=-weights,
        )


def closed_loop_stats_metrics() -> list[str]:
    import closed_loop_stats

    return list(closed_loop_stats.METRICS)


def test_closed_loop_summary_intervals_paired_differences_and_throughput():
    """Means pool seeds x episodes; an arm that always succeeds where the reference always fails
    differs by more than its interval, and identical or nearly identical arms do not. Throughput
    counts successes per environment step, and steps to success only the successful episodes."""
    import closed_loop_stats

    def run(successes, coverages, steps):
        return {"successes": successes, "max_coverages": coverages, "steps": steps}

    per_seed = {
        seed: {
            "act_all": run([False] * 10, [0.3] * 10, [300] * 10),
            "better": run([True] * 10, [1.0] * 10, [100] * 5 + [200] * 5),
            "same": run([False] * 10, [0.3] * 10, [300] * 10),
            "close": run([seed == "0"] + [False] * 9, [0.3] * 10, [100] + [300] * 9),
        }
        for seed in ("0", "1", "2")
    }
    summary = closed_loop_stats.summarise(per_seed, "act_all")
    assert summary["better"]["success_rate"]["mean"] == 1.0
    assert summary["better"]["success_rate"]["minus_act_all"]["larger_than_interval"]
    assert summary["better"]["failure_cut_vs_act_all"] == 1.0
    assert summary["better"]["successes_per_1000_steps"]["mean"] == pytest.approx(1000 / 150, abs=1e-3)
    assert summary["better"]["steps_to_success"]["mean"] == 150.0
    assert summary["better"]["steps_to_success"]["ci95"][0] >= 100
    # Steps to success is undefined without a success, and so is its difference from such an arm.
    assert summary["act_all"]["steps_to_success"] == {"mean": None, "ci95": None, "per_seed": [None] * 3}
    assert summary["better"]["steps_to_success"]["minus_act_all"]["ci95"] is None
    assert summary["same"]["mean_max_coverage"]["minus_act_all"] == {
        "mean": 0.0,
        "ci95": [0.0, 0.0],
        "larger_than_interval": False,
    }
    assert summary["act_all"]["success_rate"]["ci95"] == [0.0, 0.0] and summary["act_all"]["seeds"] == 3
    # One success in 30 episodes: a difference well inside its interval.
    close = summary["close"]["success_rate"]
    assert close["mean"] == pytest.approx(1 / 30, abs=1e-4) and close["per_seed"] == [0.1, 0.0, 0.0]
    assert close["minus_act_all"]["ci95"][0] == 0.0 and not close["minus_act_all"]["larger_than_interval"]
    assert summary["close"]["successes_per_1000_steps"]["mean"] == pytest.approx(
        1000 / (100 + 9 * 300) / 3, abs=1e-3
    )
    # Seeds are resampled whole, so every seed must list the same evaluation episodes.
    uneven = {
        "0": {"act_all": run([True], [1.0], [10])},
        "1": {"act_all": run([True] * 2, [1.0] * 2, [10] * 2)},
    }
    with pytest.raises(ValueError, match=r"same evaluation episodes, got \[1, 2\]"):
        closed_loop_stats.summarise(uneven, None)


def test_overhead_quick(tmp_path):
    output = tmp_path / "overhead.json"
    run_quick_benchmark("bench_overhead.py", "--repeats", "2", "--output", str(output))
    results = json.loads(output.read_text())
    assert results["threads"] == 1
    assert results["train_ratio_rewact_over_act"] > 0 and results["inference_ratio_rewact_over_act"] > 0


@pytest.mark.duration(8)
def test_ddp_buffers_quick(tmp_path):
    """Two gloo processes train each arm; only the replaced layout broadcasts the table."""
    output = tmp_path / "ddp.json"
    run_quick_benchmark("bench_ddp_buffers.py", "--output", str(output))
    arms = json.loads(output.read_text())["arms"]
    assert arms["table_10k"]["bytes_broadcast_per_step"] == arms["table_2M"]["bytes_broadcast_per_step"]
    table_bytes = arms["buffer_2M"]["bytes_broadcast_per_step"] - arms["table_2M"]["bytes_broadcast_per_step"]
    assert table_bytes == 2_000_000 * 4
    assert all(arm["median_step_seconds"] > 0 for arm in arms.values())


@pytest.mark.duration(8)
def test_sharded_values_quick(tmp_path):
    """One process and two (gloo) predict the same table; both throughputs are reported."""
    output = tmp_path / "sharded.json"
    run_quick_benchmark("bench_sharded_values.py", "--output", str(output))
    results = json.loads(output.read_text())
    assert results["tables_identical"] and results["frames"] == 120
    assert set(results["frames_per_second"]) == {"1", "2"} and results["speedup_two_over_one"] > 0


def test_train_policy_rejects_an_unknown_lr_schedule():
    with pytest.raises(ValueError, match="lr_schedule='linear'"):
        common.train_policy(
            None, None, None, torch.arange(3), common.TrainSettings(steps=1, lr_schedule="linear")
        )


def test_train_policy_rejects_an_unknown_clock():
    with pytest.raises(ValueError, match="clock='gpu'"):
        common.train_policy(None, None, None, torch.arange(3), common.TrainSettings(steps=1, clock="gpu"))


def test_vision_encoder_quick(tmp_path):
    output = tmp_path / "vision_encoder.json"
    run_quick_benchmark("bench_vision_encoder.py", "--output", str(output))
    results = json.loads(output.read_text())
    assert results["threads"] == 1 and set(results["scenarios"]) == {"quick_32"}
    row = results["scenarios"]["quick_32"]
    assert row["tokens_per_camera"] == 16 and row["train_ratio_frozen_over_trained"] > 0


def test_oracle_quick(tmp_path):
    """Every arm trains, reports open-loop errors and the three rollout sets at each checkpoint."""
    output = tmp_path / "oracle.json"
    run_quick_benchmark("bench_oracle.py", "--data-dir", str(tmp_path / "data"), "--output", str(output))
    results = json.loads(output.read_text())
    assert results["quick"] and results["threads"] == 1
    assert set(results["arms"]) == {
        "raw",
        "raw_env_norm",
        "hand40",
        "hand20",
        "hand40_fast",
        "hand40_fast_lr4e-4",
        "mlp_raw",
        "mlp_hand40",
    }
    assert [results["arms"][arm]["hand_speed"] for arm in ("raw", "hand40", "hand20")] == [0.0, 40.0, 20.0]
    assert results["arms"]["mlp_hand40"]["dataset"] == results["arms"]["hand40"]["dataset"]
    for arm in results["arms"].values():
        assert arm["dataset"]["name"].endswith("_noimage")
        assert [point["step"] for point in arm["curve"]] == [2, 4]
        rollout_sets = ("chunked", "training_starts") + (("ensembled",) if arm["model"] == "act" else ())
        for point in arm["curve"]:
            assert point["hold_position_l1_px"] > 0 and point["first_action_l1_px"] > 0
            assert set(rollout_sets) <= set(point) and ("ensembled" in point) == (arm["model"] == "act")
            for rollouts in rollout_sets:
                assert len(point[rollouts]["max_coverages"]) == results["eval_episodes"]
    # The hand speed changes the data: commands of the capped expert stay closer to the agent.
    hold = {arm: results["arms"][arm]["curve"][0]["hold_position_l1_px"] for arm in ("raw", "hand20")}
    assert hold["hand20"] < hold["raw"]
    assert output.with_suffix(".png").stat().st_size > 0


def merge_oracle_results(*paths: Path, output: Path) -> Run:
    return run_in_process(
        BENCHMARKS / "bench_oracle.py", ["--merge", *map(str, paths), "--output", str(output)]
    )


def test_oracle_merge_joins_parallel_runs(tmp_path):
    """Results of runs made in parallel with other arms merge into one file and plot; runs with other
    settings are refused."""
    base = {"quick": True, "episodes": 4, "seed": 0, "train_seed": 0, "eval_seed": 7, "eval_episodes": 2}
    base |= {"steps": 4, "batch_size": 256}
    rollouts = {"mean_max_coverage": 0.1, "success_rate": 0.0}
    point = {"step": 4, "first_action_l1_px": 9.0, "hold_position_l1_px": 20.0}
    point |= {"chunked": rollouts, "training_starts": rollouts}
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    first.write_text(json.dumps({**base, "arms": {"raw": {"curve": [point]}}}))
    second.write_text(json.dumps({**base, "arms": {"hand40": {"curve": [point]}}}))
    other.write_text(json.dumps({**base, "steps": 8, "arms": {"hand20": {"curve": [point]}}}))
    output = tmp_path / "merged.json"
    completed = merge_oracle_results(first, second, output=output)
    assert completed.returncode == 0, completed.stderr[-2000:]
    merged = json.loads(output.read_text())
    assert list(merged["arms"]) == ["raw", "hand40"] and merged["merged_from"] == ["a.json", "b.json"]
    assert output.with_suffix(".png").stat().st_size > 0
    refused = merge_oracle_results(first, other, output=output)
    assert refused.returncode != 0 and "differs" in refused.stderr and "steps" in refused.stderr


def test_harness_merge_renames_an_arm_and_its_guided_variants_only(tmp_path):
    """`PATH:arm=label` renames the arm and its `_beta` variants, not another arm that shares its
    prefix; runs that differ in a shared key, a label twice and seeds with other arms are refused."""
    import harness

    def write(name: str, per_seed: dict, **shared) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"per_seed": per_seed, "dataset": "d", **shared}))
        return path

    first = write("a.json", {"0": {"actvantage": 1, "actvantage_beta1.5": 2, "actvantage_pistar": 3}})
    second = write("b.json", {"0": {"actvantage": 4, "actvantage_beta1.5": 5}, "1": {"actvantage": 6}})

    def relabel(result, arm, label):
        return (result, arm, label)

    runs, per_seed = harness.merge_runs(
        [first, f"{second}:actvantage=copy"], ["dataset"], seeds=[0], relabel=relabel
    )
    assert len(runs) == 2 and set(per_seed) == {"0"}
    assert per_seed["0"] == {
        "actvantage": 1,
        "actvantage_beta1.5": 2,
        "actvantage_pistar": 3,
        "copy": (4, "actvantage", "copy"),
        "copy_beta1.5": (5, "actvantage", "copy"),
    }
    with pytest.raises(SystemExit, match="has actvantage of seed 0 again"):
        harness.merge_runs([first, second], ["dataset"], seeds=[0], relabel=relabel)
    with pytest.raises(SystemExit, match="different arms"):
        harness.merge_runs([f"{second}:actvantage=copy", first], ["dataset"], seeds=None, relabel=relabel)
    other = write("c.json", {"0": {}}, dataset="other")
    with pytest.raises(SystemExit, match="differs from .* in dataset"):
        harness.merge_runs([first, other], ["dataset"], seeds=None, relabel=relabel)
    # Timings are not settings: a value model trained in one run and reloaded in another is one.
    timed = [
        write(
            f"timed{i}.json",
            {"0": {f"arm{i}": i}},
            value_model={"step": 5, "train_seconds": i, "curve": [{"train_seconds": i}]},
        )
        for i in (1, 2)
    ]
    assert harness.merge_runs(timed, ["value_model"], seeds=None, relabel=relabel)[1] == {
        "0": {"arm1": 1, "arm2": 2}
    }
    stepped = write(
        "stepped.json", {"0": {"arm3": 3}}, value_model={"step": 6, "train_seconds": 1, "curve": []}
    )
    with pytest.raises(SystemExit, match="in value_model"):
        harness.merge_runs([timed[0], stepped], ["value_model"], seeds=None, relabel=relabel)
