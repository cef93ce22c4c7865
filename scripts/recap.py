#!/usr/bin/env python
"""One RECAP round: all data so far -> value model -> advantages -> ACTvantage -> its own rollouts.

    python scripts/recap.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --rollouts-root data/pusht_rollouts --work-dir outputs/recap \\
        --obs-type environment_state_agent_pos --episodes 50 --correct-stall 25 --correct-steps 30 \\
        -- --policy.dim_model=128 --policy.n_heads=4 --policy.chunk_size=10 --policy.n_action_steps=5 \\
           --policy.use_vae=false --policy.device=cpu --batch_size=64

Each call runs the next round (round k is outputs/recap/round_<k>, k = the rounds already done):
  1. scripts/train.py: a RewACT value model on pi*0.6 returns (--reward pistar) of the demonstrations
     and every rollout so far, normalised by the longest success in any of them
                                                                   -> round_<k>/value_model
  2. scripts/precompute_advantage.py on each of those datasets: advantages, corrections (their
     `intervention` frames) forced positive; one threshold for all of them, so that --positive-fraction
     of all their frames is positive (with rollouts, a first pass per dataset gives the advantages,
     and a second applies the pooled threshold to the first pass's values, with no second model
     pass), or with --rollouts-positive-fraction each dataset
     its own (pi*0.6: 30 % of the demonstrations, 40 % of the rollouts); --credit segment and
     --pre-takeover-window K credit the policy's stalls before a takeover as failures / negative;
     --successes-positive keeps every frame of a success without a takeover positive
                                                      -> round_<k>/advantages_*.parquet
  3. scripts/train.py: ACTvantage conditioned on them, from scratch in round 0 (--policy-steps), then
     fine-tuned from the previous round's policy (--finetune-steps; --finetune-from round0 starts
     every round from round 0's, as pi*0.6 does, and scratch retrains), its checkpoint set to the
     recipe's guidance (successes: beta 1.5 away from the negative condition)  -> round_<k>/policy
  4. scripts/collect_rollouts.py: --episodes rollouts of that policy, guided so (reset seeds --seed +
     k x --episodes onwards), the value model watching progress; with --correct-stall the scripted
     expert takes over where progress stalls. Appended to --rollouts-root (created in round 0).
Every command is printed before it runs and every artefact is an ordinary LeRobot checkpoint or
dataset, to inspect with the other scripts. Flags after `--` go to both training runs (LeRobot's
spelling), except those recap.py sets itself (steps, output, datasets, policy type, guidance): those
are refused, naming recap.py's flag for each. round_<k>/round.json records the commands and paths
once the round is complete.

The demonstrations must have the observations the env gives the policy (for PushT keypoints:
make_pusht_dataset.py --no-image with --obs-type environment_state_agent_pos) and
episode outcomes (next.success or an outcomes file). Training on two datasets needs robocandywrapper.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rewact_tools.atomic import write_json
from rewact_tools.cli import (
    STALL_WINDOW,
    CliError,
    add_dataset_arguments,
    check_local_dataset,
    checkpoint_model_dir,
    make_parser,
    positive_int,
    run_cli,
    run_command,
    stall_patience,
    window_frames,
)
from rewact_tools.takeovers import CREDITS

SCRIPTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    """How a round turns values into ACTvantage's labels and weights (recap.py's flags)."""

    positive_fraction: float
    credit: str
    pre_takeover_window: int | str
    negative_weight: float
    n_step: int | None = None
    n_step_seconds: float | None = None
    rollouts_positive_fraction: float | None = None
    """None: one threshold pooled over demonstrations and rollouts; a fraction: each dataset its own
    threshold, the demonstrations `positive_fraction` positive and the rollouts this."""
    successes_positive: bool = False
    """Every frame of an episode that succeeded without a takeover positive (precompute_advantage.py
    --successes-positive): the advantage only ranks the rest."""
    guidance_scale: float = 1.0
    guidance_reference: str = "null"
    """The policy's guidance (--policy.guidance_scale / guidance_reference): saved in its checkpoint, so
    it collects the next round's rollouts, and lerobot-eval runs it, with the same guidance."""


