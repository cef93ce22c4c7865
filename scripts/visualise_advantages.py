#!/usr/bin/env python
"""Show the advantages precompute_advantage.py wrote: per episode a PNG plot and an MP4.

    python scripts/visualise_advantages.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --episode-id 3 --output-dir outputs/advantages

Each shows the raw advantage per frame, the task's threshold band (any threshold inside it splits
the frames the same way) and the frames marked positive, shaded; the MP4 puts the cameras above the
curve growing frame by frame. Writes advantages_episode_<id>.png / .mp4 per episode.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.advantage_display import ADVANTAGES_RELATIVE_PATH
from rewact_tools.cli import (
    add_episodes_of_dataset_arguments,
    add_media_arguments,
    load_dataset,
    make_parser,
    run_cli,
    selected_episodes,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_episodes_of_dataset_arguments(parser, "show")
    parser.add_argument(
        "--advantages",
        type=Path,
        help=f"advantages parquet (default: <dataset root>/{ADVANTAGES_RELATIVE_PATH})",
    )
    add_media_arguments(parser, "outputs/advantages", "PNG plots")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    from tqdm import tqdm

    from rewact_tools.advantage_display import check_matches_dataset, threshold_band
    from rewact_tools.advantages import read_advantages
    from rewact_tools.episode_media import write_episode_media
    from rewact_tools.labels import episode_lengths_from_meta
    from rewact_tools.plotting import Curve, PanelSpec

    meta, episodes = selected_episodes(args)
    path = args.advantages if args.advantages is not None else Path(meta.root) / ADVANTAGES_RELATIVE_PATH
    table = read_advantages(path)
    check_matches_dataset(table, episode_lengths_from_meta(meta)[0], path)
    dataset = load_dataset(args.dataset_repo_id, args.dataset_root, episodes, meta=meta)
    for episode in tqdm(episodes, desc="episodes", unit="episode"):
        rows = table[table["episode_index"] == episode].sort_values("frame_index")
        task = int(rows["task_index"].iloc[0])
        positive = rows["positive"].to_numpy()
        spec = PanelSpec(
            title=f"{args.dataset_repo_id} episode {episode}: {positive.mean():.0%} of frames positive",
            ylabel="advantage (normalised return scale)",
            threshold_band=threshold_band(table, task),
            positive=positive,
        )
        curve = Curve("advantage", rows["advantage"].to_numpy(), color="tab:purple")
        stem = args.output_dir / f"advantages_episode_{episode}"
        for written in write_episode_media(dataset, episode, spec, [curve], stem, video=not args.no_video):
            tqdm.write(f"wrote {written}")
    return 0


if __name__ == "__main__":
    run_cli(main)
