"""Predicted values of a reward model against the labels it was trained on, per episode.

Shared by the prediction-visualisation and evaluation scripts: the labels come from the same
functions the policy builds its training targets with, and the metrics from `rewact_tools.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rewact_tools.labels import dense_reward_table, episode_lengths_from_meta, progress
from rewact_tools.metrics import value_errors, value_order_correlation
from rewact_tools.outcomes import load_episode_outcomes

ASSUMED_SUCCESS = "none found: every episode counted as successful"


def policy_labels(meta: Any, config: Any) -> dict[int, np.ndarray]:
    """The value targets a RewACT `config` trains on, for every episode of the dataset `meta`.

    Linear progress when the policy was configured for it, else the keypoint sidecar's labels where
    the dataset has them and linear progress elsewhere.
    """
    lengths, _ = episode_lengths_from_meta(meta)
    if config.reward_source == "progress":
        span = config.value_max - config.value_min
        return {
            episode: (
                config.value_min
                + span * progress(np.arange(n), n, config.progress_start, config.progress_end)
            ).astype(np.float32)
            for episode, n in lengths.items()
        }
    return dense_reward_table(
        meta.root,
        lengths,
        meta.fps,
        config.value_min,
        config.value_max,
        config.progress_start,
        config.progress_end,
    )


def with_labels(values: pd.DataFrame, labels: dict[int, np.ndarray]) -> pd.DataFrame:
    """`values` (a `compute_values` table) with a `label` column looked up by episode and frame."""
    table = values.copy()
    table["label"] = [
        float(labels[int(episode)][int(frame)])
        for episode, frame in zip(table["episode_index"], table["frame_index"], strict=True)
    ]
    return table


@dataclass(frozen=True)
class EpisodeReport:
    """Predicted values and labels of one episode, and how well they agree."""

    episode: int
    values: np.ndarray
    labels: np.ndarray
    voc: float | None
    mae: float
    rmse: float

    def format(self, metric: str) -> str:
        value = getattr(self, metric)
        return "n/a" if value is None else f"{value:.3f}"

    def summary(self) -> str:
        return (
            f"{len(self.values)} frames, VOC {self.format('voc')}, MAE {self.format('mae')}, "
            f"RMSE {self.format('rmse')}, final value {self.values[-1]:.3f} (label {self.labels[-1]:.3f})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_index": self.episode,
            "num_frames": len(self.values),
            "voc": self.voc,
            "mae": self.mae,
            "rmse": self.rmse,
            "final_value": float(self.values[-1]),
            "final_label": float(self.labels[-1]),
            "values": [round(float(v), 6) for v in self.values],
            "labels": [round(float(v), 6) for v in self.labels],
        }


def episode_report(values: pd.DataFrame, labels: dict[int, np.ndarray], episode: int) -> EpisodeReport:
    """Metrics of `episode` from a `compute_values` table and the episode labels."""
    rows = values[values["episode_index"] == episode].sort_values("frame_index")
    if rows.empty:
        raise KeyError(f"no predicted values for episode {episode}")
    predicted = rows["value"].to_numpy(dtype=np.float64)
    target = np.asarray(labels[episode], dtype=np.float64)[rows["frame_index"].to_numpy()]
    voc = value_order_correlation(predicted, rows["frame_index"].to_numpy()) if len(rows) > 1 else None
    errors = value_errors(predicted, target)
    if voc is not None and not math.isfinite(voc):
        voc = None
    return EpisodeReport(episode, predicted, target, voc, errors["mae"], errors["rmse"])


def episode_outcomes(dataset: Any, episodes: list[int], require: bool) -> tuple[dict[int, bool | None], str]:
    """Outcome per episode and where it came from.

    A dataset without outcomes (no robocandywrapper file, no `next.success`) is usually a set of
    demonstrations, so every episode counts as successful, and the returned source says so; with
    `require` that raises instead.
    """
    try:
        return load_episode_outcomes(dataset), "dataset"
    except FileNotFoundError:
        if require:
            raise
        return dict.fromkeys(episodes, True), ASSUMED_SUCCESS


def format_metrics(metrics: dict[str, Any]) -> str:
    """`name  value` lines, floats to four decimals, undefined metrics as n/a."""
    width = max(len(name) for name in metrics)

    def shown(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    return "\n".join(f"{name:<{width}}  {shown(value)}" for name, value in metrics.items())
