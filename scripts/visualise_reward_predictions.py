#!/usr/bin/env python
"""Show what a RewACT reward model predicts on episodes of a dataset, next to the labels.

    python scripts/visualise_reward_predictions.py --dataset-repo-id local/pusht \\
        --dataset-root data/pusht --episode-id 24 --policy-path outputs/train/checkpoints/last

Per episode (several with --episode-id 3 7 12; every episode when omitted) it writes, into
--output-dir, reward_predictions_episode_<id>.mp4 (the cameras above the predicted and labelled
value curves growing frame by frame), .png (the same curves) and .json (VOC, MAE, RMSE and the
per-frame values), and prints the metrics. Labels are the ones the policy trains on: the keypoint
sidecar where the episode is labelled, linear progress elsewhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rewact_tools.atomic import write_json
from rewact_tools.cli import (
    add_episodes_of_dataset_arguments,
    add_media_arguments,
    add_policy_arguments,
    make_parser,
    reward_model_values,
    run_cli,
    selected_episodes,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_episodes_of_dataset_arguments(parser, "show")
    add_policy_arguments(parser)
    add_media_arguments(parser, "outputs/reward_predictions", "plots and metrics")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    from tqdm import tqdm

    from rewact_tools.episode_media import write_episode_media
    from rewact_tools.plotting import Curve, PanelSpec
    from rewact_tools.reward_evaluation import episode_report, policy_labels

    meta, episodes = selected_episodes(args)
    policy, dataset, values = reward_model_values(args, meta, episodes)
    labels = policy_labels(meta, policy.config)
    config = policy.config
    for episode in tqdm(episodes, desc="episodes", unit="episode"):
        report = episode_report(values, labels, episode)
        spec = PanelSpec(
            title=f"{args.dataset_repo_id} episode {episode}: VOC {report.format('voc')}, MAE {report.format('mae')}",
            ylabel="task progress",
            ylim=(config.value_min - 0.05, config.value_max + 0.05),
        )
        curves = [
            Curve("predicted", report.values, color="tab:orange"),
            Curve("label", report.labels, color="tab:blue", linestyle="--"),
        ]
        stem = args.output_dir / f"reward_predictions_episode_{episode}"
        written = write_episode_media(dataset, episode, spec, curves, stem, video=not args.no_video)
        metrics_path = stem.with_suffix(".json")
        write_json(
            metrics_path,
            {"dataset": args.dataset_repo_id, "policy": str(args.policy_path), **report.to_json()},
        )
        tqdm.write(f"episode {episode}: {report.summary()}")
        for path in [*written, metrics_path]:
            tqdm.write(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
