#!/usr/bin/env python
"""Write keypoint reward labels into a dataset's sidecar (rewact_extensions/reward_keypoints.json).

From a JSON config in the original RewACT format:
    python scripts/label_rewards.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --config labels.json
or from flags, one episode at a time:
    python scripts/label_rewards.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --episode 3 --keypoint 40:0.5 --keypoint 80:1.0

Between keypoints the labels follow a monotone cubic curve (PCHIP); frame 0 is 0 unless labelled
and the last keypoint holds to the end. Prints sampled dense values of every labelled episode.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.cli import (
    CliError,
    add_dataset_arguments,
    add_label_arguments,
    load_metadata,
    make_parser,
    run_cli,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_dataset_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="JSON file with keypoints of one or more episodes")
    source.add_argument("--episode", type=int, help="episode to label with --keypoint flags")
    parser.add_argument(
        "--keypoint",
        action="append",
        default=[],
        metavar="FRAME:REWARD",
        help="a keypoint of --episode: FRAME:REWARD (40:0.5) or SECONDSs:REWARD (4.0s:0.5); repeatable",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and print, write nothing")
    parser.add_argument(
        "--clear-existing",
        action="store_true",
        help="replace the whole sidecar (default: keep the labels of episodes not given here)",
    )
    add_label_arguments(parser, progress=False)
    args = parser.parse_args(argv)
    if args.episode is not None and not args.keypoint:
        parser.error("--episode needs at least one --keypoint FRAME:REWARD")
    if args.config is not None and args.keypoint:
        parser.error("--keypoint goes with --episode, not with --config")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    from rewact_tools.keypoint_config import (
        dense_labels,
        parse_keypoint_flag,
        read_keypoint_config,
        sampled_values,
    )
    from rewact_tools.labels import (
        KEYPOINTS_RELATIVE_PATH,
        episode_lengths_from_meta,
        load_keypoints,
        save_keypoints,
    )

    meta = load_metadata(args.dataset_repo_id, args.dataset_root)
    lengths, _ = episode_lengths_from_meta(meta)
    if args.config is not None:
        config_repo_id, keypoints = read_keypoint_config(args.config, meta.fps)
        if config_repo_id is not None and config_repo_id != args.dataset_repo_id:
            raise CliError(
                f"{args.config} labels dataset {config_repo_id!r}, not --dataset-repo-id {args.dataset_repo_id!r}"
            )
        source = str(args.config)
    else:
        keypoints = {args.episode: [parse_keypoint_flag(text) for text in args.keypoint]}
        source = "--keypoint flags"
    dense = dense_labels(keypoints, lengths, meta.fps, args.value_min, args.value_max, source)

    for episode, values in dense.items():
        print(
            f"episode {episode} (length {len(values)}, {len(keypoints[episode])} keypoint(s)): {sampled_values(values)}"
        )
    path = Path(meta.root) / KEYPOINTS_RELATIVE_PATH
    if path.exists() and not args.clear_existing:
        # The labels kept from the existing sidecar must fit this dataset too.
        load_keypoints(path, lengths, args.value_min, args.value_max)
    if args.dry_run:
        print(f"dry run: {path} left unchanged")
        return 0
    save_keypoints(path, keypoints, fps=meta.fps, clear_existing=args.clear_existing)
    print(f"wrote labels of {len(dense)} episode(s) to {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
