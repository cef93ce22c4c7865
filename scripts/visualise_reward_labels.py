#!/usr/bin/env python
"""Show the reward labels of episodes: a PNG plot and an MP4 of the cameras above the growing curve.

    python scripts/visualise_reward_labels.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --episode-id 3 --output-dir outputs/labels

Labels are the ones RewACT trains on: the keypoint sidecar's curve where the episode is labelled,
linear progress elsewhere. Writes reward_labels_episode_<id>.png / .mp4 per episode.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rewact_tools.cli import (
    add_episodes_of_dataset_arguments,
    add_label_arguments,
    add_media_arguments,
    load_dataset,
    make_parser,
    run_cli,
    selected_episodes,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_episodes_of_dataset_arguments(parser, "show")
    add_label_arguments(parser)
    add_media_arguments(parser, "outputs/reward_labels", "PNG plots")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    from tqdm import tqdm

    from rewact_tools.episode_media import write_episode_media
    from rewact_tools.labels import (
        KEYPOINTS_RELATIVE_PATH,
        dense_reward_table,
        episode_lengths_from_meta,
        load_keypoints,
    )
    from rewact_tools.plotting import Curve, PanelSpec

    meta, episodes = selected_episodes(args)
    lengths, _ = episode_lengths_from_meta(meta)
    labels = dense_reward_table(
        meta.root, lengths, meta.fps, args.value_min, args.value_max, args.progress_start, args.progress_end
    )
    sidecar = meta.root / KEYPOINTS_RELATIVE_PATH
    keypoints = load_keypoints(sidecar, lengths, args.value_min, args.value_max) if sidecar.is_file() else {}
    dataset = load_dataset(args.dataset_repo_id, args.dataset_root, episodes, meta=meta)
    for episode in tqdm(episodes, desc="episodes", unit="episode"):
        marks = [(keypoint.frame(meta.fps), keypoint.reward) for keypoint in keypoints.get(episode, [])]
        kind = "keypoint labels" if episode in keypoints else "linear progress labels"
        spec = PanelSpec(
            title=f"{args.dataset_repo_id} episode {episode}: {kind}",
            ylabel="reward label",
            ylim=(args.value_min - 0.05, args.value_max + 0.05),
            keypoints=marks,
        )
        curve = Curve("label", labels[episode], color="tab:blue")
        stem = args.output_dir / f"reward_labels_episode_{episode}"
        for path in write_episode_media(dataset, episode, spec, [curve], stem, video=not args.no_video):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