RECIPES = {
    # Ties filtered BC in round 0 on PushT, where pi*0.6's recipe trails it, and trails it after
    # two rounds (benchmarks/README.md, "Fourth run", "Fifth run").
    "takeover": Recipe(0.5, "segment", STALL_WINDOW, 0.25),
    # The default: the takeover recipe with filtered BC's frames kept positive and N-step advantages
    # (N = 1 s) ranking the rest, so a failure's good start and a rescued episode's good stretches
    # count; guided away from the negative condition at beta 1.5 while it collects and runs. At beta 1
    # it is level with filtered BC on 37 fresh seeds ("Ninth run" to "Thirteenth run"); guided, it
    # leads ("Fifteenth run").
    "successes": Recipe(
        0.5,
        "segment",
        STALL_WINDOW,
        0.25,
        n_step_seconds=1.0,
        successes_positive=True,
        guidance_scale=1.5,
        guidance_reference="negative",
    ),
    # pi*0.6 as published: 30 % of the demonstrations and 40 % of the rollouts positive, per-episode
    # outcomes, N-step advantages with N = 1 s, the policy conditioned on "positive" (beta 1).
    "pistar": Recipe(0.3, "episode", 0, 1.0, n_step_seconds=1.0, rollouts_positive_fraction=0.4),
}
ROUND_RECORD = "round.json"
FINETUNE_STARTS = ("previous", "round0", "scratch")
ROLLOUTS_REPO_ID = "local/rollouts"
# LeRobot flags recap.py writes on a training command line after the user's `--` flags, so a user's
# own would be overridden without a word: each is refused, saying what to give instead.
OWN_TRAINING_FLAGS = {
    "--policy.negative_weight": "use --negative-weight",
    "--policy.guidance_scale": "use --guidance-scale",
    "--policy.guidance_reference": "use --guidance-reference",
    "--steps": "use --value-steps, --policy-steps or --finetune-steps",
    "--save_freq": "it saves once, at --value-steps, --policy-steps or --finetune-steps",
    "--output_dir": "use --work-dir",
    "--dataset.repo_id": "use --dataset-repo-id",
    "--dataset.root": "use --dataset-root and --rollouts-root",
    "--policy.type": "each round trains a rewact value model and an actvantage policy",
    "--policy.path": "use --finetune-from",
    "--job_name": "each run is named after its model",
    "--policy.reward_loss_weight": "the value model trains at 1.0",
}


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = make_parser(__doc__)
    add_dataset_arguments(parser)
    parser.add_argument("--rollouts-root", type=Path, required=True, help="rollout dataset (made in round 0)")
    parser.add_argument("--work-dir", type=Path, required=True, help="where each round's models go")
    parser.add_argument("--value-steps", type=positive_int, default=3000, help="value-model steps (3000)")
    parser.add_argument(
        "--policy-steps", type=positive_int, default=4000, help="ACTvantage steps from scratch (4000)"
    )
    start = parser.add_argument_group("round start (rounds after round 0)")
    start.add_argument(
        "--finetune-from",
        choices=FINETUNE_STARTS,
        default="previous",
        help="fine-tune the previous round's ACTvantage (default, as bench_recap.py measured it) or "
        "round 0's (pi*0.6: no drift over rounds) for --finetune-steps, or train from scratch for "
        "--policy-steps (scratch); the value model is always trained anew",
    )
    start.add_argument(
        "--finetune-steps", type=positive_int, default=2000, help="steps of a fine-tuning round (2000)"
    )
    start.add_argument(
        "--finetune-lr",
        type=float,
        help="learning rate of a fine-tuning round (--policy.optimizer_lr; default: the checkpoint's)",
    )
    recipe = parser.add_argument_group("advantage recipe (each flag overrides the --recipe's value)")
    recipe.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="successes",
        help="successes (default, the closest to filtered BC measured on PushT): segment credit, the "
        "stall before each takeover negative, 50%% positive, negatives at loss weight 0.25, every frame "
        "of a success without a takeover positive, N-step advantages with N = 1 s ranking the rest; "
        "takeover: the same with Monte Carlo advantages and no successes kept; "
        "pistar: pi*0.6's published recipe, 30%% positive, per-episode credit, N = 1 s, uniform weights",
    )
    recipe.add_argument(
        "--positive-fraction",
        type=float,
        help="of all datasets' frames (of the demonstrations' with the next flag)",
    )
    recipe.add_argument(
        "--rollouts-positive-fraction",
        type=float,
        help="threshold each dataset apart, the rollouts with this fraction (pistar: 0.4); takeover: one "
        "threshold pooled over all datasets",
    )
    recipe.add_argument(
        "--n-step", type=positive_int, help="N-step advantages in frames (takeover: Monte Carlo)"
    )
    recipe.add_argument(
        "--credit",
        choices=CREDITS,
        help="outcome credit of the value targets and the rollouts' advantages: per episode or per "
        "takeover segment (train.py and precompute_advantage.py --credit)",
    )
    recipe.add_argument(
        "--pre-takeover-window",
        type=window_frames,
        metavar="K|stall",
        help="policy frames before each takeover forced negative; stall: the patience the rollouts were "
        "corrected with (0 when no round corrected on stalls)",
    )
    recipe.add_argument(
        "--successes-positive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every frame of an episode that succeeded without a takeover positive, the advantage "
        "ranking the rest (successes: on; takeover, pistar: off)",
    )
    recipe.add_argument(
        "--negative-weight",
        type=float,
        help="ACTvantage's loss weight of negative frames (--policy.negative_weight), positives 1",
    )
    recipe.add_argument(
        "--guidance-scale",
        type=float,
        metavar="BETA",
        help="the policy's guidance scale (--policy.guidance_scale) while it collects and is evaluated "
        "(successes: 1.5; takeover, pistar: 1)",
    )
    recipe.add_argument(
        "--guidance-reference",
        help="what guidance steers away from (--policy.guidance_reference: negative or null; "
        "successes: negative; takeover, pistar: null, classifier-free)",
    )
    passes = parser.add_argument_group("value passes (scripts/precompute_advantage.py)")
    passes.add_argument(
        "--value-pass-processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="split each pass over N processes (torchrun --standalone --nproc_per_node N; default 1)",
    )
    passes.add_argument(
        "--value-pass-device", default="cpu", help="their device; cuda gives each process its own GPU (cpu)"
    )
    rollouts = parser.add_argument_group("rollouts (scripts/collect_rollouts.py)")
    rollouts.add_argument("--episodes", type=positive_int, default=50, help="rollouts per round (50)")
    rollouts.add_argument(
        "--seed", type=int, default=0, help="round k's episodes start at SEED + k x EPISODES"
    )
    rollouts.add_argument("--env-type", default="pusht", help="LeRobot env type (default: pusht)")
    rollouts.add_argument("--obs-type", help="the env's observation type (default: the env config's)")
    rollouts.add_argument("--max-steps", type=positive_int, help="episode step limit (the env config's)")
    rollouts.add_argument("--env-batch", type=positive_int, default=10, help="episodes run together (10)")
    rollouts.add_argument(
        "--correct-stall", type=positive_int, metavar="K", help="correct after K stalled steps"
    )
    rollouts.add_argument("--correct-steps", type=positive_int, metavar="M", help="steps a correction lasts")
    args = parser.parse_args(argv[:split])
    given_n_step = args.n_step is not None
    for name, value in asdict(RECIPES[args.recipe]).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if given_n_step:
        args.n_step_seconds = None
    for name in ("positive_fraction", "rollouts_positive_fraction"):
        value = getattr(args, name)
        if value is not None and not 0.0 < value < 1.0:
            parser.error(f"--{name.replace('_', '-')} must lie strictly between 0 and 1, got {value}")
    if not 0.0 < args.negative_weight <= 1.0:
        parser.error(f"--negative-weight must lie in (0, 1], got {args.negative_weight}")
    # The policy's own rules, before any training; imported here because they load LeRobot, which
    # --help and the other flags' errors need not wait for.
    from lerobot_policy_actvantage.configuration_actvantage import ACTvantageConfig, check_guidance_scale

    try:
        check_guidance_scale(args.guidance_scale, ACTvantageConfig.advantage_dropout, args.guidance_reference)
    except ValueError as error:
        parser.error(f"--guidance-scale / --guidance-reference: {error}")
    if args.finetune_lr is not None and args.finetune_from == "scratch":
        parser.error(
            "--finetune-lr sets a fine-tuning round's learning rate; --finetune-from scratch fine-tunes none"
        )
    lerobot_flags = argv[split + 1 :]
    for flag in lerobot_flags:
        name = flag.split("=", 1)[0]
        if name in OWN_TRAINING_FLAGS:
            parser.error(f"{name} after `--` is set by recap.py for each run: {OWN_TRAINING_FLAGS[name]}")
    return args, lerobot_flags


