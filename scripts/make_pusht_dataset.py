#!/usr/bin/env python
"""Generate the built-in PushT dataset: scripted pushing in gym-pusht, written as a local LeRobot dataset.

Examples:
    python scripts/make_pusht_dataset.py --root data/pusht_clean --episodes 60
    python scripts/make_pusht_dataset.py --root data/pusht_mixed --mix clean=40,noisy=20,detour=20,giveup=20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rewact_tools.distributed import exit_if_launched
from rewact_tools.pusht.config import GenerationConfig, parse_mix
from rewact_tools.pusht.quality import HAND_SPEED, SETTINGS

SETTINGS_HELP = """quality settings (for --mix):
  clean   the scripted expert: plans each push on a copy of the simulator; ~100% success in ~85 steps
  noisy   correlated noise (std 25 px x --noise-scale) on every command: slower, ~80% success
  detour  now and then leaves for a random point and comes back: slow, wandering successes
  giveup  stops pushing after 10-50 steps, wanders about, and stops recording 20-60 steps
          later: mostly failures
  wronggoal  as skilled as clean, but pushes the T to a pose a quarter turn off the goal and
          stops there: consistent, smooth failures (final coverage ~0.3) that behaviour cloning
          cannot tell from successes by the state alone

The dataset has the lerobot/pusht schema (96x96 observation.image stored as images, 2-D
observation.state and action, next.reward/done/success, 10 fps) plus the 16-D
observation.environment_state keypoints. Episode outcomes go to
candywrapper_plugins/episode_outcome/outcomes.json, per-episode settings, seeds and coverages to
rewact_extensions/pusht_episodes.json.

When the expert can no longer plan a push (it has squeezed the block against or through a wall,
out of the agent's reach), that episode ends at its last frame as a failure, with the reason in
the sidecar's planning_failure field and in the summary; the run goes on with the next episode.

The same arguments give the same data in every run on one machine (meta/stats.json may list its
keys in another order). Other CPUs or other versions of numpy, pymunk or gym-pusht can round
differently, and the expert's choices can turn a last-bit difference into a different episode."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate a PushT dataset with a scripted expert of controllable quality.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, required=True, help="dataset folder to create (must not exist)")
    parser.add_argument("--repo-id", default="local/pusht", help="dataset repo id (default: %(default)s)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--episodes", type=int, help="number of clean episodes (default: 50 when --mix is not given)"
    )
    amount.add_argument(
        "--mix",
        help=f"episodes per quality setting, e.g. clean=40,noisy=20,detour=20,giveup=20 (settings: {', '.join(SETTINGS)})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same dataset (default: %(default)s)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=300,
        help="step limit per episode, as in LeRobot's pusht env (default: %(default)s)",
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=1.0,
        help="multiplies the action noise of noisy settings (default: %(default)s)",
    )
    parser.add_argument(
        "--hand-speed",
        type=float,
        default=HAND_SPEED,
        help="largest move (px) of the commanded position per step, like a hand on a mouse; "
        "0 gives the expert's raw, jumping commands (default: %(default)s)",
    )
    parser.add_argument(
        "--no-image",
        action="store_true",
        help="leave out observation.image (keypoint-only data for policies evaluated with "
        "--env.obs_type=environment_state_agent_pos; faster to write and to train on)",
    )
    parser.add_argument(
        "--image-writer-threads",
        type=int,
        default=0,
        help="LeRobot image writer threads (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes rolling out episodes in parallel; the data does not depend on it (default: %(default)s)",
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> GenerationConfig:
    if args.mix is not None:
        mix = parse_mix(args.mix)
    else:
        episodes = 50 if args.episodes is None else args.episodes
        if episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {episodes}")
        mix = {"clean": episodes}
    if args.root.exists():
        raise ValueError(f"--root {args.root} already exists; choose a new folder")
    if args.image_writer_threads < 0:
        raise ValueError(f"--image-writer-threads must be non-negative, got {args.image_writer_threads}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    return GenerationConfig(
        mix=mix,
        seed=args.seed,
        max_steps=args.max_steps,
        noise_scale=args.noise_scale,
        hand_speed=args.hand_speed,
    )


def main(argv: list[str] | None = None) -> None:
    exit_if_launched("make_pusht_dataset.py")
    args = parse_args(argv)
    try:
        config = build_config(args)
    except ValueError as error:
        sys.exit(f"make_pusht_dataset.py: error: {error}")
    # The simulator and LeRobot load only now: --help and argument errors answer at once.
    from rewact_tools.pusht.writer import EPISODES_SIDECAR, generate_pusht_dataset, summarize

    start = time.perf_counter()
    results = generate_pusht_dataset(
        args.root,
        config,
        args.repo_id,
        args.image_writer_threads,
        with_image=not args.no_image,
        workers=args.workers,
    )
    elapsed = time.perf_counter() - start
    frames = sum(result.length for result in results)
    print(f"\nWrote {len(results)} episodes ({frames} frames) to {args.root} in {elapsed:.1f} s")
    print(f"Per-episode settings and coverage: {args.root / EPISODES_SIDECAR}")
    print(summarize(results))


if __name__ == "__main__":
    main()
