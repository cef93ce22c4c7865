"""Reward (task-progress) labels: linear progress, keypoint labels and the keypoint sidecar file.

The policy computes its own training targets from a dataset (stock `lerobot-train` gives it nothing
else), and the tools label, plot and serve the same targets, so both share this one module. It needs
only numpy and the standard library.

Public API:
- `progress(frame, length, start, end)`: linear progress labels (SPEC 4.1), vectorised.
- `KeypointReward(reward, frame_index=None, timestamp=None)`: one labelled point of an episode.
- `dense_rewards(keypoints, length, fps, value_min, value_max)`: a value for every frame (SPEC 4.2).
- `KEYPOINTS_RELATIVE_PATH`: where the sidecar lives, relative to a dataset root.
- `load_keypoints(path, episode_lengths, value_min, value_max)` / `save_keypoints(path, ..., fps)`:
  read (validating everything) and atomically write the sidecar. Errors are `KeypointFileError`.
- `dense_reward_table(root, episode_lengths, fps, ...)`: per-episode targets of a whole dataset:
  keypoint labels where the sidecar has the episode, linear progress elsewhere.

Sidecar format (that of the original RewACT):
`{"<episode>": {"keypoints": [{"frame_index": int, "timestamp": float, "reward": float}, ...],
"fps": int}}`. An entry needs a reward and a position (`frame_index`, or `timestamp`, converted with
the episode's `fps`); when both are given they must agree. An episode with an empty keypoint list is
labelled `value_min` throughout (it is not a fallback to linear progress).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KEYPOINTS_RELATIVE_PATH = Path("rewact_extensions/reward_keypoints.json")

# A drop between consecutive keypoints larger than this fraction of the value range means the task
# was restarted: the curve holds, then jumps, instead of sliding down.
RESET_DROP_FRACTION = 0.5

_ENTRY_KEYS = frozenset({"frame_index", "timestamp", "reward"})
_EPISODE_KEYS = frozenset({"keypoints", "fps"})


def progress(frame: Any, length: Any, start: float = 0.05, end: float = 0.95) -> np.ndarray:
    """Linear progress in [0, 1]: 0 until `start` of the episode, 1 from `end` on, linear between.

    `frame` and `length` are ints or arrays (broadcast together); the position of a frame is
    `frame / (length - 1)`, and 0 in a one-frame episode. Returns float64.
    """
    if not (0.0 <= start < end <= 1.0):
        raise ValueError(f"progress needs 0 <= start < end <= 1, got start={start}, end={end}.")
    frame = np.asarray(frame, dtype=np.float64)
    length = np.asarray(length, dtype=np.float64)
    if np.any(length < 1):
        raise ValueError(f"progress needs episode lengths >= 1, got {length[length < 1][:5].tolist()}.")
    frame, length = np.broadcast_arrays(frame, length)
    outside = (frame < 0) | (frame > length - 1)
    if np.any(outside):
        raise ValueError(
            f"progress got frames outside their episodes: frames {frame[outside][:5].tolist()} "
            f"for lengths {length[outside][:5].tolist()}."
        )
    position = np.divide(frame, length - 1, out=np.zeros_like(frame), where=length > 1)
    return np.clip((position - start) / (end - start), 0.0, 1.0)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class KeypointReward:
    """A labelled point of an episode: `reward` at a frame, given by index or by time in seconds."""

    reward: float
    frame_index: int | None = None
    timestamp: float | None = None

    def __post_init__(self) -> None:
        if (self.frame_index is None) == (self.timestamp is None):
            raise ValueError(
                f"KeypointReward needs exactly one of frame_index and timestamp, got "
                f"frame_index={self.frame_index!r}, timestamp={self.timestamp!r}."
            )
        if not _is_real(self.reward) or not math.isfinite(self.reward):
            raise ValueError(f"KeypointReward reward must be a finite number, got {self.reward!r}.")
        # Normalise numpy scalars to Python numbers so keypoints compare, hash and serialise cleanly.
        object.__setattr__(self, "reward", float(self.reward))
        if self.frame_index is not None:
            if not isinstance(self.frame_index, numbers.Integral) or isinstance(self.frame_index, bool):
                raise ValueError(f"KeypointReward frame_index must be an integer, got {self.frame_index!r}.")
            if self.frame_index < 0:
                raise ValueError(f"KeypointReward frame_index must be >= 0, got {self.frame_index}.")
            object.__setattr__(self, "frame_index", int(self.frame_index))
        else:
            if not _is_real(self.timestamp) or not math.isfinite(self.timestamp) or self.timestamp < 0:
                raise ValueError(
                    f"KeypointReward timestamp must be a finite number >= 0, got {self.timestamp!r}."
                )
            object.__setattr__(self, "timestamp", float(self.timestamp))

    def frame(self, fps: float) -> int:
        """The frame this keypoint labels: `frame_index`, or the frame nearest to `timestamp`."""
        if self.frame_index is not None:
            return self.frame_index
        if not fps > 0:
            raise ValueError(f"fps must be positive to place a timestamped keypoint, got {fps!r}.")
        return int(round(self.timestamp * fps))


def _check_value_range(value_min: float, value_max: float) -> None:
    if not (math.isfinite(value_min) and math.isfinite(value_max) and value_min < value_max):
        raise ValueError(f"Need finite value_min < value_max, got [{value_min}, {value_max}].")


def _pchip_end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """Shape-preserving one-sided three-point slope at an end of the data."""
    slope = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(slope) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(slope) > 3 * abs(m0):
        return 3 * m0
    return slope


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Monotone (Fritsch–Carlson) slopes at the knots: zero at local extrema and flat spots, else
    the weighted harmonic mean of the neighbouring secants, which keeps every interval monotone."""
    h = np.diff(x)
    secant = np.diff(y) / h
    if len(x) == 2:
        return np.array([secant[0], secant[0]])
    slopes = np.zeros_like(y)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    left, right = secant[:-1], secant[1:]
    same_sign = np.sign(left) * np.sign(right) > 0
    # (w1 + w2) / (w1 / left + w2 / right), written without dividing by tiny secants.
    slopes[1:-1] = np.where(
        same_sign, (w1 + w2) * left * right / np.where(same_sign, w1 * right + w2 * left, 1.0), 0.0
    )
    slopes[0] = _pchip_end_slope(h[0], h[1], secant[0], secant[1])
    slopes[-1] = _pchip_end_slope(h[-1], h[-2], secant[-1], secant[-2])
    return slopes


