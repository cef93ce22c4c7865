"""Keypoint labels as a person writes them: a JSON config file or `FRAME:REWARD` flags.

The config file has the original RewACT labelling format:
`{"repo_id": "...", "episodes": {"<episode>": {"keypoints": [{"frame_index": 40, "reward": 0.5},
{"timestamp": 8.0, "reward": 1.0}]}}}` (`repo_id` optional). Positions are frames or seconds; both may
be given when they agree at the dataset's fps. Errors name the file, episode and entry.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lerobot_policy_rewact.reward_labels import KeypointReward, dense_rewards

_CONFIG_KEYS = {"repo_id", "episodes"}
_EPISODE_KEYS = {"keypoints"}
_ENTRY_KEYS = {"frame_index", "timestamp", "reward"}


class KeypointConfigError(ValueError):
    """A keypoint config or flag that cannot be used; the message says where and why."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _entry(where: str, entry: Any, fps: float) -> KeypointReward:
    if not isinstance(entry, dict):
        raise KeypointConfigError(f"{where}: must be an object, got {entry!r}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise KeypointConfigError(f"{where}: unknown keys {unknown} (allowed: {sorted(_ENTRY_KEYS)})")
    reward, frame, seconds = entry.get("reward"), entry.get("frame_index"), entry.get("timestamp")
    if not _is_number(reward):
        raise KeypointConfigError(f"{where}: 'reward' must be a finite number, got {reward!r}")
    if frame is None and seconds is None:
        raise KeypointConfigError(f"{where}: needs 'frame_index' or 'timestamp'")
    if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame < 0):
        raise KeypointConfigError(f"{where}: 'frame_index' must be an integer >= 0, got {frame!r}")
    if seconds is not None and (not _is_number(seconds) or seconds < 0):
        raise KeypointConfigError(f"{where}: 'timestamp' must be a number >= 0, got {seconds!r}")
    if frame is not None and seconds is not None and round(seconds * fps) != frame:
        raise KeypointConfigError(
            f"{where}: frame_index {frame} disagrees with timestamp {seconds} s at {fps} fps "
            f"(frame {round(seconds * fps)})"
        )
    if frame is None:
        return KeypointReward(reward=float(reward), timestamp=float(seconds))
    return KeypointReward(reward=float(reward), frame_index=frame)


def _episode_key(where: str, key: str) -> int:
    if not (key.isascii() and key.isdigit()):
        raise KeypointConfigError(f"{where}: episode key {key!r} is not a non-negative integer")
    return int(key)


def read_keypoint_config(path: Path, fps: float) -> tuple[str | None, dict[int, list[KeypointReward]]]:
    """The config's `repo_id` (None when absent) and keypoints per episode."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise KeypointConfigError(f"{path}: cannot read the keypoint config: {error.strerror}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KeypointConfigError(f"{path}: invalid JSON: {error}") from error
    if not isinstance(data, dict):
        raise KeypointConfigError(f"{path}: must be a JSON object with 'episodes', got {type(data).__name__}")
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise KeypointConfigError(f"{path}: unknown keys {unknown} (allowed: {sorted(_CONFIG_KEYS)})")
    repo_id = data.get("repo_id")
    if repo_id is not None and not isinstance(repo_id, str):
        raise KeypointConfigError(f"{path}: 'repo_id' must be a string, got {repo_id!r}")
    episodes = data.get("episodes")
    if not isinstance(episodes, dict) or not episodes:
        raise KeypointConfigError(f"{path}: 'episodes' must be a non-empty object keyed by episode index")
    labels: dict[int, list[KeypointReward]] = {}
    for key, record in episodes.items():
        episode = _episode_key(str(path), key)
        where = f"{path}: episode {episode}"
        if not isinstance(record, dict) or not isinstance(record.get("keypoints"), list):
            raise KeypointConfigError(f"{where}: must be an object with a 'keypoints' list, got {record!r}")
        unknown = sorted(set(record) - _EPISODE_KEYS)
        if unknown:
            raise KeypointConfigError(f"{where}: unknown keys {unknown} (allowed: {sorted(_EPISODE_KEYS)})")
        labels[episode] = [
            _entry(f"{where}: keypoint {position}", entry, fps)
            for position, entry in enumerate(record["keypoints"])
        ]
    return repo_id, labels


def parse_keypoint_flag(text: str) -> KeypointReward:
    """`FRAME:REWARD` (e.g. `40:0.5`) or `SECONDSs:REWARD` (e.g. `4.0s:0.5`)."""
    position, separator, reward = text.partition(":")
    try:
        if not separator:
            raise ValueError
        value = float(reward)
        if position.endswith("s"):
            return KeypointReward(reward=value, timestamp=float(position[:-1]))
        return KeypointReward(reward=value, frame_index=int(position))
    except ValueError as error:
        detail = f" ({error})" if str(error) else ""
        raise KeypointConfigError(
            f"--keypoint {text!r}: expected FRAME:REWARD (e.g. 40:0.5) or SECONDSs:REWARD (e.g. 4.0s:0.5){detail}"
        ) from error


def dense_labels(
    keypoints_by_episode: Mapping[int, list[KeypointReward]],
    lengths: Mapping[int, int],
    fps: float,
    value_min: float,
    value_max: float,
    source: str,
) -> dict[int, np.ndarray]:
    """Dense values per labelled episode; raises naming `source` and the episode on bad keypoints."""
    dense = {}
    for episode, keypoints in sorted(keypoints_by_episode.items()):
        if episode not in lengths:
            raise KeypointConfigError(
                f"{source}: episode {episode} does not exist; the dataset has episodes "
                f"{min(lengths)}..{max(lengths)}"
            )
        try:
            dense[episode] = dense_rewards(keypoints, lengths[episode], fps, value_min, value_max)
        except ValueError as error:
            raise KeypointConfigError(f"{source}: episode {episode}: {error}") from error
    return dense


def sampled_values(values: np.ndarray, samples: int = 11) -> str:
    """`frame=value` pairs at `samples` evenly spaced frames (the first and last included)."""
    frames = np.unique(np.linspace(0, len(values) - 1, min(samples, len(values))).round().astype(int))
    return " ".join(f"{frame}={values[frame]:.3f}" for frame in frames)
