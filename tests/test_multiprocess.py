"""Scripts under a two-process CPU launch (torchrun, gloo), as `accelerate launch` runs them on N GPUs:
train.py trains in every process and the main one alone logs, saves and reports; the dataset passes
split their frames and write what one process writes; every other script refuses to start."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from safetensors import safe_open

from lerobot_policy_actvantage import ACTvantagePolicy
from lerobot_policy_rewact import RewACTPolicy
from rewact_tools.processors import make_pre_post_processors

from local_datasets import make_local_dataset
from subprocess_helpers import (
    BIN,
    REPO,
    SMOKE_TRAIN_FLAGS,
    SUBPROCESS_ENV,
    TINY_POLICY_FLAGS,
    run_script,
    run_scripts,
)

LAUNCH_TIMEOUT_S = 300
"""About ten times the longest launch here: a hung process (PyTorch's gloo teardown can deadlock) fails
the test instead of holding a worker for longer."""


def launch(
    processes: int, script: str, *args: str, teardown_report: Path | None = None
) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N scripts/<script> ARGS` (a free port, gloo on CPU);
    `lerobot-*` scripts are LeRobot's own. With `teardown_report`, the script runs under
    `teardown_probe.py`, which writes there what each process still held when its group was
    destroyed. On a timeout the launcher and every process it started are killed, so no hung rank
    outlives the test."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    path = BIN / script if script.startswith("lerobot-") else REPO / "scripts" / script
    if teardown_report is not None:
        command += [str(Path(__file__).with_name("teardown_probe.py")), str(teardown_report)]
    with subprocess.Popen(
        [*command, str(path), *args],
        cwd=REPO,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.terminate()  # torchrun then stops the processes it started (each in its own session)
            try:
                process.communicate(timeout=60)
            finally:
                process.kill()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multiprocess") / "a"
    make_local_dataset(root, repo_id="local/a", episode_lengths=(12, 16, 10), with_next_fields=True)
    return root


@pytest.mark.duration(25)
def test_train_with_plugins_under_two_processes_logs_and_saves_once(dataset, tmp_path):
    output = tmp_path / "out"
    teardown = tmp_path / "teardown"
    teardown.mkdir()
    run = launch(
        2,
        "train.py",
        "--dataset.repo_id=local/a",
        f"--dataset.root={dataset}",
        "--policy.type=rewact",
        "--reward",
        "pistar",
        f"--output_dir={output}",
        "--job_name=ddp",
        "--save_freq=2",
        "--steps=4",
        *TINY_POLICY_FLAGS,
        *SMOKE_TRAIN_FLAGS,
        teardown_report=teardown,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "Traceback" not in log
    assert log.count("effective batch size 4 x 2") == 1
    # No DDP model outlives its process group (one that did could hang the process at exit).
    reports = {path.name: json.loads(path.read_text()) for path in teardown.iterdir()}
    assert reports == {f"rank{rank}.json": {"ddp_models_alive": 0} for rank in (0, 1)}
    assert log.count("Saved checkpoint") == 2 and log.count("done; plugins") == 1
    metrics = [line for line in log.splitlines() if re.search(r"\bstep:\d+ smpl:", line)]
    assert [re.search(r"step:(\d+)", line).group(1) for line in metrics] == ["1", "2", "3", "4"]
    for line in metrics:  # one value per key: no rank's line, no key twice
        keys = re.findall(r"(\w+):", line.split("epch:")[1])
        assert len(keys) == len(set(keys)) and "l1_loss" in keys and "value_loss" in keys, line
        assert "smpl:8 " in line or "smpl:16 " in line or "smpl:24 " in line or "smpl:32 " in line

    checkpoints = output / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["000002", "000004", "last"]
    model = checkpoints / "last" / "pretrained_model"
    policy = RewACTPolicy.from_pretrained(model)
    # The saved weights are the bare policy's (no DDP wrapper prefix): they fill a fresh one-process
    # policy exactly, which then predicts what the loaded one does.
    fresh = RewACTPolicy(policy.config)
    with safe_open(model / "model.safetensors", "pt") as saved:
        assert set(saved.keys()) == set(fresh.state_dict())
    fresh.load_state_dict(policy.state_dict(), strict=True)
    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=model)
    frames = LeRobotDataset("local/a", root=dataset)
    batch = preprocessor(torch.utils.data.default_collate([frames[0], frames[20]]))
    observation = {key: value for key, value in batch.items() if key.startswith("observation.")}
    values = policy.eval().predict_value(observation)
    torch.testing.assert_close(fresh.eval().predict_value(observation), values)
    assert values.shape == (2,) and bool(((values >= 0) & (values <= 1)).all())


@pytest.fixture(scope="module")
def value_model(dataset, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("value_model") / "out"
    run_script(
        "train.py",
        "--dataset.repo_id=local/a",
        f"--dataset.root={dataset}",
        "--policy.type=rewact",
        f"--output_dir={output}",
        "--steps=2",
        *TINY_POLICY_FLAGS,
        *SMOKE_TRAIN_FLAGS,
    ).check()
    return output / "checkpoints" / "last" / "pretrained_model"


def pass_args(dataset: Path, value_model: Path) -> list[str]:
    """A dataset pass's arguments: the dataset and the value model."""
    return ["--dataset-repo-id", "local/a", "--dataset-root", str(dataset), "--policy-path", str(value_model)]


@pytest.mark.duration(50)
def test_dataset_passes_split_their_frames_and_write_what_one_process_writes(dataset, value_model, tmp_path):
    """Each pass under a two-process launch writes what a plain one-process run writes."""
    common = pass_args(dataset, value_model)
    outputs = {}
    for processes in (1, 2):
        advantages = tmp_path / f"advantages_{processes}.parquet"
        progress = tmp_path / f"progress_{processes}.parquet"
        metrics = tmp_path / f"metrics_{processes}.json"
        calls = [
            ("precompute_advantage.py", [*common, "--batch-size", "5", "--output", str(advantages)]),
            ("compute_rabc_progress.py", [*common, "--batch-size", "5", "--output", str(progress)]),
            ("evaluate_reward_model.py", [*common, "--batch-size", "5", "--output", str(metrics)]),
        ]
        if processes == 1:
            runs = run_scripts(*calls)
        else:
            runs = [launch(processes, script, *args) for script, args in calls]
        for run in runs:
            assert run.returncode == 0, run.stderr[-3000:]
            assert run.stdout.count("wrote ") == 1, run.stdout  # the main process alone reports
        outputs[processes] = (
            pd.read_parquet(advantages),
            pd.read_parquet(progress),
            json.loads(metrics.read_text())["metrics"],
        )
    for one, two in zip(outputs[1], outputs[2], strict=True):
        if isinstance(one, pd.DataFrame):
            pd.testing.assert_frame_equal(one, two)
        else:
            assert one == pytest.approx(two)
    assert len(outputs[2][0]) == 38  # every frame, once


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("collect_rollouts.py", ["--policy-path", "{tmp}/policy", "--root", "{tmp}/rollouts"]),
        ("label_rewards.py", ["--dataset-repo-id", "local/a", "--dataset-root", "{tmp}/a"]),
        ("make_pusht_dataset.py", ["--root", "{tmp}/pusht"]),
    ],
)
def test_scripts_that_write_from_one_process_refuse_a_launch(script, args, tmp_path):
    run = launch(2, script, *(arg.format(tmp=tmp_path) for arg in args))
    assert run.returncode != 0 and not list(tmp_path.iterdir())
    refusals = [line for line in run.stderr.splitlines() if "runs as one process" in line]
    assert len(refusals) == 1 and f"{script} runs as one process" in refusals[0], run.stderr[-2000:]