def _hermite_segment(x0: int, x1: int, y0: float, y1: float, d0: float, d1: float) -> np.ndarray:
    """Values at frames x0 .. x1 - 1 of the cubic Hermite piece through (x0, y0), (x1, y1)."""
    h = x1 - x0
    t = np.arange(h, dtype=np.float64) / h
    values = (
        (1 + 2 * t) * (1 - t) ** 2 * y0
        + t * (1 - t) ** 2 * h * d0
        + t**2 * (3 - 2 * t) * y1
        + t**2 * (t - 1) * h * d1
    )
    # The piece is monotone between its ends in exact arithmetic; make rounding respect that too.
    values = np.clip(values, min(y0, y1), max(y0, y1))
    return np.maximum.accumulate(values) if y1 >= y0 else np.minimum.accumulate(values)


def _sorted_frames_and_rewards(
    keypoints: Sequence[KeypointReward], length: int, fps: float, value_min: float, value_max: float
) -> tuple[list[int], list[float]]:
    """Keypoint frames and rewards sorted by frame, after checking range, bounds and duplicates."""
    by_frame: dict[int, int] = {}
    for position, keypoint in enumerate(keypoints):
        frame = keypoint.frame(fps)
        if not value_min <= keypoint.reward <= value_max:
            raise ValueError(
                f"Keypoint {position} ({keypoint}): reward {keypoint.reward} is outside the value range "
                f"[{value_min}, {value_max}]."
            )
        if frame >= length:
            raise ValueError(
                f"Keypoint {position} ({keypoint}) falls on frame {frame}, past the end of the episode "
                f"(length {length})."
            )
        if frame in by_frame:
            raise ValueError(
                f"Keypoints {by_frame[frame]} and {position} ({keypoint}) both fall on frame {frame}."
            )
        by_frame[frame] = position
    frames = sorted(by_frame)
    return frames, [keypoints[by_frame[frame]].reward for frame in frames]


