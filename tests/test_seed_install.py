"""The install and Quick Start a newcomer follows without `make`, in a fresh virtual environment.

Each package is installed from its own folder with `pip install -e .`, in the order the packages
depend on each other, into a new venv on this platform's Python (pip's cache may be warm). Then the
Quick Start runs as written, with a local `--dataset.root` and `--policy.push_to_hub=false` (there is
no hub here) and a few steps instead of ten thousand: `scripts/train.py` trains a default RewACT on a
small MP4 dataset, and `scripts/visualise_reward_predictions.py` renders one episode. The default
RewACT starts from ImageNet ResNet18 weights, which cannot be downloaded here: a random-weight
stand-in lies where torchvision caches them.

Installing LeRobot, torch and the rest from scratch copies gigabytes and takes minutes, so that run is
marked `slow`. The default run gives the new venv this platform's installed dependencies instead
(exactly the distributions our three packages need, transitively, and nothing else): pip still
resolves every requirement, but installs only our packages.

Before anything is installed, pip resolves ACTvantage alone (`--dry-run`): it needs RewACT and must
not resolve to the unrelated PyPI project of that name. RewACT, installed first, resolves alone.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rewact_tools.candywrapper import install_command

from local_datasets import make_local_dataset
from subprocess_helpers import REPO, SUBPROCESS_ENV, mp4_frames

# What a newcomer would take for an error in pip's output. Not ours, so let through: this machine's
# pip configuration notes its own package folders, and LeRobot 0.4.4 asks for huggingface-hub's
# "hf-transfer" extra, which the huggingface-hub versions it allows no longer have.
ALARMING = ("deprecat", "does not provide the extra", "error", "warning")
PACKAGES = ("lerobot_policy_rewact", "lerobot_policy_actvantage", "rewact_tools")
NOT_OURS = ("WARNING: Location 'file:", "does not provide the extra 'hf-transfer'")
SEED_TRAIN_FLAGS = [
    "--dataset.repo_id=local/seed",
    "--dataset.episodes=[0,1]",
    "--policy.type=rewact",
    "--policy.repo_id=local/rewact_seed",
    "--policy.push_to_hub=false",
    "--job_name=rewact_seed",
    "--eval_freq=-1",
    "--log_freq=50",
    "--save_freq=1000",
]
# The Quick Start's batch, two steps instead of ten thousand.
QUICK_START_STEPS = ["--batch_size=32", "--steps=2"]


def _run(command: list, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output[-6000:]}"
    return output


def _alarming_lines(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if any(word in line.lower() for word in ALARMING) and not any(note in line for note in NOT_OURS)
    ]


def _fresh_venv(folder: Path) -> tuple[Path, dict[str, str]]:
    """An empty venv on this platform's Python, and the environment to run its commands in."""
    venv = folder / "venv"
    interpreter = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    _ok(_run([interpreter, "-m", "venv", venv], REPO, SUBPROCESS_ENV))
    env = {
        **SUBPROCESS_ENV,
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("PYTHONPATH", None)
    return venv, env


def _dependency_closure(names: tuple[str, ...]) -> tuple[list[importlib.metadata.Distribution], set[str]]:
    """The installed distributions that `names` need without extras, transitively (`names` left out),
    following the extras each requirement asks for (`lerobot[training]`); and the names of those that
    are needed but not installed here (torchcodec, which the Makefile removes)."""
    closure: dict[str, importlib.metadata.Distribution] = {}
    missing: set[str] = set()
    followed: set[tuple[str, str]] = set()
    pending = [(name, "") for name in names]
    while pending:
        name, extra = pending.pop()
        key = canonicalize_name(name)
        if (key, extra) in followed:
            continue
        followed.add((key, extra))
        try:
            distribution = closure.setdefault(key, importlib.metadata.distribution(name))
        except importlib.metadata.PackageNotFoundError:
            missing.add(key)
            continue
        for requirement in map(Requirement, distribution.requires or []):
            if not requirement.marker or requirement.marker.evaluate({"extra": extra}):
                pending.extend((requirement.name, wanted) for wanted in ("", *requirement.extras))
    ours = {canonicalize_name(name) for name in names}
    return [distribution for key, distribution in closure.items() if key not in ours], missing


def _lend_installed_dependencies(venv: Path, folder: Path) -> set[str]:
    """Put this platform's installed copies of our packages' dependencies on the venv's path (a
    folder of links to their files, named by a `.pth` file); return the dependencies pip may still
    install: those not installed here, and those the new venv came with (pip and, below Python 3.12,
    setuptools), whose own older copies come first on its path."""
    lent = folder / "lent_site_packages"
    lent.mkdir()
    installed, missing = _dependency_closure(PACKAGES)
    for distribution in installed:
        assert distribution.files is not None, f"{distribution.metadata['Name']} has no RECORD"
        for top in {file.parts[0] for file in distribution.files} - {"..", "__pycache__"}:
            if not (lent / top).exists():
                (lent / top).symlink_to(distribution.locate_file(top))
    (venv_site_packages,) = (venv / "lib").glob("python*/site-packages")
    (venv_site_packages / "lent_dependencies.pth").write_text(f"{lent}\n")
    own = {canonicalize_name(path.name.split("-")[0]) for path in venv_site_packages.glob("*.dist-info")}
    return missing | own


def _actvantage_alone_does_not_resolve(venv: Path, env: dict[str, str]) -> None:
    """ACTvantage needs this tree's RewACT: alone, pip must stop there rather than pick the
    unrelated PyPI project of that name."""
    command = [venv / "bin" / "python", "-m", "pip", "install", "--dry-run", "-e", "."]
    alone = _run(command, REPO / "lerobot_policy_actvantage", env)
    output = alone.stdout + alone.stderr
    assert alone.returncode != 0, f"ACTvantage alone resolved:\n{output[-3000:]}"
    assert "No matching distribution found for lerobot_policy_rewact==0.2.0+rewact" in output, output[-3000:]
    assert "Would install" not in output


@pytest.mark.parametrize(
    "dependencies",
    [
        pytest.param("lent", marks=pytest.mark.duration(80)),
        pytest.param("from_scratch", marks=pytest.mark.slow),
    ],
)
def test_seed_install_and_quick_start(tmp_path, dependencies):
    venv, env = _fresh_venv(tmp_path)
    not_lent = _lend_installed_dependencies(venv, tmp_path) if dependencies == "lent" else set()
    _actvantage_alone_does_not_resolve(venv, env)
    for package in PACKAGES:
        output = _ok(_run([venv / "bin" / "pip", "install", "-e", "."], REPO / package, env))
        assert not _alarming_lines(output), f"pip install -e {package} printed:\n" + "\n".join(
            _alarming_lines(output)
        )
        if dependencies == "lent":  # pip resolved every dependency it was lent to the lent copy
            (installed,) = [line for line in output.splitlines() if line.startswith("Installing collected")]
            names = {canonicalize_name(name) for name in installed.split(": ")[1].split(", ")}
            ours = canonicalize_name(package)
            assert ours in names and names <= not_lent | {ours}, installed
    if dependencies == "from_scratch":  # console scripts are installed with LeRobot itself
        _ok(_run([venv / "bin" / "lerobot-train", "--help"], tmp_path, env))

    make_local_dataset(tmp_path / "seed", repo_id="local/seed", episode_lengths=(12, 14, 10), use_videos=True)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch_home = tmp_path / "torch_home"
    cache = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    cache.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cache)
    env = {**env, "TORCH_HOME": str(torch_home)}

    python = venv / "bin" / "python"
    output_dir = tmp_path / "outputs" / "rewact_seed"
    train = [python, "scripts/train.py", f"--dataset.root={tmp_path / 'seed'}", *SEED_TRAIN_FLAGS]
    _ok(_run([*train, *QUICK_START_STEPS, f"--output_dir={output_dir}"], REPO, env))
    checkpoint = output_dir / "checkpoints" / "last" / "pretrained_model"
    assert (checkpoint / "model.safetensors").is_file()

    predictions = tmp_path / "predictions"
    visualise = [
        python,
        "scripts/visualise_reward_predictions.py",
        "--dataset-repo-id",
        "local/seed",
        "--dataset-root",
        tmp_path / "seed",
        "--episode-id",
        "1",
        "--policy-path",
        checkpoint,
        "--output-dir",
        predictions,
    ]
    _ok(_run(visualise, REPO, env))
    assert mp4_frames(predictions / "reward_predictions_episode_1.mp4")[0] == 14
    assert (predictions / "reward_predictions_episode_1.png").is_file()

    # A plugin needs robocandywrapper, which the seed's steps install only below Python 3.12. Where
    # it is installed, one small step shows the plugin trains (half the CPU of the Quick Start's).
    dense = [f"--output_dir={tmp_path / 'outputs' / 'dense'}", "--reward", "dense"]
    plugin = _run([*train, "--batch_size=4", "--steps=1", *dense], REPO, env)
    if sys.version_info >= (3, 12):
        assert plugin.returncode == 2, plugin.stderr[-3000:]
        assert plugin.stderr.strip().splitlines()[-1].endswith(f"Install it with: {install_command()}")
    else:
        _ok(plugin)
        assert (tmp_path / "outputs" / "dense" / "checkpoints" / "last" / "pretrained_model").is_dir()
