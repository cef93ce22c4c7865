"""Rollout episodes written as a LeRobot dataset, in rounds, each committed in one atomic step.

LeRobot's writer keeps a parquet file open until `finalize()` (before that the file has no footer and
cannot be read) and rewrites `meta/info.json` at every `save_episode`, so a crash in the middle of
writing leaves a dataset that does not load. Episodes are therefore never written into the dataset
itself. Each commit:

1. stages the dataset in a sibling folder `.<name>.staging/dataset`: LeRobot's append-only files
   (`data/`, `videos/`, `meta/episodes/`, which an append never opens for writing: it starts the
   next file index) are hard-linked, every other file is copied;
2. appends the complete episodes there with LeRobot's own writer (`save_episode` per episode,
   `finalize()` at the end), then the sidecar, and checks that the result loads and that no linked
   file changed;
3. swaps the staged folder in for the dataset in one atomic rename (`replace_directory`).

So the dataset at `root` only ever holds whole commits: a crash, an error or Ctrl-C at any point
leaves it exactly as the last commit left it, earlier episodes' files untouched (the same inodes),
and loses only the episodes written since (the whole run's, or at most `commit_every` episodes).
The staging folder doubles as a lock against two runs writing one dataset; one left behind by a
killed run makes the next run stop and say so.

Beside LeRobot's files, `rewact_extensions/rollouts.json` records each round (run) and each episode
(seed, outcome, the reward model's call, corrections); `--append` accepts only datasets that have it.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lerobot.datasets.lerobot_dataset import LeRobotDataset

from rewact_tools.atomic import replace_directory, write_json
from rewact_tools.lerobot_compat import DEFAULT_FEATURES, open_dataset_for_append
from rewact_tools.offline import offline_if_local

SIDECAR = Path("rewact_extensions/rollouts.json")
GENERATOR = "rewact_tools.rollouts (scripts/collect_rollouts.py)"
_APPEND_ONLY = (Path("data"), Path("videos"), Path("meta/episodes"))
"""Folders whose files LeRobot never rewrites when episodes are appended."""


def staging_folder(root: Path) -> Path:
    return root.parent / f".{root.name}.staging"


def _spec(feature: dict) -> tuple[str, tuple]:
    return feature["dtype"], tuple(feature["shape"])


def check_appendable(root: Path, features: dict[str, dict], fps: int) -> dict[str, Any]:
    """Raise unless `root` is a rollout dataset with exactly these features and fps; returns its sidecar."""
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"--append: {root} is not a LeRobot dataset ({info_path} is missing)")
    if not (root / SIDECAR).is_file():
        raise ValueError(
            f"--append: {root} was not written by collect_rollouts ({root / SIDECAR} is missing)"
        )
    info = json.loads(info_path.read_text())
    existing = {key: value for key, value in info["features"].items() if key not in DEFAULT_FEATURES}
    problems = []
    for key in sorted(set(existing) | set(features)):
        if key not in existing:
            problems.append(f"{key!r} is not in the dataset")
        elif key not in features:
            problems.append(f"{key!r} is not recorded by this run")
        elif _spec(existing[key]) != _spec(features[key]):
            problems.append(f"{key!r} is {_spec(existing[key])} there, {_spec(features[key])} here")
    if info["fps"] != fps:
        problems.append(f"fps is {info['fps']} there, {fps} here")
    if problems:
        raise ValueError(f"cannot append to {root}: " + "; ".join(problems))
    return json.loads((root / SIDECAR).read_text())


def recorded_stall_patience(root: Path | str) -> int | None:
    """The stall patience (`--correct-stall`, steps) the rounds of the rollout dataset at `root` were
    corrected with: the policy's stall before each takeover, hence the default pre-takeover window.
    None when no round corrected on stalls (no stall precedes its takeovers).

    Raises when the sidecar is missing or rounds used different patiences (a window must then be
    given in frames)."""
    path = Path(root) / SIDECAR
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {root} was not written by collect_rollouts, so its stall patience is unknown"
        )
    rounds = json.loads(path.read_text())["rounds"]
    patiences = sorted({entry["corrections"]["stall_steps"] for entry in rounds} - {None})
    if len(patiences) > 1:
        raise ValueError(
            f"{path}: rounds were corrected after {patiences} stalled steps; give one window in frames"
        )
    return int(patiences[0]) if patiences else None


class RolloutDatasetWriter:
    """Writes whole episodes into the dataset at `root` (new, or with `append` an existing rollout
    dataset), committing them atomically (see the module docstring).

    Use as a context manager: leaving it normally commits what is left, leaving it by an exception
    discards the uncommitted episodes, and the dataset stays as its last commit left it.
    """

    def __init__(
        self,
        root: Path | str,
        repo_id: str,
        features: dict[str, dict],
        fps: int,
        round_info: dict[str, Any],
        append: bool = False,
    ):
        self.root = Path(root).absolute()  # its parent holds the staging folder, even for `.`
        self.repo_id, self.features, self.fps = repo_id, features, fps
        if append:
            sidecar = check_appendable(self.root, features, fps)
        elif self.root.exists():
            raise FileExistsError(f"{self.root} already exists; pass --append to add episodes to it")
        else:
            sidecar = {"generator": GENERATOR, "rounds": [], "episodes": []}
        self.round = len(sidecar["rounds"])
        self.round_info = {"round": self.round, **round_info}
        self.staging = staging_folder(self.root)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.staging.mkdir()
        except FileExistsError:
            raise FileExistsError(
                f"{self.staging} exists: another collect_rollouts run is writing {self.root}, or one "
                f"was killed (its uncommitted episodes are lost); delete it once no run uses it "
                f"(if {self.root} is missing, move {self.staging / 'previous'} back to it first)"
            ) from None
        self._dataset: LeRobotDataset | None = None
        self._linked: dict[Path, tuple[int, int, int]] = {}
        self._pending: list[dict[str, Any]] = []
        self.committed = 0

    @property
    def pending(self) -> int:
        """Episodes written since the last commit."""
        return len(self._pending)

    def add_episode(self, frames: Iterable[dict[str, Any]], record: dict[str, Any]) -> int:
        """Write one complete episode (frames with every feature and `task`); returns its index.

        `record` goes into the sidecar with the episode's index and this round's number.
        """
        dataset = self._open()
        episode_index = dataset.meta.total_episodes
        for frame in frames:
            dataset.add_frame(frame)
        dataset.save_episode()
        self._pending.append({"episode_index": episode_index, "round": self.round, **record})
        return episode_index

    def commit(self) -> None:
        """Make the episodes written so far part of the dataset, in one atomic step."""
        if self._dataset is None:
            return
        dataset, self._dataset = self._dataset, None
        dataset.finalize()
        folder = self.staging / "dataset"
        sidecar_path = folder / SIDECAR
        sidecar = (
            json.loads(sidecar_path.read_text())
            if sidecar_path.is_file()
            else {"generator": GENERATOR, "rounds": [], "episodes": []}
        )
        if not any(entry["round"] == self.round for entry in sidecar["rounds"]):
            sidecar["rounds"].append(self.round_info)
        sidecar["episodes"] += self._pending
        write_json(sidecar_path, sidecar)
        self._check(folder, expected_episodes=len(sidecar["episodes"]))
        replace_directory(folder, self.root, self.staging / "previous")
        self.committed += len(self._pending)
        self._pending = []
        self._linked = {}

    def discard(self) -> None:
        """Drop everything not committed and release the dataset (the staging folder goes)."""
        self._dataset = None
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> RolloutDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.discard()

    def _open(self) -> LeRobotDataset:
        """The staged dataset being written, staged on first use after a commit."""
        if self._dataset is not None:
            return self._dataset
        folder = self.staging / "dataset"
        if self.root.exists():
            self._linked = _stage(self.root, folder)
            with offline_if_local(folder):
                self._dataset = open_dataset_for_append(self.repo_id, folder)
        else:
            self._dataset = LeRobotDataset.create(
                repo_id=self.repo_id,
                fps=self.fps,
                features=self.features,
                root=folder,
                use_videos=False,
            )
        return self._dataset

    def _check(self, folder: Path, expected_episodes: int) -> None:
        """Refuse to commit a staged dataset that does not load whole, or that changed a linked file."""
        changed = [
            str(path) for path, identity in self._linked.items() if _identity(folder / path) != identity
        ]
        if changed:
            raise RuntimeError(
                f"LeRobot rewrote existing file(s) {changed} while appending; nothing committed"
            )
        with offline_if_local(folder):
            reloaded = LeRobotDataset(self.repo_id, root=folder)
        frames = len(reloaded.hf_dataset)
        if reloaded.meta.total_episodes != expected_episodes or frames != reloaded.meta.total_frames:
            raise RuntimeError(
                f"staged dataset {folder} is inconsistent ({reloaded.meta.total_episodes} episodes, "
                f"{expected_episodes} expected; {frames} frames readable of {reloaded.meta.total_frames}); "
                "nothing committed"
            )


def _identity(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


def _stage(root: Path, folder: Path) -> dict[Path, tuple[int, int, int]]:
    """Copy the dataset at `root` to `folder`, hard-linking LeRobot's append-only files; returns the
    linked files (relative paths) with their identity, to check after writing."""
    linked = {}
    warned = False
    for source in sorted(root.rglob("*")):
        relative = source.relative_to(root)
        target = folder / relative
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if any(relative.is_relative_to(prefix) for prefix in _APPEND_ONLY):
            try:
                os.link(source, target)
                linked[relative] = _identity(source)
                continue
            except OSError as error:
                if not warned:
                    warnings.warn(f"cannot hard-link in {root} ({error}); copying it instead", stacklevel=2)
                    warned = True
        shutil.copy2(source, target)
    return linked