def dense_rewards(
    keypoints: Sequence[KeypointReward],
    length: int,
    fps: float,
    value_min: float = 0.0,
    value_max: float = 1.0,
) -> np.ndarray:
    """A value for every frame of an episode from its keypoints (any order), as float32 `[length]`.

    Frame 0 is `value_min` unless labelled; the last keypoint's value holds to the end. Between
    keypoints the curve is monotone piecewise-cubic (PCHIP): exact at every keypoint, never beyond
    its two neighbours. A drop of more than half the value range is a reset: the value holds until
    the later keypoint and jumps there, and interpolation starts afresh from it.
    """
    _check_value_range(value_min, value_max)
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
        raise ValueError(f"Episode length must be an integer >= 1, got {length!r}.")
    frames, rewards = _sorted_frames_and_rewards(keypoints, int(length), fps, value_min, value_max)
    if not frames or frames[0] != 0:
        frames.insert(0, 0)
        rewards.insert(0, value_min)

    x = np.asarray(frames, dtype=np.float64)
    y = np.asarray(rewards, dtype=np.float64)
    is_reset = (y[:-1] - y[1:]) > RESET_DROP_FRACTION * (value_max - value_min)
    slopes = np.zeros_like(y)
    run_bounds = np.concatenate(([0], np.flatnonzero(is_reset) + 1, [len(y)]))
    for first, stop in zip(run_bounds[:-1], run_bounds[1:], strict=True):
        if stop - first > 1:
            slopes[first:stop] = _pchip_slopes(x[first:stop], y[first:stop])

    values = np.empty(int(length), dtype=np.float64)
    for k in range(len(frames) - 1):
        x0, x1 = frames[k], frames[k + 1]
        if is_reset[k]:
            values[x0:x1] = y[k]
        else:
            values[x0:x1] = _hermite_segment(x0, x1, y[k], y[k + 1], slopes[k], slopes[k + 1])
    values[frames[-1] :] = y[-1]
    return values.astype(np.float32)


class KeypointFileError(ValueError):
    """A keypoint sidecar that cannot be read or fails validation; the message names the file,
    the episode and the entry."""


