"""Episode outcomes (success / failure / unknown) for pi*0.6 returns.

Outcomes come from robocandywrapper's `EpisodeOutcomePlugin` file, a JSON list of
`{"episode_index": int, "outcome": "success" | "failure" | "unknown"}` under the dataset root (or
given explicitly), or else from the dataset's `next.success` column. Datasets recorded by
`lerobot-rollout` have neither; for them a RewACT reward model makes the success call
(`outcomes_from_values`). In memory an outcome is True (success), False (failure) or None
(unknown), matching `pistar_returns`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rewact_tools.atomic import write_json
from rewact_tools.returns import check_frame_table, dataset_frames

if TYPE_CHECKING:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

OUTCOMES_RELATIVE_PATH = Path("candywrapper_plugins/episode_outcome/outcomes.json")
SUCCESS_COLUMN = "next.success"
# Predicted progress on an episode's last frame at or above which a reward model calls it a success.
# High, because progress labels reach 1 only once the task is done (linear labels at 95 % of a
# successful episode, keypoint labels at the final keypoint): a failure that got part of the way
# ends at a middling progress and must not count as a success, which would also lengthen its
# task's L_max, the return normaliser.
DEFAULT_SUCCESS_THRESHOLD = 0.9
_OUTCOME_NAMES = {"success": True, "failure": False, "unknown": None}


def _outcome_name(outcome: bool | None) -> str:
    return next(name for name, value in _OUTCOME_NAMES.items() if value is outcome)


def read_outcomes_file(path: Path | str, num_episodes: int | None = None) -> dict[int, bool | None]:
    """Read and strictly validate an outcomes file; episodes it does not list are absent.

    robocandywrapper skips malformed entries with a warning; here they raise, naming the file, the
    entry and the value, because a silently dropped failure would turn into a success-free return.
    With `num_episodes`, an episode index outside 0..num_episodes-1 raises too.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of episode outcomes, got {type(data).__name__}")
    outcomes: dict[int, bool | None] = {}
    for position, entry in enumerate(data):
        where = f"{path}: entry {position} ({entry!r})"
        if not isinstance(entry, dict) or set(entry) != {"episode_index", "outcome"}:
            raise ValueError(f"{where}: expected an object with exactly 'episode_index' and 'outcome'")
        episode, outcome = entry["episode_index"], entry["outcome"]
        if not isinstance(episode, int) or isinstance(episode, bool) or episode < 0:
            raise ValueError(f"{where}: episode_index must be a non-negative integer, got {episode!r}")
        if num_episodes is not None and episode >= num_episodes:
            raise ValueError(
                f"{where}: episode {episode} does not exist; the dataset has {num_episodes} episodes"
            )
        if outcome not in _OUTCOME_NAMES:
            raise ValueError(f"{where}: outcome must be one of {sorted(_OUTCOME_NAMES)}, got {outcome!r}")
        if episode in outcomes:
            raise ValueError(f"{where}: episode {episode} is listed more than once")
        outcomes[episode] = _OUTCOME_NAMES[outcome]
    return outcomes


class MissingOutcomesError(FileNotFoundError):
    """The dataset records no episode outcomes (no outcomes file, no `next.success` column)."""


def last_frame_values(frames: pd.DataFrame, column: str, source: str) -> dict[int, object]:
    """`column` on the last frame of every (whole) episode of `frames`, by episode."""
    check_frame_table(frames, ("episode_index", "frame_index", column), source=source)
    last_frames = frames.sort_values("frame_index").groupby("episode_index").tail(1)
    return dict(sorted(zip(last_frames["episode_index"].astype(int), last_frames[column], strict=True)))


def outcomes_from_success_column(frames: pd.DataFrame, column: str = SUCCESS_COLUMN) -> dict[int, bool]:
    """An episode succeeded when `column` is true on its last frame.

    The last frame, not any frame: the pi*0.6 terminal reward sits on the last frame and describes
    how the episode ended, so an episode that reached the goal and then undid it is a failure.
    (In gym-pusht and LeRobot recordings an episode ends on success, so both readings agree there.)
    """
    if column in frames.columns and not pd.api.types.is_bool_dtype(frames[column]):
        raise TypeError(f"Column {column!r} must hold booleans, got dtype {frames[column].dtype}")
    last = last_frame_values(frames, column, source=f"column {column!r}")
    return {episode: bool(success) for episode, success in last.items()}


