"""Reward-model metrics (SPEC §4.8) on hand-worked examples."""

import math

import numpy as np
import pandas as pd
import pytest

from rewact_tools.metrics import (
    reward_model_metrics,
    success_detection_scores,
    terminal_auroc,
    value_errors,
    value_order_correlation,
)


def test_voc_perfect_inverse_and_constant():
    frames = np.arange(6)
    assert value_order_correlation(np.linspace(0, 1, 6) ** 2, frames) == pytest.approx(1.0)
    assert value_order_correlation(1 - np.linspace(0, 1, 6), frames) == pytest.approx(-1.0)
    assert value_order_correlation(np.full(6, 0.4), frames) == 0.0
    shuffled = np.array([3, 0, 5, 1, 4, 2])  # rows need not be in frame order
    assert value_order_correlation(shuffled / 10, shuffled) == pytest.approx(1.0)
    # Frames 0, 1, 2 against values ranked 2, 1, 3: sum d^2 = 2, rho = 1 - 6*2 / (3*8) = 0.5.
    assert value_order_correlation(np.array([0.2, 0.1, 0.9]), np.arange(3)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="length >= 2"):
        value_order_correlation(np.array([0.5]), np.array([0]))
    with pytest.raises(ValueError, match="equal length"):
        value_order_correlation(np.zeros(3), np.arange(4))


def test_value_errors():
    errors = value_errors(np.array([0.5, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]))  # errors 0.5, 0, -1
    assert errors["mae"] == pytest.approx(0.5)
    assert errors["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    with pytest.raises(ValueError, match="finite"):
        value_errors(np.array([0.5, np.nan]), np.array([0.0, 1.0]))


def test_terminal_auroc():
    successes = np.array([True, True, False, False])
    # Pairs (success, failure): 0.9>0.3, 0.9>0.85, 0.8>0.3 right; 0.8<0.85 wrong -> 3/4.
    assert terminal_auroc(np.array([0.9, 0.8, 0.3, 0.85]), successes) == pytest.approx(0.75)
    assert terminal_auroc(np.array([0.9, 0.8, 0.3, 0.1]), successes) == pytest.approx(1.0)
    assert terminal_auroc(np.array([0.1, 0.2, 0.3, 0.4]), successes) == pytest.approx(0.0)
    assert terminal_auroc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)  # ties half
    assert terminal_auroc(np.array([0.9, 0.2]), np.array([True, True])) is None
    assert terminal_auroc(np.array([0.9, 0.2]), np.array([False, False])) is None


def test_success_detection_scores():
    final_values = np.array([0.9, 0.6, 0.4, 0.7, 0.2])
    successes = np.array([True, True, True, False, False])
    # Predicted at 0.65: episodes 0 and 3; one true positive of 2 predicted and 3 actual successes.
    scores = success_detection_scores(final_values, successes, threshold=0.65)
    assert scores == pytest.approx({"precision": 1 / 2, "recall": 1 / 3, "f1": 2 * (1 / 6) / (5 / 6)})
    scores = success_detection_scores(final_values, successes, threshold=0.6)  # >= threshold counts
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert success_detection_scores(final_values, successes, threshold=0.95) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }


def episode_table(values_by_episode: dict[int, list[float]], labels: bool = True) -> pd.DataFrame:
    rows = [
        {"episode_index": episode, "frame_index": frame, "value": value}
        for episode, values in values_by_episode.items()
        for frame, value in enumerate(values)
    ]
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    if labels:
        table["label"] = table["frame_index"] / table.groupby("episode_index")["frame_index"].transform("max")
    return table


def test_reward_model_metrics_hand_example():
    table = episode_table(
        {
            0: [0.0, 0.5, 1.0],  # success, VOC 1, exact labels, final 1.0
            1: [0.2, 0.1, 0.9],  # success, VOC 0.5, final 0.9
            2: [0.1, 0.3, 0.95],  # failure, final 0.95
            3: [0.5, 0.5, 0.5],  # unknown outcome: only in MAE/RMSE
        }
    )
    metrics = reward_model_metrics(table, {0: True, 1: True, 2: False, 3: None}, success_threshold=0.92)
    errors = np.array([0, 0, 0, 0.2, -0.4, -0.1, 0.1, -0.2, -0.05, 0.5, 0, -0.5])
    assert metrics == pytest.approx(
        {
            "num_episodes": 4,
            "num_successful": 2,
            "num_failed": 1,
            "voc_mean": 0.75,
            "voc_median": 0.75,
            "mae": np.abs(errors).mean(),
            "rmse": np.sqrt(np.square(errors).mean()),
            "terminal_auroc": 0.5,  # 1.0 > 0.95 right, 0.9 < 0.95 wrong
            "success_threshold": 0.92,
            "precision": 1 / 2,  # predicted: episodes 0 and 2
            "recall": 1 / 2,
            "f1": 1 / 2,
        }
    )


def test_reward_model_metrics_undefined_parts_are_none():
    table = episode_table({0: [0.1, 0.2], 1: [0.3, 0.2]}, labels=False)
    metrics = reward_model_metrics(table, {0: False, 1: False})
    assert metrics["mae"] is None and metrics["rmse"] is None
    assert metrics["voc_mean"] is None and metrics["voc_median"] is None
    assert metrics["terminal_auroc"] is None
    assert metrics["recall"] == 0.0
    unknown = reward_model_metrics(table, {0: None, 1: None})
    assert unknown["precision"] is None and unknown["f1"] is None


def test_reward_model_metrics_bad_input():
    table = episode_table({0: [0.1, 0.2, 0.3], 1: [0.3, 0.2]})
    with pytest.raises(KeyError, match=r"No outcome given for episode\(s\) \[1\]"):
        reward_model_metrics(table, {0: True})
    with pytest.raises(ValueError, match="episode 0 is not whole"):
        reward_model_metrics(
            table[(table["episode_index"] != 0) | (table["frame_index"] != 1)], {0: True, 1: True}
        )
    with pytest.raises(KeyError, match="missing column"):
        reward_model_metrics(table.drop(columns="value"), {0: True, 1: True})


def test_calibrated_success_threshold_separates_known_outcomes():
    """The best-F1 threshold lies midway in the widest gap between successes' and failures' final
    progress; outcomes of one kind only cannot be calibrated."""
    from rewact_tools.metrics import calibrate_success_threshold, success_detection_scores

    final = np.array([0.82, 0.85, 0.3, 0.5, 0.8])
    successes = np.array([True, True, False, False, True])
    threshold = calibrate_success_threshold(final, successes)
    assert (
        threshold == pytest.approx(0.65)
        and success_detection_scores(final, successes, threshold)["f1"] == 1.0
    )
    # A failure among the successes: the best F1 keeps every success.
    overlapping = calibrate_success_threshold(
        np.array([0.9, 0.7, 0.8, 0.2]), np.array([True, True, False, False])
    )
    assert overlapping == pytest.approx(0.45)
    with pytest.raises(ValueError, match="needs successful and failed episodes"):
        calibrate_success_threshold(final, np.ones(5, dtype=bool))