@dataclass(frozen=True)
class _EpisodeLabels:
    fps: float
    keypoints: list[KeypointReward]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise KeypointFileError(f"{path}: cannot read keypoint file: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise KeypointFileError(f"{path}: invalid JSON: {error}") from error
    if not isinstance(data, dict):
        raise KeypointFileError(
            f"{path}: top level must be an object keyed by episode index, got {type(data).__name__}."
        )
    return data


def _episode_index(path: Path, key: str) -> int:
    if not (key.isascii() and key.isdigit() and str(int(key)) == key):
        raise KeypointFileError(f"{path}: episode key {key!r} is not a non-negative integer.")
    return int(key)


def _parse_entry(where: str, entry: Any, fps: float) -> KeypointReward:
    if not isinstance(entry, dict):
        raise KeypointFileError(f"{where}: must be an object, got {entry!r}.")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise KeypointFileError(f"{where}: unknown keys {unknown} (allowed: {sorted(_ENTRY_KEYS)}).")
    if "reward" not in entry:
        raise KeypointFileError(f"{where}: missing 'reward'.")
    reward = entry["reward"]
    if not _is_real(reward) or not math.isfinite(reward):
        raise KeypointFileError(f"{where}: reward must be a finite number, got {reward!r}.")
    frame_index = entry.get("frame_index")
    timestamp = entry.get("timestamp")
    if frame_index is None and timestamp is None:
        raise KeypointFileError(f"{where}: needs 'frame_index' or 'timestamp'.")
    if timestamp is not None and (
        not _is_real(timestamp) or timestamp < 0 or not math.isfinite(timestamp * fps)
    ):
        raise KeypointFileError(f"{where}: timestamp must be a finite number >= 0, got {timestamp!r}.")
    if frame_index is None:
        frame_index = round(timestamp * fps)
    elif not isinstance(frame_index, int) or isinstance(frame_index, bool) or frame_index < 0:
        raise KeypointFileError(f"{where}: frame_index must be an integer >= 0, got {frame_index!r}.")
    elif timestamp is not None and round(timestamp * fps) != frame_index:
        raise KeypointFileError(
            f"{where}: frame_index {frame_index} disagrees with timestamp {timestamp} at {fps} fps "
            f"(frame {round(timestamp * fps)})."
        )
    return KeypointReward(reward=reward, frame_index=frame_index)


def _parse_episode(
    path: Path,
    episode: int,
    record: Any,
    episode_lengths: Mapping[int, int] | None,
    value_range: tuple[float, float] | None,
) -> _EpisodeLabels:
    where = f"{path}: episode {episode}"
    if not isinstance(record, dict):
        raise KeypointFileError(f"{where}: must be an object with 'keypoints' and 'fps', got {record!r}.")
    missing = sorted(_EPISODE_KEYS - set(record))
    if missing:
        raise KeypointFileError(f"{where}: missing {missing}.")
    unknown = sorted(set(record) - _EPISODE_KEYS)
    if unknown:
        raise KeypointFileError(f"{where}: unknown keys {unknown} (allowed: {sorted(_EPISODE_KEYS)}).")
    fps = record["fps"]
    if not _is_real(fps) or not math.isfinite(fps) or fps <= 0:
        raise KeypointFileError(f"{where}: fps must be a positive number, got {fps!r}.")
    if not isinstance(record["keypoints"], list):
        raise KeypointFileError(f"{where}: 'keypoints' must be a list, got {record['keypoints']!r}.")
    if episode_lengths is not None and episode not in episode_lengths:
        raise KeypointFileError(
            f"{where}: the dataset has no such episode ({len(episode_lengths)} episodes, indices "
            f"{min(episode_lengths, default=None)}..{max(episode_lengths, default=None)})."
        )
    by_frame: dict[int, int] = {}
    keypoints = []
    for position, entry in enumerate(record["keypoints"]):
        entry_where = f"{where}, keypoint {position}"
        keypoint = _parse_entry(entry_where, entry, fps)
        if value_range is not None and not value_range[0] <= keypoint.reward <= value_range[1]:
            raise KeypointFileError(
                f"{entry_where}: reward {keypoint.reward} is outside the value range "
                f"[{value_range[0]}, {value_range[1]}]."
            )
        if keypoint.frame_index in by_frame:
            raise KeypointFileError(
                f"{entry_where}: frame {keypoint.frame_index} is already labelled by keypoint "
                f"{by_frame[keypoint.frame_index]}."
            )
        if episode_lengths is not None and keypoint.frame_index >= episode_lengths[episode]:
            raise KeypointFileError(
                f"{entry_where}: frame {keypoint.frame_index} is past the end of the episode "
                f"(length {episode_lengths[episode]})."
            )
        by_frame[keypoint.frame_index] = position
        keypoints.append(keypoint)
    return _EpisodeLabels(fps=fps, keypoints=sorted(keypoints, key=lambda k: k.frame_index))


def _read_sidecar(
    path: Path, episode_lengths: Mapping[int, int] | None, value_range: tuple[float, float] | None
) -> tuple[dict[str, Any], dict[int, _EpisodeLabels]]:
    """The raw JSON object and its validated contents (range unchecked when `value_range` is None)."""
    data = _read_json(path)
    labels = {}
    for key, record in data.items():
        episode = _episode_index(path, key)
        labels[episode] = _parse_episode(path, episode, record, episode_lengths, value_range)
    return data, labels


def load_keypoints(
    path: str | Path,
    episode_lengths: Mapping[int, int] | None = None,
    value_min: float = 0.0,
    value_max: float = 1.0,
) -> dict[int, list[KeypointReward]]:
    """Keypoints per episode from a sidecar, validated; each carries its `frame_index`, sorted.

    With `episode_lengths` (every episode of the dataset), episodes and frames are checked against
    the dataset too.
    """
    _check_value_range(value_min, value_max)
    _, labels = _read_sidecar(Path(path), episode_lengths, (value_min, value_max))
    return {episode: record.keypoints for episode, record in labels.items()}


def _episode_record(episode: Any, keypoints: Sequence[KeypointReward], fps: float) -> dict[str, Any]:
    if isinstance(episode, bool) or not isinstance(episode, numbers.Integral) or episode < 0:
        raise ValueError(f"Episode index must be an integer >= 0, got {episode!r}.")
    by_frame: dict[int, KeypointReward] = {}
    for keypoint in keypoints:
        frame = keypoint.frame(fps)
        if frame in by_frame:
            raise ValueError(
                f"Episode {episode}: keypoints {by_frame[frame]} and {keypoint} both fall on frame {frame}."
            )
        by_frame[frame] = keypoint
    entries = [
        {"frame_index": frame, "timestamp": frame / fps, "reward": by_frame[frame].reward}
        for frame in sorted(by_frame)
    ]
    return {"keypoints": entries, "fps": fps}


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it: readers never see a partial
    file, and a failure leaves the old one as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def save_keypoints(
    path: str | Path,
    keypoints_by_episode: Mapping[int, Sequence[KeypointReward]],
    fps: int,
    clear_existing: bool = False,
) -> None:
    """Write keypoints for the given episodes (each entry with `frame_index` and `timestamp`).

    Other episodes already in the file are kept verbatim and a malformed existing file raises
    `KeypointFileError` and is left untouched; with `clear_existing` the old file is not read, only
    replaced. Reward ranges are checked on load, where the value range is known.
    """
    path = Path(path)
    if not _is_real(fps) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}.")
    data: dict[str, Any] = {}
    if path.exists() and not clear_existing:
        data, _ = _read_sidecar(path, episode_lengths=None, value_range=None)
    for episode, keypoints in keypoints_by_episode.items():
        data[str(int(episode))] = _episode_record(episode, keypoints, fps)
    ordered = {key: data[key] for key in sorted(data, key=int)}
    _write_atomically(path, json.dumps(ordered, indent=2) + "\n")