def outcomes_from_values(
    values: pd.DataFrame, threshold: float = DEFAULT_SUCCESS_THRESHOLD
) -> dict[int, bool]:
    """A reward model's success call: an episode succeeded when its predicted progress on its last
    frame is >= `threshold` (in RewACT's progress range, 0 < threshold <= 1).

    `values` is the table `compute_values` returns (`index, episode_index, frame_index, value`),
    with whole episodes; the last frame is read for the same reason as in `outcomes_from_success_column`.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"success threshold must lie in (0, 1] (RewACT's progress range), got {threshold}")
    last = last_frame_values(values, "value", source="values")
    bad = {episode: value for episode, value in last.items() if not 0.0 <= float(value) <= 1.0}
    if bad:
        episode, value = next(iter(bad.items()))
        raise ValueError(f"values: episode {episode} ends with value {value}, outside [0, 1]")
    return {episode: float(value) >= threshold for episode, value in last.items()}


def model_success_threshold(config: Any, given: float | None = None) -> tuple[float, str]:
    """The final progress at which a reward model calls success, and where it comes from: `given`
    (a command-line flag), else the threshold calibrated into the checkpoint's config
    (`success_threshold`, scripts/calibrate_success.py), else `DEFAULT_SUCCESS_THRESHOLD`."""
    if given is not None:
        return float(given), "given"
    calibrated = getattr(config, "success_threshold", None)
    if calibrated is not None:
        return float(calibrated), "calibrated on the checkpoint's training outcomes"
    return DEFAULT_SUCCESS_THRESHOLD, "default, not calibrated"


def episode_outcomes(
    dataset: LeRobotDataset, frames: pd.DataFrame, path: Path | str | None = None
) -> dict[int, bool | None]:
    """Outcome of every episode in `frames` (a frame table of `dataset`, carrying `next.success` when
    the dataset has it): from the outcomes file `path` when given, else from the dataset's own
    outcomes file if it has one (episodes a file does not list are unknown, None), else from
    `next.success`, else raise `MissingOutcomesError`.
    """
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"Outcomes file {path} does not exist")
    path = Path(path) if path is not None else Path(dataset.root) / OUTCOMES_RELATIVE_PATH
    if path.is_file():
        listed = read_outcomes_file(path, num_episodes=dataset.meta.total_episodes)
        return {
            int(episode): listed.get(int(episode)) for episode in sorted(frames["episode_index"].unique())
        }
    if SUCCESS_COLUMN in frames.columns:
        return outcomes_from_success_column(frames)
    raise MissingOutcomesError(
        f"Dataset {dataset.repo_id} at {dataset.root} has no episode outcomes: neither {path} "
        f"(robocandywrapper's EpisodeOutcomePlugin file) nor a {SUCCESS_COLUMN!r} column"
    )


def load_episode_outcomes(dataset: LeRobotDataset, path: Path | str | None = None) -> dict[int, bool | None]:
    """Outcome of every episode `dataset` has loaded (see `episode_outcomes`)."""
    extra = (SUCCESS_COLUMN,) if SUCCESS_COLUMN in dataset.hf_dataset.column_names else ()
    return episode_outcomes(dataset, dataset_frames(dataset, extra_columns=extra), path)


def write_episode_outcomes(root: Path | str, outcomes: Mapping[int, bool | None]) -> Path:
    """Write `outcomes` into the dataset's outcomes file, keeping episodes it does not mention.

    Atomic (temporary file in the same folder, then rename); sorted by episode, in the exact format
    robocandywrapper's `EpisodeOutcomePlugin` reads. Returns the file's path.
    """
    path = Path(root) / OUTCOMES_RELATIVE_PATH
    merged = read_outcomes_file(path) if path.exists() else {}
    for episode, outcome in outcomes.items():
        if isinstance(episode, bool) or int(episode) != episode or episode < 0:
            raise ValueError(f"Episode index must be a non-negative integer, got {episode!r}")
        if outcome not in (True, False, None):
            raise ValueError(f"Episode {episode}: outcome must be True, False or None, got {outcome!r}")
        merged[int(episode)] = None if outcome is None else bool(outcome)
    entries = [
        {"episode_index": episode, "outcome": _outcome_name(merged[episode])} for episode in sorted(merged)
    ]
    write_json(path, entries)
    return path
