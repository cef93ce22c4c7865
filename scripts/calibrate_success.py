#!/usr/bin/env python
"""Calibrate a RewACT checkpoint's success call on episodes with known outcomes, into the checkpoint.

    python scripts/calibrate_success.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --policy-path outputs/value_model

A reward model calls an episode a success when its predicted progress on the last frame reaches a
threshold. Final progress tends to saturate below 1 (near 0.85 on PushT), so a fixed 0.9 can call
almost nothing a success. This script predicts the progress of every frame of a dataset whose
outcomes are known (next.success or an outcomes file), picks the threshold with the best F1 of the
final-frame call, prints precision, recall and F1 at it and at the default, and writes it into the
checkpoint's config (`success_threshold`, atomically). collect_rollouts.py and
precompute_advantage.py --outcomes-from-model then use it unless --success-threshold is given.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from rewact_tools.cli import (
    add_dataset_arguments,
    add_outcomes_argument,
    add_policy_arguments,
    checkpoint_model_dir,
    load_dataset,
    load_metadata,
    load_reward_model,
    make_parser,
    run_cli,
)
from rewact_tools.distributed import is_main_process, join_launch


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_dataset_arguments(parser)
    add_policy_arguments(parser)
    add_outcomes_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.device = join_launch(args.device)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    import numpy as np

    from rewact_tools.atomic import write_json
    from rewact_tools.metrics import calibrate_success_threshold, success_detection_scores
    from rewact_tools.outcomes import DEFAULT_SUCCESS_THRESHOLD, last_frame_values, load_episode_outcomes
    from rewact_tools.values import compute_values

    meta = load_metadata(args.dataset_repo_id, args.dataset_root)
    policy, preprocessor = load_reward_model(args.policy_path, args.device)
    dataset = load_dataset(args.dataset_repo_id, args.dataset_root, meta=meta)
    outcomes = load_episode_outcomes(dataset, args.outcomes)
    known = {episode: outcome for episode, outcome in outcomes.items() if outcome is not None}
    values = compute_values(policy, dataset, args.batch_size, device=args.device, preprocessor=preprocessor)
    final = last_frame_values(values, "value", source=f"values of {args.dataset_repo_id}")
    episodes = sorted(known)
    final_values = np.array([final[episode] for episode in episodes], dtype=float)
    successes = np.array([known[episode] for episode in episodes])
    threshold = calibrate_success_threshold(final_values, successes)
    print(
        f"{len(episodes)} episodes with known outcomes ({int(successes.sum())} successes); final progress: "
        f"successes {final_values[successes].min():.3f}..{final_values[successes].max():.3f}, failures "
        f"{final_values[~successes].min():.3f}..{final_values[~successes].max():.3f}"
    )
    for name, value in (("calibrated", threshold), ("default", DEFAULT_SUCCESS_THRESHOLD)):
        scores = success_detection_scores(final_values, successes, value)
        print(
            f"{name} threshold {value:.4f}: precision {scores['precision']:.2f}, recall {scores['recall']:.2f}, "
            f"F1 {scores['f1']:.2f}"
        )
    config_path = checkpoint_model_dir(args.policy_path) / "config.json"
    config = json.loads(config_path.read_text())
    if is_main_process():
        write_json(config_path, {**config, "success_threshold": threshold})
    print(f"wrote success_threshold={threshold:.4f} into {config_path}")
    return 0


if __name__ == "__main__":
    run_cli(main, multiprocess=True)
