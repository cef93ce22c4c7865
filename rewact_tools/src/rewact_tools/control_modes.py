"""Who controlled the robot at each frame of a dataset: a human (or scripted corrector) or the policy.

Two records say it. robocandywrapper's episode_modes.json (found where robocandywrapper looks:
`candywrapper_plugins/dagger_data_source/`, `dagger_data_source/`, then
`candywrapper_plugins/control_mode/` under the dataset root) maps episodes to segments of frames, as
`{"<episode>": [segment, ...]}` or `{"<episode>": {"segments": [segment, ...]}}`, each segment
`{"start_index": int, "end_index": int, "mode": "human" | "policy" | "unknown"}` with frame
positions inside the episode, end inclusive. robocandywrapper's own plugin converts those positions
with the index among loaded frames, so it mislabels episode subsets; this module places them by each
frame's `frame_index`.

LeRobot's own record of the same thing is the per-frame bool feature `intervention` that
`lerobot-rollout --strategy.type=dagger` writes: True where a corrector (human or scripted) drove,
False where the policy did. A dataset with that column needs no file; it labels every frame
"human" or "policy". With both, the column labels the frames and the file must agree with it
wherever the file says "human" or "policy" (its "unknown" frames take the column's label); any
disagreement raises, naming both, since one of the two records is wrong and nothing says which.

Nothing here needs robocandywrapper, so forced-positive advantages work without it;
`rewact_tools.plugins.ControlModePlugin` serves these modes to the wrapper.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact.control_mode import INTERVENTION
from lerobot_policy_rewact.targets import episode_lengths_from_meta
from rewact_tools.returns import dataset_frames, describe_frame

CONTROL_MODES = ("human", "policy", "unknown")
# Frames no segment covers get this mode, and both flags false: not known to be human or policy.
UNRECORDED_MODE = "unknown"
EPISODE_MODES_RELATIVE_PATH = Path("candywrapper_plugins/control_mode/episode_modes.json")
# Where robocandywrapper 0.2.18 looks for the file, first match wins: two legacy places, then the
# current one.
_EPISODE_MODES_SEARCH = (
    Path("candywrapper_plugins/dagger_data_source/episode_modes.json"),
    Path("dagger_data_source/episode_modes.json"),
    EPISODE_MODES_RELATIVE_PATH,
)
_SEGMENT_KEYS = {"start_index", "end_index", "mode"}


def find_episode_modes_file(root: Path) -> Path | None:
    """The dataset's episode_modes.json, where robocandywrapper would find it, or None."""
    return next((root / path for path in _EPISODE_MODES_SEARCH if (root / path).exists()), None)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _segments(path: Path, key: str, record: Any) -> list[Any]:
    if isinstance(record, dict):
        if "segments" not in record:
            raise ValueError(
                f"{path}: episode {key}: expected a list of segments or an object with 'segments'."
            )
        record = record["segments"]
    if not isinstance(record, list):
        raise ValueError(f"{path}: episode {key}: segments must be a list, got {record!r}.")
    return record


