"""Run LeRobot's and our command-line programs as a user would: offline, one thread.

LeRobot's programs and anything that must start from a fresh interpreter run as subprocesses. Our
scripts run by default in the test process itself, through the same `__main__` path a user's
`python scripts/<name>.py` takes (`run_cli`, its exit codes and one-line errors), because the test
process has already imported torch and LeRobot: a subprocess spends 3-5 CPU seconds on that before
it does anything. Fresh-interpreter runs of our scripts stay where they matter: `recap.py`'s own
commands, the multi-process launches, the newcomer's install, and `--help` of every script.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import torch

from rewact_tools.lerobot_compat import EVAL_FREQ_FIELD

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
SMOKE_TRAIN_FLAGS = ["--num_workers=0", "--batch_size=4", f"--{EVAL_FREQ_FIELD}=-1", "--log_freq=1"]


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


def train_tiny(
    dataset_root: Path,
    repo_id: str,
    output: Path,
    *flags: str,
    model_type: str = "rewact",
    trains: str = "policy",
    steps: int = 2,
) -> subprocess.CompletedProcess:
    """Train the tiny model with stock `lerobot-train` into `output` (its last checkpoint is
    `output/checkpoints/last/pretrained_model`). `trains="reward_model"` trains a LeRobot reward model:
    the model flags are then spelt `--reward_model.*`."""
    prefix = f"--{trains}."
    return run_ok(
        [
            str(BIN / "lerobot-train"),
            f"--dataset.repo_id={repo_id}",
            f"--dataset.root={dataset_root}",
            f"{prefix}type={model_type}",
            *(flag.replace("--policy.", prefix) for flag in TINY_POLICY_FLAGS),
            *SMOKE_TRAIN_FLAGS,
            f"--steps={steps}",
            f"--save_freq={steps}",
            f"--output_dir={output}",
            "--wandb.enable=false",
            *flags,
        ],
        cwd=output.parent,
    )


def last_checkpoint(output: Path) -> Path:
    return output / "checkpoints" / "last" / "pretrained_model"


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Run:
        """Exit 0, and no traceback anywhere in the output (a user would take one for an error)."""
        assert self.returncode == 0, f"{self.args} failed:\n{self.stdout[-3000:]}\n{self.stderr[-5000:]}"
        assert "Traceback" not in self.stdout + self.stderr, (
            f"{self.args} printed a traceback:\n{self.stderr}"
        )
        return self

    def check_user_error(self, *fragments: str) -> str:
        """Exit 2 with exactly one `error: ...` line naming `fragments`, and no traceback."""
        assert self.returncode == 2, f"{self.args} exited {self.returncode}:\n{self.stderr[-3000:]}"
        assert "Traceback" not in self.stderr, self.stderr
        errors = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, self.stderr
        for fragment in fragments:
            assert fragment in errors[0], errors[0]
        return errors[0]


def _command(script: str, args: list[str]) -> list[str]:
    if script.startswith("lerobot-"):
        return [str(BIN / script), *map(str, args)]
    return [sys.executable, str(REPO / "scripts" / script), *map(str, args)]


@contextlib.contextmanager
def _as_main_program(argv: list[str]) -> Iterator[None]:
    """What a script may change about its process, put back afterwards: arguments, working folder,
    import path, environment, logging, warning filters and torch's thread count."""
    saved_argv, saved_path, saved_cwd, saved_environ = sys.argv, sys.path[:], os.getcwd(), dict(os.environ)
    root = logging.getLogger()
    saved_handlers, saved_level, saved_threads = root.handlers[:], root.level, torch.get_num_threads()
    sys.argv, sys.path[0] = argv, str(Path(argv[0]).parent)
    os.chdir(REPO)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        root.handlers[:], root.level = saved_handlers, saved_level
        torch.set_num_threads(saved_threads)


def run_in_process(program: Path, args: list) -> Run:
    """`python <program> ARGS`, run as `__main__` in this process, its output captured."""
    argv = [str(program), *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    returncode = 0
    with _as_main_program(argv), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as exit_:
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
            returncode = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except Exception:  # what an uncaught error does to a process: a traceback and exit 1
            traceback.print_exc()
            returncode = 1
    return Run([program.name, *map(str, args)], returncode, stdout.getvalue(), stderr.getvalue())


def _run_without_robocandywrapper(calls: tuple[tuple[str, list], ...]) -> list[Run]:
    """Our scripts one after the other in one new interpreter in which robocandywrapper cannot be
    imported (`script_batch.py`): one import of torch and LeRobot for the batch."""
    with tempfile.TemporaryDirectory() as folder:
        calls_file, results_file = Path(folder) / "calls.json", Path(folder) / "runs.json"
        calls_file.write_text(json.dumps([[script, [str(arg) for arg in args]] for script, args in calls]))
        command = [
            sys.executable,
            str(Path(__file__).with_name("script_batch.py")),
            str(calls_file),
            str(results_file),
        ]
        batch = subprocess.run(
            command, cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900
        )
        assert batch.returncode == 0, f"{command} exited {batch.returncode}:\n{batch.stderr[-5000:]}"
        return [Run(**run) for run in json.loads(results_file.read_text())]


def run_scripts(
    *calls: tuple[str, list],
    parallel: int = 2,
    without_robocandywrapper: bool = False,
    fresh_interpreter: bool = False,
) -> list[Run]:
    """Run `(script, args)` calls from the repository root; results come in call order.

    Our scripts run in this process, one after the other. `without_robocandywrapper` runs them (ours
    only) in one new interpreter in which robocandywrapper cannot be imported. `fresh_interpreter`,
    and any call of LeRobot's programs, runs each call in its own subprocess, `parallel` at a time
    (the machine has two cores; most of such a run is importing torch and LeRobot)."""
    if without_robocandywrapper:
        return _run_without_robocandywrapper(calls)
    if not fresh_interpreter and not any(script.startswith("lerobot-") for script, _ in calls):
        return [run_in_process(REPO / "scripts" / script, args) for script, args in calls]
    runs: list[Run] = []
    for start in range(0, len(calls), parallel):
        batch = calls[start : start + parallel]
        processes = [
            subprocess.Popen(
                _command(script, args),
                cwd=REPO,
                env=SUBPROCESS_ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for script, args in batch
        ]
        for (script, args), process in zip(batch, processes, strict=True):
            stdout, stderr = process.communicate(timeout=600)
            runs.append(Run([script, *map(str, args)], process.returncode, stdout, stderr))
    return runs


def run_script(script: str, *args) -> Run:
    return run_scripts((script, list(args)))[0]


def mp4_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Frame count and (height, width) of an MP4, decoded with PyAV."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert frames, path
    return len(frames), frames[0].shape[:2]


def dataset_args(root: Path, repo_id: str) -> list[str]:
    return ["--dataset-repo-id", repo_id, "--dataset-root", root]
