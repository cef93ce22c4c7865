"""Metrics for a reward model (task-progress value) on held-out episodes (SPEC §4.8).

Each metric is a small function on arrays; `reward_model_metrics` assembles them for a per-frame
table. A metric that is undefined on the given data (no labels, one class only) is None, so the
result serialises to JSON as null rather than a misleading number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from rewact_tools.returns import check_frame_table


def value_order_correlation(values: np.ndarray, frame_indices: np.ndarray) -> float:
    """VOC: Spearman correlation of predicted values with frame order within one episode.

    +1 when the value rises monotonically through the episode. Constant predictions carry no order
    information and score 0 (Spearman itself is undefined there).
    """
    values, frame_indices = np.asarray(values, dtype=float), np.asarray(frame_indices)
    if values.shape != frame_indices.shape or values.ndim != 1 or len(values) < 2:
        raise ValueError(
            f"VOC needs two 1-D arrays of equal length >= 2, got shapes {values.shape}, {frame_indices.shape}"
        )
    if np.ptp(values) == 0:
        return 0.0
    return float(stats.spearmanr(values, frame_indices).statistic)


def value_errors(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean absolute error and root mean squared error of predicted values against labels."""
    errors = np.asarray(values, dtype=float) - np.asarray(labels, dtype=float)
    if errors.size == 0 or not np.isfinite(errors).all():
        raise ValueError("value_errors needs at least one value, and finite values and labels")
    return {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt(np.square(errors).mean()))}


def terminal_auroc(final_values: np.ndarray, successes: np.ndarray) -> float | None:
    """Area under the ROC curve of final-frame value as a success detector.

    The probability that a successful episode ends with a higher value than a failed one (ties
    count half), from the Mann-Whitney rank sum. None when only one class is present.
    """
    scores, positive = np.asarray(final_values, dtype=float), np.asarray(successes, dtype=bool)
    num_positive = int(positive.sum())
    num_negative = len(positive) - num_positive
    if num_positive == 0 or num_negative == 0:
        return None
    ranks = stats.rankdata(scores)
    rank_sum = ranks[positive].sum() - num_positive * (num_positive + 1) / 2
    return float(rank_sum / (num_positive * num_negative))


def success_detection_scores(
    final_values: np.ndarray, successes: np.ndarray, threshold: float
) -> dict[str, float]:
    """Precision, recall and F1 of "final value >= threshold" as a success prediction.

    A ratio with an empty denominator (nothing predicted, or no success present) is 0, as in
    scikit-learn's `zero_division=0`.
    """
    predicted = np.asarray(final_values, dtype=float) >= threshold
    actual = np.asarray(successes, dtype=bool)
    true_positives = int((predicted & actual).sum())
    precision = true_positives / predicted.sum() if predicted.any() else 0.0
    recall = true_positives / actual.sum() if actual.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def calibrate_success_threshold(final_values: np.ndarray, successes: np.ndarray) -> float:
    """The success threshold on final progress that best separates known outcomes (highest F1 of
    "final value >= threshold"), placed midway between the neighbouring final values.

    Why: a RewACT model's final progress tends to saturate below 1 (near 0.85 on PushT), so a fixed
    0.9 calls almost no episode a success; the training data's own outcomes say where the line lies.
    Ties in F1 go to the widest gap between neighbouring values. Needs a success and a failure.
    """
    values = np.asarray(final_values, dtype=float)
    actual = np.asarray(successes, dtype=bool)
    if values.shape != actual.shape or values.ndim != 1:
        raise ValueError(
            f"final values and successes must be 1-D of equal length, got {values.shape}, {actual.shape}"
        )
    if actual.all() or not actual.any():
        raise ValueError(
            f"calibrating a success threshold needs successful and failed episodes, got {int(actual.sum())} "
            f"successes of {len(actual)}"
        )
    if not (np.isfinite(values) & (values >= 0) & (values <= 1)).all():
        raise ValueError("final values must lie in RewACT's progress range [0, 1]")
    levels = np.unique(values)
    bounds = np.concatenate([[0.0], levels, [1.0]])
    candidates = (bounds[:-1] + bounds[1:]) / 2  # one threshold in every gap between values
    gaps = bounds[1:] - bounds[:-1]
    usable = candidates > 0  # a threshold of 0 would call every episode a success
    candidates, gaps = candidates[usable], gaps[usable]
    scores = [
        (success_detection_scores(values, actual, t)["f1"], gap, t)
        for t, gap in zip(candidates, gaps, strict=True)
    ]
    return float(max(scores)[2])


def reward_model_metrics(
    table: pd.DataFrame, outcomes: Mapping[int, bool | None], success_threshold: float = 0.5
) -> dict[str, float | int | None]:
    """All §4.8 metrics for predicted values of whole episodes.

    `table` has one row per frame with `episode_index`, `frame_index`, `value` and optionally
    `label` (the training target, for MAE/RMSE). `outcomes` gives every episode's outcome; episodes
    with an unknown outcome (None) count only for MAE/RMSE. VOC is averaged over successful episodes
    (failed ones need not progress). `success_threshold` (default: the middle of the [0, 1] value
    range) turns the final-frame value into a success prediction for precision/recall/F1.
    """
    check_frame_table(table, ("episode_index", "frame_index", "value"), source="reward model table")
    missing = sorted(int(episode) for episode in set(table["episode_index"].unique()) - set(outcomes))
    if missing:
        raise KeyError(f"No outcome given for episode(s) {missing}")
    episodes = table.sort_values(["episode_index", "frame_index"]).groupby("episode_index")
    final_values = episodes["value"].last()
    outcome = [outcomes[episode] for episode in final_values.index]
    known = np.array([value is not None for value in outcome])
    success = np.array([value is not None and bool(value) for value in outcome])

    vocs = [
        value_order_correlation(group["value"].to_numpy(), group["frame_index"].to_numpy())
        for (_, group), successful in zip(episodes, success, strict=True)
        if successful
    ]
    if "label" in table.columns:
        errors: dict[str, float | None] = dict(value_errors(table["value"], table["label"]))
    else:
        errors = {"mae": None, "rmse": None}
    if known.any():
        detection: dict[str, float | None] = dict(
            success_detection_scores(final_values[known], success[known], success_threshold)
        )
    else:
        detection = {"precision": None, "recall": None, "f1": None}
    return {
        "num_episodes": len(final_values),
        "num_successful": int(success.sum()),
        "num_failed": int((known & ~success).sum()),
        "voc_mean": float(np.mean(vocs)) if vocs else None,
        "voc_median": float(np.median(vocs)) if vocs else None,
        **errors,
        "terminal_auroc": terminal_auroc(final_values[known], success[known]),
        "success_threshold": float(success_threshold),
        **detection,
    }