def read_episode_modes(path: Path, episode_lengths: dict[int, int]) -> dict[int, np.ndarray]:
    """Per-frame mode (object array of str) of every episode the file lists, strictly validated.

    Raises naming the file, the episode and the segment for unknown episodes, segments outside the
    episode, overlapping segments and unknown modes.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read control modes: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object keyed by episode index, got {type(data).__name__}.")
    modes = {}
    for key, record in data.items():
        if not (key.isascii() and key.isdigit()) or int(key) not in episode_lengths:
            raise ValueError(
                f"{path}: episode {key!r} is not an episode of the dataset ({len(episode_lengths)} episodes)."
            )
        episode, length = int(key), episode_lengths[int(key)]
        per_frame = np.full(length, UNRECORDED_MODE, dtype=object)
        covered = np.zeros(length, dtype=bool)
        for position, segment in enumerate(_segments(path, key, record)):
            where = f"{path}: episode {episode}, segment {position} ({segment!r})"
            if not isinstance(segment, dict) or set(segment) != _SEGMENT_KEYS:
                raise ValueError(f"{where}: expected an object with exactly {sorted(_SEGMENT_KEYS)}.")
            first, last, mode = segment["start_index"], segment["end_index"], segment["mode"]
            if not (_is_int(first) and _is_int(last) and 0 <= first <= last < length):
                raise ValueError(
                    f"{where}: needs integers 0 <= start_index <= end_index < {length} (episode length)."
                )
            if mode not in CONTROL_MODES:
                raise ValueError(f"{where}: mode must be one of {list(CONTROL_MODES)}, got {mode!r}.")
            if covered[first : last + 1].any():
                raise ValueError(f"{where}: overlaps an earlier segment of the episode.")
            per_frame[first : last + 1] = mode
            covered[first : last + 1] = True
        modes[episode] = per_frame
    return modes


def _check_intervention_feature(dataset: LeRobotDataset) -> None:
    feature = dataset.meta.features[INTERVENTION]
    if feature.get("dtype") != "bool" or tuple(feature.get("shape", ())) not in ((1,), ()):
        raise ValueError(
            f"Dataset {dataset.repo_id} at {dataset.root}: feature {INTERVENTION!r} must be a per-frame "
            f"bool of shape (1,) (as lerobot-rollout writes it), got dtype {feature.get('dtype')!r} "
            f"and shape {feature.get('shape')!r}."
        )


def _merge_with_column(
    file_modes: np.ndarray,
    intervention: np.ndarray,
    frames: pd.DataFrame,
    path: Path | None,
    dataset: LeRobotDataset,
) -> np.ndarray:
    """The column's modes, after checking the file's known modes agree with them frame by frame."""
    column_modes = np.where(intervention, "human", "policy").astype(object)
    known = file_modes != UNRECORDED_MODE
    disagree = np.flatnonzero(known & (file_modes != column_modes))
    if len(disagree):
        row = int(disagree[0])
        raise ValueError(
            f"Dataset {dataset.repo_id}: {path} and its {INTERVENTION!r} column disagree on "
            f"{len(disagree)} frame(s); first at {describe_frame(frames, row)}: the file says "
            f"{file_modes[row]!r}, the column says {bool(intervention[row])} "
            f"({column_modes[row]!r}). Fix or remove one of them."
        )
    return column_modes


def frame_control_modes(
    dataset: LeRobotDataset, allow_missing: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """`(index, mode)`: the dataset index and control mode of every loaded frame, in loading order.

    Modes come from the `intervention` column and/or the episode_modes.json file (see the module
    docstring for how both combine). Without either source, raises unless `allow_missing` (then
    every frame is "unknown").
    """
    has_column = INTERVENTION in dataset.meta.features
    path = find_episode_modes_file(Path(dataset.root))
    if not has_control_modes(dataset) and not allow_missing:
        raise FileNotFoundError(
            f"Dataset {dataset.repo_id} at {dataset.root} has no control modes file "
            f"{EPISODE_MODES_RELATIVE_PATH} (nor a legacy dagger_data_source/episode_modes.json) and no "
            f"{INTERVENTION!r} column; pass allow_missing=True to label its frames 'unknown'."
        )
    if has_column:
        _check_intervention_feature(dataset)
    frames = dataset_frames(dataset, extra_columns=(INTERVENTION,) if has_column else ())
    mode = np.full(len(frames), UNRECORDED_MODE, dtype=object)
    if path is not None:
        lengths, _ = episode_lengths_from_meta(dataset.meta)
        modes = read_episode_modes(path, lengths)
        frame_index = frames["frame_index"].to_numpy()
        for episode, rows in frames.groupby("episode_index").indices.items():
            if int(episode) in modes:
                mode[rows] = modes[int(episode)][frame_index[rows]]
    if has_column:
        mode = _merge_with_column(mode, frames[INTERVENTION].to_numpy(dtype=bool), frames, path, dataset)
    return frames["index"].to_numpy(), mode


def has_control_modes(dataset: LeRobotDataset) -> bool:
    """Whether the dataset records who drove: an `intervention` column or an episode_modes.json file."""
    return INTERVENTION in dataset.meta.features or find_episode_modes_file(Path(dataset.root)) is not None


def human_frame_index(dataset: LeRobotDataset) -> np.ndarray | None:
    """Dataset indices of the loaded frames under human control; None when the dataset records no
    control modes at all (see `has_control_modes`)."""
    if not has_control_modes(dataset):
        return None
    index, mode = frame_control_modes(dataset)
    return index[mode == "human"]


def needs_intervention_fill(datasets: list[LeRobotDataset]) -> bool:
    """Whether some, but not all, of `datasets` record `intervention` (the wrapper would drop it)."""
    recorded = [INTERVENTION in dataset.meta.features for dataset in datasets]
    return any(recorded) and not all(recorded)
