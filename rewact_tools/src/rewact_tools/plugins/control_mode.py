"""`ControlModePlugin`: who controlled the robot at each frame, from robocandywrapper's episode_modes.json.

The file (found where robocandywrapper looks: `candywrapper_plugins/dagger_data_source/`,
`dagger_data_source/`, then `candywrapper_plugins/control_mode/` under the dataset root) maps
episodes to segments of frames, as `{"<episode>": [segment, ...]}` or
`{"<episode>": {"segments": [segment, ...]}}`, each segment `{"start_index": int, "end_index": int,
"mode": "human" | "policy" | "unknown"}` with frame positions inside the episode, end inclusive.
robocandywrapper's own plugin converts those positions with the index among loaded frames, so it
mislabels episode subsets; this one places them by each frame's `frame_index`.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact.targets import episode_lengths_from_meta
from rewact_tools.candywrapper import (
    CANDYWRAPPER_PLUGINS_DIR,
    CONTROL_MODE_PLUGIN_NAME,
    ControlModeInstance,
    DatasetPlugin,
)
from rewact_tools.plugins.frames import FrameLabels, FrameLabelsInstance, loaded_frames

CONTROL_MODES = ("human", "policy", "unknown")
# Frames no segment covers get this mode, and both flags false: not known to be human or policy.
UNRECORDED_MODE = "unknown"
EPISODE_MODES_RELATIVE_PATH = Path(CANDYWRAPPER_PLUGINS_DIR) / CONTROL_MODE_PLUGIN_NAME / "episode_modes.json"
_SEGMENT_KEYS = {"start_index", "end_index", "mode"}


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


def control_mode_labels(dataset: LeRobotDataset, allow_missing: bool = False) -> FrameLabels:
    """`control_mode` (str), `control_mode_autonomous` and `control_mode_human` (bool) per loaded frame."""
    lengths, _ = episode_lengths_from_meta(dataset.meta)
    path = ControlModeInstance.find_episode_modes_file(Path(dataset.root))
    if path is None and not allow_missing:
        raise FileNotFoundError(
            f"Dataset {dataset.repo_id} at {dataset.root} has no control modes file "
            f"{EPISODE_MODES_RELATIVE_PATH} (nor a legacy dagger_data_source/episode_modes.json); "
            "pass allow_missing=True to label its frames 'unknown'."
        )
    modes = read_episode_modes(path, lengths) if path is not None else {}
    frames = loaded_frames(dataset)
    mode = np.full(len(frames), UNRECORDED_MODE, dtype=object)
    frame_index = frames["frame_index"].to_numpy()
    for episode, rows in frames.groupby("episode_index").indices.items():
        if int(episode) in modes:
            mode[rows] = modes[int(episode)][frame_index[rows]]
    values = {
        "control_mode": mode,
        "control_mode_autonomous": mode == "policy",
        "control_mode_human": mode == "human",
    }
    return FrameLabels(frames["index"].to_numpy(), values)


class ControlModePlugin(DatasetPlugin):
    """Adds `control_mode` (str: "human", "policy" or "unknown"), `control_mode_autonomous` (bool,
    mode is "policy") and `control_mode_human` (bool, mode is "human") to every frame.

    Frames no segment covers, and all frames of episodes the file does not list, are "unknown" with
    both flags false. A dataset without the file raises unless `allow_missing` (then all "unknown").
    """

    def __init__(self, allow_missing: bool = False):
        self.allow_missing = allow_missing

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        return FrameLabelsInstance(dataset, control_mode_labels(dataset, self.allow_missing))