def dense_reward_table(
    root: str | Path,
    episode_lengths: Mapping[int, int],
    fps: float,
    value_min: float = 0.0,
    value_max: float = 1.0,
    start: float = 0.05,
    end: float = 0.95,
) -> dict[int, np.ndarray]:
    """Float32 targets for every episode in `episode_lengths`, from the sidecar under `root`.

    Episodes the sidecar labels get `dense_rewards`; the others (all of them when there is no
    sidecar) get linear `progress` rescaled to [value_min, value_max]. Pass the lengths of every
    episode of the dataset (not of a loaded subset): the sidecar is validated against them, and its
    fps must equal `fps`.
    """
    _check_value_range(value_min, value_max)
    path = Path(root) / KEYPOINTS_RELATIVE_PATH
    labels: dict[int, _EpisodeLabels] = {}
    if path.exists():
        _, labels = _read_sidecar(path, episode_lengths, (value_min, value_max))
    table = {}
    for episode, length in episode_lengths.items():
        if episode in labels:
            if not math.isclose(labels[episode].fps, fps):
                raise KeypointFileError(
                    f"{path}: episode {episode}: fps {labels[episode].fps} differs from the dataset's {fps}."
                )
            table[episode] = dense_rewards(labels[episode].keypoints, length, fps, value_min, value_max)
        else:
            linear = progress(np.arange(length), length, start, end)
            table[episode] = (value_min + (value_max - value_min) * linear).astype(np.float32)
    return table