@pytest.mark.duration(23)
@pytest.mark.parametrize("policy_type", ["rewact", "actvantage"])
def test_stock_lerobot_train_under_two_processes(policy_type, dataset, value_model, tmp_path):
    """RewACT with its own targets, ACTvantage from an advantage file: LeRobot's DDP training, no plugin.

    The last step is not a logging step. On LeRobot 0.6.1 with PyTorch 2.11 the metrics all-reduce
    of a logging step, followed at once by the barrier after the last save, can hang a process at
    exit, whatever the policy: the barrier keeps the all-reduce's tensors alive until it is freed
    in a worker thread that needs the GIL, while `train` has returned and frees the DDP model, the
    group's last owner, holding it (`rewact_tools.training.end_training` avoids it in train.py)."""
    flags = []
    if policy_type == "actvantage":
        advantages = tmp_path / "advantages.parquet"
        common = pass_args(dataset, value_model)
        run_script("precompute_advantage.py", *common, "--output", str(advantages)).check()
        flags = [f"--policy.advantage_file={advantages}"]
    output = tmp_path / policy_type
    run = launch(
        2,
        "lerobot-train",
        "--dataset.repo_id=local/a",
        f"--dataset.root={dataset}",
        f"--policy.type={policy_type}",
        *flags,
        f"--output_dir={output}",
        "--steps=3",
        "--save_freq=3",
        "--wandb.enable=false",
        *TINY_POLICY_FLAGS,
        *[flag for flag in SMOKE_TRAIN_FLAGS if not flag.startswith("--log_freq")],
        "--log_freq=2",
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "x 2" in run.stdout + run.stderr  # LeRobot's "Effective batch size: 4 x 2"
    model = output / "checkpoints" / "last" / "pretrained_model"
    if policy_type == "actvantage":
        assert ACTvantagePolicy.from_pretrained(model).advantage_positive_lookup.shape[0] >= 38
    else:
        assert RewACTPolicy.from_pretrained(model).config.type == "rewact"
