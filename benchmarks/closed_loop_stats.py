"""Statistics of closed-loop evaluations: means over seeds x episodes with hierarchical bootstrap
intervals, and paired differences between arms evaluated on the same episodes.

An evaluation (`common.evaluate_pusht`'s result) lists, per episode, whether it succeeded, its
maximum coverage and how many environment steps it took. Every metric is a statistic of those
per-episode rows, so one bootstrap serves them all, ratios included:
  success_rate               successes / episodes
  mean_max_coverage          mean of the episodes' maximum coverage
  successes_per_1000_steps   1000 x successes / environment steps (throughput: a policy that
                             succeeds faster completes more tasks in the same time)
  steps_to_success           mean steps of the successful episodes (lower is faster)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

BOOTSTRAP_RESAMPLES = 4000
_RESAMPLES_PER_BLOCK = 500
"""Resamples drawn at once: (block, seeds x episodes, columns) floats, a few MB at most."""
_SUCCESS, _COVERAGE, _STEPS = 0, 1, 2


def _steps_to_success(rows: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rows[..., _SUCCESS] * rows[..., _STEPS]).sum(axis=-1) / rows[..., _SUCCESS].sum(axis=-1)


METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "success_rate": lambda rows: rows[..., _SUCCESS].mean(axis=-1),
    "mean_max_coverage": lambda rows: rows[..., _COVERAGE].mean(axis=-1),
    "successes_per_1000_steps": lambda rows: (
        1000.0 * rows[..., _SUCCESS].sum(axis=-1) / rows[..., _STEPS].sum(axis=-1)
    ),
    "steps_to_success": _steps_to_success,
}
"""Each metric of episode rows `(..., episodes, 3)`, over any leading axes (NaN where undefined:
steps to success without a success), so a whole block of bootstrap resamples is one call."""


def episode_rows(evaluation: Mapping) -> np.ndarray:
    """(episodes, 3) array of an evaluation: success (0/1), maximum coverage, environment steps."""
    return np.stack(
        [
            np.asarray(evaluation["successes"], dtype=float),
            np.asarray(evaluation["max_coverages"], dtype=float),
            np.asarray(evaluation["steps"], dtype=float),
        ],
        axis=1,
    )


def bootstrap_interval(
    per_seed: list[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
) -> list[float] | None:
    """95 % percentile interval of `statistic` under resampling seeds, then episodes within each seed.

    `per_seed` holds one array per training seed whose rows are evaluation episodes (the same
    episodes, in the same order, for every arm); `statistic` takes blocks of resamples, each the
    resampled rows of all seeds stacked. Resamples where the statistic is undefined (NaN: steps to
    success without a success) are left out; None when every one is.
    """
    lengths = sorted({len(rows) for rows in per_seed})
    if len(lengths) != 1:
        raise ValueError(f"every training seed needs the same evaluation episodes, got {lengths} episodes")
    data = np.stack(per_seed)
    n_seeds, n_episodes = data.shape[:2]
    estimates = []
    for block in range(0, BOOTSTRAP_RESAMPLES, _RESAMPLES_PER_BLOCK):
        size = min(_RESAMPLES_PER_BLOCK, BOOTSTRAP_RESAMPLES - block)
        seeds = rng.integers(n_seeds, size=(size, n_seeds, 1))
        episodes = rng.integers(n_episodes, size=(size, n_seeds, n_episodes))
        samples = data[seeds, episodes].reshape(size, n_seeds * n_episodes, *data.shape[2:])
        estimates.append(statistic(samples))
    estimates = np.concatenate(estimates)
    if np.isnan(estimates).all():
        return None
    low, high = np.nanpercentile(estimates, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def paired_difference(
    rows: list[np.ndarray], reference_rows: list[np.ndarray], metric: str, rng: np.random.Generator
) -> dict:
    """`metric` of an arm minus the reference's, evaluated on the same episodes of each seed: the
    mean, its 95 % interval (seeds and episodes resampled together, keeping the pairs) and whether
    that interval excludes 0."""
    statistic = METRICS[metric]
    paired = [np.stack([a, b], axis=-2) for a, b in zip(rows, reference_rows, strict=True)]

    def difference(sample: np.ndarray) -> np.ndarray:
        return statistic(sample[..., 0, :]) - statistic(sample[..., 1, :])

    interval = bootstrap_interval(paired, difference, rng)
    return {
        "mean": _rounded(difference(np.concatenate(paired))),
        "ci95": interval,
        "larger_than_interval": interval is not None and (interval[0] > 0 or interval[1] < 0),
    }


def paired_differences(evaluations: list[Mapping], references: list[Mapping]) -> dict:
    """Every metric's `paired_difference` of two arms' evaluations, listed in the same seed order."""
    rng = np.random.default_rng(0)
    rows, reference_rows = [episode_rows(e) for e in evaluations], [episode_rows(e) for e in references]
    return {metric: paired_difference(rows, reference_rows, metric, rng) for metric in METRICS}


def summarise(per_seed: Mapping[str, Mapping[str, Mapping]], reference: str | None) -> dict:
    """Per arm: every metric over seeds x episodes with its 95 % interval and per-seed values, and
    (when `reference` is one of the arms) the paired difference from it, with its interval and
    whether that interval excludes 0, plus the share of the reference's failures the arm removes.

    `per_seed[seed][arm]` is the arm's evaluation with that training seed.
    """
    seeds = sorted(per_seed)
    arms = list(per_seed[seeds[0]])
    rows = {arm: [episode_rows(per_seed[seed][arm]) for seed in seeds] for arm in arms}
    rng = np.random.default_rng(0)
    summary = {}
    for arm in arms:
        entry: dict = {"seeds": len(seeds), "episodes_per_seed": len(rows[arm][0])}
        for metric, statistic in METRICS.items():
            entry[metric] = {
                "mean": _rounded(statistic(np.concatenate(rows[arm]))),
                "ci95": bootstrap_interval(rows[arm], statistic, rng),
                "per_seed": [_rounded(statistic(seed_rows)) for seed_rows in rows[arm]],
            }
            if reference in arms and arm != reference:
                entry[metric]["minus_" + reference] = paired_difference(
                    rows[arm], rows[reference], metric, rng
                )
        if reference in arms:
            failures = 1.0 - entry["success_rate"]["mean"]
            reference_failures = 1.0 - float(METRICS["success_rate"](np.concatenate(rows[reference])))
            entry["failure_cut_vs_" + reference] = (
                round(1.0 - failures / reference_failures, 4) if reference_failures > 0 else None
            )
        summary[arm] = entry
    return summary


def format_difference(difference: dict) -> str:
    """A paired difference as printed: mean, 95 % interval, and `*` when the interval excludes 0."""
    return f"{difference['mean']} {difference['ci95']}" + (" *" if difference["larger_than_interval"] else "")


def print_summary(summary: dict, reference: str) -> None:
    """One row per arm: success, coverage and throughput with their 95 % intervals, failure cut."""
    columns = ("success_rate", "mean_max_coverage", "successes_per_1000_steps", "steps_to_success")
    print(f"{'arm':<24}" + "".join(f"{name:>28}" for name in columns) + f"{'fail cut':>10}")
    for label, entry in summary.items():
        cells = []
        for name in columns:
            metric = entry[name]
            interval = "[-]" if metric["ci95"] is None else "[{:.3f}, {:.3f}]".format(*metric["ci95"])
            cells.append(
                f"{'-' if metric['mean'] is None else format(metric['mean'], '.3f'):>10} {interval:>17}"
            )
        cut = None if label == reference else entry.get(f"failure_cut_vs_{reference}")
        print(f"{label:<24}" + "".join(cells) + ("" if cut is None else f"{cut:>10.2f}"))
