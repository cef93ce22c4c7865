#!/usr/bin/env python
"""Write RewACT's predicted progress of every frame as LeRobot's RA-BC progress file (SPEC §4.9).

    python scripts/compute_rabc_progress.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --policy-path outputs/reward_model

LeRobot 0.6's reward-aligned behaviour cloning then weights any policy's training by it:

    lerobot-train --dataset.repo_id=local/pusht --dataset.root=data/pusht --policy.type=... \\
        --sample_weighting.type=rabc --sample_weighting.head_mode=rewact

Each sample's weight grows with the progress gained over the next chunk_size frames of the policy
being trained; frames whose progress falls get weight 0. The values come from the checkpoint, batched
(compute_values), normalised by the checkpoint's own pre-processor, rescaled to [0, 1] when the value
range is not. The parquet (index, episode_index, frame_index, progress_rewact) is written atomically,
by default to <dataset root>/sarm_progress.parquet, where LeRobot looks for it; elsewhere, pass its
path as --sample_weighting.progress_path. An existing file is replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.cli import (
    add_dataset_arguments,
    add_policy_arguments,
    load_dataset,
    load_metadata,
    load_reward_model,
    make_parser,
    positive_int,
    run_cli,
)
from rewact_tools.distributed import is_main_process, join_launch
from rewact_tools.rabc import DEFAULT_PROGRESS_FILE, HEAD_MODE, check_writable


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_dataset_arguments(parser)
    add_policy_arguments(parser)
    parser.add_argument(
        "--output", type=Path, help=f"parquet to write (default: <dataset root>/{DEFAULT_PROGRESS_FILE})"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        help="look-ahead of the summary's falling-progress count: the chunk_size of the policy you "
        "will train (default: the checkpoint's)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.device = join_launch(args.device)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    from rewact_tools.rabc import progress_summary, progress_table, write_progress_file
    from rewact_tools.values import compute_values

    meta = load_metadata(args.dataset_repo_id, args.dataset_root)
    output = args.output if args.output is not None else Path(meta.root) / DEFAULT_PROGRESS_FILE
    if is_main_process():
        check_writable(output, args.overwrite)
    policy, preprocessor = load_reward_model(args.policy_path, args.device)
    dataset = load_dataset(args.dataset_repo_id, args.dataset_root, meta=meta)
    values = compute_values(policy, dataset, args.batch_size, device=args.device, preprocessor=preprocessor)
    table = progress_table(values, policy.config.value_min, policy.config.value_max)
    if is_main_process():
        write_progress_file(table, output, overwrite=args.overwrite)

    summary = progress_summary(table, args.chunk_size or policy.config.chunk_size)
    print(json.dumps(summary, indent=2))
    print(
        f"{summary['falling_fraction']:.1%} of the frames lose progress within {summary['chunk_size']} "
        "frames: RA-BC gives them weight 0"
    )
    print(f"wrote {output}")
    flags = f"--sample_weighting.type=rabc --sample_weighting.head_mode={HEAD_MODE}"
    if output.resolve() != (Path(meta.root) / DEFAULT_PROGRESS_FILE).resolve():
        flags += f" --sample_weighting.progress_path={output}"
    print(f"train with: lerobot-train ... {flags}")
    return 0


if __name__ == "__main__":
    run_cli(main, multiprocess=True)
