#!/usr/bin/env python
"""Score a RewACT reward model on episodes of a dataset (SPEC §4.8), as a table and a JSON file.

    python scripts/evaluate_reward_model.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --policy-path outputs/train/checkpoints/last --episode-id 40 41 42 --output metrics.json

Metrics: VOC (Spearman of value vs frame order, per successful episode; mean and median), MAE and
RMSE against the labels the policy trains on, terminal-success AUROC of the final-frame value, and
success-detection precision/recall/F1 at --success-threshold. Episode outcomes come from
robocandywrapper's outcomes file or the dataset's next.success column; a dataset with neither counts
every episode as successful (said in the output), or fails with --require-outcomes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.atomic import write_json
from rewact_tools.cli import (
    add_episodes_of_dataset_arguments,
    add_policy_arguments,
    make_parser,
    reward_model_values,
    run_cli,
    selected_episodes,
)
from rewact_tools.distributed import is_main_process, join_launch


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_episodes_of_dataset_arguments(parser, "evaluate")
    add_policy_arguments(parser)
    parser.add_argument(
        "--output", type=Path, default=Path("outputs/reward_model_metrics.json"), help="JSON file to write"
    )
    parser.add_argument(
        "--success-threshold",
        type=float,
        help="final value at or above which an episode counts as detected success (default: middle of the value range)",
    )
    parser.add_argument(
        "--require-outcomes",
        action="store_true",
        help="fail when the dataset has no episode outcomes instead of counting every episode as successful",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.device = join_launch(args.device)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    from rewact_tools.metrics import reward_model_metrics
    from rewact_tools.reward_evaluation import (
        episode_outcomes,
        episode_report,
        format_metrics,
        policy_labels,
        with_labels,
    )

    meta, episodes = selected_episodes(args)
    policy, dataset, values = reward_model_values(args, meta, episodes)
    outcomes, outcome_source = episode_outcomes(dataset, episodes, args.require_outcomes)
    labels = policy_labels(meta, policy.config)
    config = policy.config
    threshold = (
        args.success_threshold
        if args.success_threshold is not None
        else (config.value_min + config.value_max) / 2
    )
    metrics = reward_model_metrics(with_labels(values, labels), outcomes, success_threshold=threshold)
    per_episode = []
    for episode in episodes:
        report = episode_report(values, labels, episode).to_json()
        del report["values"], report["labels"]
        per_episode.append({**report, "outcome": outcomes[episode]})

    print(f"reward model {args.policy_path} on {args.dataset_repo_id}, {len(episodes)} episode(s)")
    print(f"episode outcomes: {outcome_source}")
    print(format_metrics(metrics))
    if is_main_process():
        write_json(
            args.output,
            {
                "dataset": args.dataset_repo_id,
                "policy": str(args.policy_path),
                "episodes": episodes,
                "outcome_source": outcome_source,
                "metrics": metrics,
                "per_episode": per_episode,
            },
        )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main, multiprocess=True)
