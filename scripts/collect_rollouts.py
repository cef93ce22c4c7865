#!/usr/bin/env python
"""Roll a policy out in a LeRobot simulation env and record the episodes as a LeRobot dataset.

    python scripts/collect_rollouts.py --policy-path outputs/act/checkpoints/last/pretrained_model \\
        --env-type pusht --obs-type environment_state_agent_pos --episodes 50 --root data/rollouts \\
        --reward-model outputs/rewact

    # round 2: another policy, the scripted expert correcting where the reward model sees a stall
    python scripts/collect_rollouts.py --policy-path outputs/actvantage --env-type pusht \\
        --obs-type environment_state_agent_pos --episodes 50 --seed 1000 --root data/rollouts \\
        --append --reward-model outputs/rewact --correct-stall 15 --correct-steps 20

Any LeRobot policy checkpoint (rewact, actvantage, act, ...) runs with the processors saved beside
it, --batch-size episodes at a time in one synchronous vector env from LeRobot's env factory.
Episode k of a run is reset with seed --seed + k. The dataset has LeRobot's keys: the observations
as the policy saw them (observation.state, observation.environment_state and/or observation.image),
action, next.reward, next.done, next.success, and the per-frame bool `intervention` that
lerobot-rollout --strategy.type=dagger writes (True where the corrector drove).

With --reward-model (a RewACT checkpoint) every frame also gets `rewact.progress` (its predicted
progress of the frame's observation) and `rewact.success` (progress >= --success-threshold; on the
last frame, the model's success call for the episode), and the run prints how well that call
detects the env's success. --end-on-model-success ends an episode on the frame the model calls
success.

Simulated corrections (PushT: the built-in dataset's scripted expert) take over when the reward
model's progress (or, with --stall-signal env, the env's own: PushT's coverage, ground truth that
needs no reward model) has not risen by more than --stall-epsilon for --correct-stall steps, or at random
with probability --correct-random per step, drive for --correct-steps steps, and hand back; the
policy's action queue is emptied before it acts again.

Every round appended to a dataset must record the same features (the same observations, and a
reward model in all rounds or in none). The dataset only changes by whole commits (at the end, or every --commit-every episodes), each
staged beside it in .<name>.staging and swapped in atomically: a crash loses the episodes since the
last commit, never anything written before, and --append never rewrites earlier episodes' files.
Per-round and per-episode details (seeds, outcomes, the model's calls, corrections) go to
rewact_extensions/rollouts.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.cli import add_policy_arguments, make_parser, positive_int, run_cli
from rewact_tools.outcomes import DEFAULT_SUCCESS_THRESHOLD

DEFAULT_CORRECT_STEPS = 20
DEFAULT_STALL_EPSILON = 0.01


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    policy = add_policy_arguments(parser, batch_size=10, batch_help="episodes run together, one env each")
    policy.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default: 1)")

    env = parser.add_argument_group("environment")
    env.add_argument("--env-type", default="pusht", help="LeRobot env type (default: %(default)s)")
    env.add_argument(
        "--obs-type",
        help="the env's observation type, e.g. environment_state_agent_pos or pixels_agent_pos for "
        "pusht (default: the env config's)",
    )
    env.add_argument(
        "--max-steps", type=positive_int, help="episode step limit (the env config's episode_length)"
    )
    env.add_argument("--env-task", help="the env config's task (env variant), e.g. PushT-v0")
    env.add_argument(
        "--task",
        help="task text recorded with every frame (default for pusht: the built-in dataset's task, so "
        "rollouts and that data are one task; else the env config's task)",
    )

    run = parser.add_argument_group("rollouts")
    run.add_argument("--episodes", type=positive_int, default=10, help="episodes to record (default: 10)")
    run.add_argument("--seed", type=int, default=0, help="episode k is reset with seed SEED + k (default: 0)")

    output = parser.add_argument_group("dataset")
    output.add_argument("--root", type=Path, required=True, help="dataset folder to write")
    output.add_argument("--repo-id", default="local/rollouts", help="dataset repo id (default: %(default)s)")
    output.add_argument(
        "--append",
        action="store_true",
        help="add the episodes to the rollout dataset at --root (same features), as a new round",
    )
    output.add_argument(
        "--commit-every",
        type=positive_int,
        help="commit at the first batch end after every N episodes (default: once, at the end)",
    )

    model = parser.add_argument_group("reward model")
    model.add_argument(
        "--reward-model", type=Path, help="RewACT checkpoint that predicts each frame's progress"
    )
    model.add_argument(
        "--success-threshold",
        type=float,
        help="final progress at which the reward model calls success (default: the threshold calibrated "
        f"into the checkpoint by calibrate_success.py, else {DEFAULT_SUCCESS_THRESHOLD})",
    )
    model.add_argument(
        "--end-on-model-success",
        action="store_true",
        help="end an episode when the reward model calls success",
    )

    correct = parser.add_argument_group("simulated corrections")
    correct.add_argument(
        "--correct-stall",
        type=positive_int,
        metavar="K",
        help="take over after K steps without a rise in progress (the reward model's, by default)",
    )
    correct.add_argument(
        "--stall-signal",
        choices=("model", "env"),  # CorrectionSettings.stall_signal (importing it would load torch)
        default="model",
        help="whose progress --correct-stall watches: the reward model's prediction (model, the "
        "default) or the env's own (env: PushT's coverage; no reward model needed)",
    )
    correct.add_argument(
        "--stall-epsilon",
        type=float,
        default=DEFAULT_STALL_EPSILON,
        help="a rise must exceed the best progress so far by more than this (default: %(default)s)",
    )
    correct.add_argument(
        "--correct-random",
        type=float,
        default=0.0,
        metavar="P",
        help="take over with probability P at each policy step (default: 0)",
    )
    correct.add_argument(
        "--correct-steps",
        type=positive_int,
        default=DEFAULT_CORRECT_STEPS,
        metavar="M",
        help="steps the corrector drives each time (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    import torch

    from rewact_tools.cli import load_policy_with_processors, load_reward_model
    from rewact_tools.metrics import success_detection_scores
    from rewact_tools.outcomes import model_success_threshold
    from rewact_tools.rollouts import (
        CorrectionSettings,
        PolicyRunner,
        ProgressModel,
        RolloutSettings,
        collect_rollouts,
        make_env_spec,
    )

    torch.set_num_threads(args.threads)
    reward_model = (
        ProgressModel(*load_reward_model(args.reward_model, args.device)) if args.reward_model else None
    )
    threshold, origin = model_success_threshold(
        None if reward_model is None else reward_model.policy.config, args.success_threshold
    )
    settings = RolloutSettings(
        episodes=args.episodes,
        seed=args.seed,
        batch_size=args.batch_size,
        success_threshold=threshold,
        end_on_model_success=args.end_on_model_success,
        corrections=CorrectionSettings(
            stall_steps=args.correct_stall,
            stall_signal=args.stall_signal,
            stall_epsilon=args.stall_epsilon,
            random_rate=args.correct_random,
            steps=args.correct_steps,
        ),
        commit_every=args.commit_every,
    )
    env_spec = make_env_spec(args.env_type, args.obs_type, args.max_steps, args.env_task, args.task)
    policy = PolicyRunner(*load_policy_with_processors(args.policy_path, args.device))
    start = time.perf_counter()
    records = collect_rollouts(
        args.root,
        policy,
        env_spec,
        settings,
        reward_model=reward_model,
        repo_id=args.repo_id,
        append=args.append,
        round_info={
            "policy_path": str(args.policy_path),
            "policy_type": policy.config.type,
            "reward_model": None if args.reward_model is None else str(args.reward_model),
        },
    )
    elapsed = time.perf_counter() - start

    frames = sum(record.length for record in records)
    successes = [record.success for record in records]
    summary = {
        "episodes": len(records),
        "episode_indices": [records[0].episode_index, records[-1].episode_index],
        "frames": frames,
        "success_rate": sum(successes) / len(records),
        "mean_max_reward": sum(record.max_reward for record in records) / len(records),
        "intervention_frames": sum(record.interventions for record in records),
        "takeovers": sum(record.takeovers for record in records),
        "seconds": round(elapsed, 1),
    }
    if reward_model is not None:
        final = [record.final_progress for record in records]
        summary["model_success_rate"] = sum(record.model_success for record in records) / len(records)
        summary["success_detection"] = success_detection_scores(final, successes, threshold)
    print(json.dumps(summary, indent=2))
    if reward_model is not None:
        scores = summary["success_detection"]
        print(
            f"reward model success calls (progress >= {threshold:g}, {origin}) against the env's: "
            f"precision {scores['precision']:.2f}, recall {scores['recall']:.2f}, F1 {scores['f1']:.2f}"
        )
    print(f"wrote episodes {records[0].episode_index}..{records[-1].episode_index} to {args.root}")
    return 0


if __name__ == "__main__":
    run_cli(main)