def next_round(work_dir: Path) -> int:
    """Rounds already complete (each has its record); an incomplete one must be cleared first."""
    done = 0
    while (work_dir / f"round_{done}" / ROUND_RECORD).is_file():
        done += 1
    unfinished = work_dir / f"round_{done}"
    if unfinished.exists():
        raise CliError(f"{unfinished} is an unfinished round (no {ROUND_RECORD}); delete it to run it again")
    return done


def episode_outcomes(datasets: list[tuple[str, Path]]) -> list[tuple[dict[int, int], dict[int, bool | None]]]:
    """Per dataset, each episode's length and outcome."""
    from rewact_tools.cli import load_dataset
    from rewact_tools.outcomes import load_episode_outcomes

    found = []
    for repo_id, root in datasets:
        dataset = load_dataset(repo_id, root)
        episodes = dataset.meta.episodes
        lengths = dict(zip(episodes["episode_index"], episodes["length"], strict=True))
        found.append((lengths, load_episode_outcomes(dataset)))
    return found


def longest_success(datasets: list[tuple[str, Path]], outcomes: list[tuple[dict, dict]]) -> int:
    """pi*0.6's return normaliser L_max: the longest successful episode over every dataset, which
    record one task (a round of rollouts alone may have no success, or a longer one)."""
    lengths = [
        length[episode] for length, outcome in outcomes for episode, success in outcome.items() if success
    ]
    if not lengths:
        raise CliError(
            f"no dataset of {[str(root) for _, root in datasets]} has a successful episode: pi*0.6 "
            "returns are normalised by the longest one"
        )
    return int(max(lengths))


