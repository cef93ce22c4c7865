"""Run LeRobot's and our command-line programs as a user would: subprocesses, offline, one thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from policy_helpers import TINY_ACT

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

SUBPROCESS_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MUJOCO_GL": "egl",
}
SUBPROCESS_ENV.pop("REWACT_TRACEBACK", None)

# The tiny test model as `--policy.*` flags (the same settings as the in-process tests).
TINY_POLICY_FLAGS = [
    *(f"--policy.{name}={'null' if value is None else value}" for name, value in TINY_ACT.items()),
    "--policy.push_to_hub=false",
]
# A smoke training run: no workers, small batches, no simulation eval.
SMOKE_TRAIN_FLAGS = ["--num_workers=0", "--batch_size=4", "--eval_freq=-1", "--log_freq=1"]


def run_ok(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `command`; fail the test with the end of its output unless it exits 0."""
    result = subprocess.run(
        command, cwd=cwd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result