def takeover_window(args: argparse.Namespace, has_rollouts: bool) -> int:
    """The pre-takeover window in frames: `stall` is the patience the rollouts were corrected with,
    0 where no round corrected on stalls (no stall precedes their takeovers) or none exists yet."""
    if args.pre_takeover_window != STALL_WINDOW:
        return args.pre_takeover_window
    if not has_rollouts:
        return 0
    patience = stall_patience(args.rollouts_root)
    return 0 if patience is None else patience


def pooled_threshold(paths: list[Path], positive_fraction: float) -> float:
    """The advantage above which `positive_fraction` of the frames of all `paths` lie: pi*0.6 takes
    the threshold over all of a task's data, so demonstrations and rollouts compete for the positives
    instead of each getting the same share. One task, as recap.py's env gives."""
    import pandas as pd

    from rewact_tools.advantages import read_advantages, task_thresholds

    tables = [read_advantages(path) for path in paths]
    for path, table in zip(paths, tables, strict=True):
        if table["task_index"].nunique() > 1:
            raise CliError(f"{path}: recap.py pools the advantages of one task; this file has several")
    advantages = pd.concat([table["advantage"] for table in tables], ignore_index=True)
    (threshold,) = task_thresholds(
        advantages, pd.Series(0, index=advantages.index), positive_fraction
    ).values()
    return threshold


def policy_start(args: argparse.Namespace, round_: int) -> Path | None:
    """The ACTvantage checkpoint round `round_` fine-tunes, or None to train from scratch."""
    if round_ == 0 or args.finetune_from == "scratch":
        return None
    source = round_ - 1 if args.finetune_from == "previous" else 0
    try:
        return checkpoint_model_dir(args.work_dir / f"round_{source}" / "policy")
    except CliError as error:
        raise CliError(f"--finetune-from {args.finetune_from}: {error}") from None


def train_command(datasets: list[tuple[str, Path]], output: Path, flags: list[str]) -> list:
    return [
        sys.executable,
        SCRIPTS / "train.py",
        "--dataset.repo_id=" + ",".join(repo_id for repo_id, _ in datasets),
        "--dataset.root=" + ",".join(str(root) for _, root in datasets),
        "--policy.push_to_hub=false",
        "--eval_freq=-1",
        "--wandb.enable=false",
        f"--output_dir={output}",
        *flags,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args, lerobot_flags = parse_args(argv)
    if args.dataset_root is None:
        raise CliError("recap.py trains on local data: give the demonstrations' --dataset-root")
    check_local_dataset(args.dataset_root)
    round_ = next_round(args.work_dir)
    folder = args.work_dir / f"round_{round_}"
    start = policy_start(args, round_)
    has_rollouts = args.rollouts_root.exists()
    if round_ > 0 and not has_rollouts:
        raise CliError(
            f"round {round_} needs the rollouts of earlier rounds, but {args.rollouts_root} does not exist"
        )
    datasets = [(args.dataset_repo_id, args.dataset_root)]
    if has_rollouts:
        datasets.append((ROLLOUTS_REPO_ID, check_local_dataset(args.rollouts_root)))
    outcomes = episode_outcomes(datasets)
    max_length = longest_success(datasets, outcomes)
    window = takeover_window(args, has_rollouts)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    commands: list[list[str]] = []

    def run(command: list) -> None:
        commands.append([str(part) for part in command])
        try:
            run_command(command, env)
        except subprocess.CalledProcessError as error:
            raise CliError(
                f"round {round_} stopped: {next(Path(part).name for part in command if str(part).endswith('.py'))} "
                f"exited {error.returncode} (its output is "
                f"above); delete {folder} to run the round again"
            ) from error

    value_model = folder / "value_model"
    run(
        train_command(datasets, value_model, lerobot_flags)
        + ["--policy.type=rewact", "--reward", "pistar", "--max-length", str(max_length)]
        + ["--credit", args.credit, "--policy.reward_loss_weight=1.0"]
        + [f"--steps={args.value_steps}", f"--save_freq={args.value_steps}", "--job_name=value_model"]
    )
    # The collector's success calls use a threshold calibrated on the episodes the model will judge:
    # the rollouts so far (the demonstrations in round 0), when they hold a success and a failure.
    (calibration_repo_id, calibration_root), (_, calibration_outcomes) = datasets[-1], outcomes[-1]
    calibrated = {True, False} <= set(calibration_outcomes.values())
    if calibrated:
        run(
            [sys.executable, SCRIPTS / "calibrate_success.py", "--dataset-repo-id", calibration_repo_id]
            + ["--dataset-root", calibration_root, "--policy-path", value_model]
        )
    else:
        print(
            f"{calibration_root} has no success or no failure to calibrate the success call on: the "
            "collector uses the default threshold"
        )
    advantages = [
        folder / f"advantages_{name}.parquet" for name in ("demonstrations", "rollouts")[: len(datasets)]
    ]

    # Only rollouts have takeovers (demonstrations record no control modes).
    takeover_credit = ["--credit", args.credit, "--pre-takeover-window", str(window)]
    if args.n_step is not None:
        horizon = ["--n-step", str(args.n_step)]
    elif args.n_step_seconds is not None:
        horizon = ["--n-step-seconds", str(args.n_step_seconds)]
    else:
        horizon = []

    launcher = [sys.executable]
    if args.value_pass_processes > 1:
        launcher += [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.value_pass_processes}",
        ]

    def precompute(split: Callable[[str, Path], list[str]]) -> None:
        for (repo_id, root), path in zip(datasets, advantages, strict=True):
            run(
                [*launcher, SCRIPTS / "precompute_advantage.py", "--dataset-repo-id", repo_id]
                + ["--dataset-root", root, "--policy-path", value_model, "--output", path]
                + ["--device", args.value_pass_device]
                + ["--max-length", str(max_length), *split(repo_id, path), *horizon]
                + (takeover_credit if repo_id == ROLLOUTS_REPO_ID else [])
                + (["--successes-positive"] if args.successes_positive else [])
            )

    def own_fraction(repo_id: str, _: Path) -> list[str]:
        rollouts = repo_id == ROLLOUTS_REPO_ID and args.rollouts_positive_fraction is not None
        return [
            "--positive-fraction",
            str(args.rollouts_positive_fraction if rollouts else args.positive_fraction),
        ]

    precompute(own_fraction)
    threshold = None
    if len(datasets) > 1 and args.rollouts_positive_fraction is None:
        threshold = pooled_threshold(advantages, args.positive_fraction)
        precompute(lambda _, path: [f"--threshold={threshold!r}", "--values-from", path])
    policy = folder / "policy"
    if start is None:
        origin, steps = ["--policy.type=actvantage"], args.policy_steps
    else:
        origin, steps = [f"--policy.path={start}"], args.finetune_steps
        if args.finetune_lr is not None:
            origin.append(f"--policy.optimizer_lr={args.finetune_lr}")
    run(
        train_command(datasets, policy, lerobot_flags)
        + [*origin, "--advantages", ",".join(str(path) for path in advantages)]
        + [f"--policy.negative_weight={args.negative_weight}"]
        + [f"--policy.guidance_scale={args.guidance_scale}"]
        + [f"--policy.guidance_reference={args.guidance_reference}"]
        + [f"--steps={steps}", f"--save_freq={steps}", "--job_name=actvantage"]
    )
    collect = [
        sys.executable,
        SCRIPTS / "collect_rollouts.py",
        "--policy-path",
        policy,
        "--reward-model",
        value_model,
        "--env-type",
        args.env_type,
        "--episodes",
        str(args.episodes),
        "--seed",
        str(args.seed + round_ * args.episodes),
        "--batch-size",
        str(args.env_batch),
        "--root",
        args.rollouts_root,
        "--repo-id",
        ROLLOUTS_REPO_ID,
    ]
    for flag, value in (
        ("--obs-type", args.obs_type),
        ("--max-steps", args.max_steps),
        ("--correct-stall", args.correct_stall),
        ("--correct-steps", args.correct_steps),
    ):
        collect += [] if value is None else [flag, str(value)]
    run(collect + (["--append"] if has_rollouts else []))
    record = {
        "round": round_,
        "datasets": [{"repo_id": repo_id, "root": str(root)} for repo_id, root in datasets],
        "max_length": max_length,
        "recipe": {
            "name": args.recipe,
            **{name: getattr(args, name) for name in Recipe.__dataclass_fields__},
            "pre_takeover_window": window,
        },
        "success_threshold_calibrated_on": str(calibration_root) if calibrated else None,
        "value_model": str(value_model),
        "advantages": [str(path) for path in advantages],
        "advantage_threshold": threshold,
        "policy": str(policy),
        "policy_start": None if start is None else str(start),
        "rollouts": str(args.rollouts_root),
        "commands": commands,
    }
    write_json(folder / ROUND_RECORD, record)
    print(
        f"\nround {round_} done: policy {policy}, value model {value_model}, rollouts in {args.rollouts_root}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
