#!/usr/bin/env python
"""Compute pi*0.6 advantages of every frame of a dataset with a RewACT value model (SPEC §4.4-4.5).

    python scripts/precompute_advantage.py --dataset-repo-id local/pusht --dataset-root data/pusht \\
        --policy-path outputs/value_model/checkpoints/last --n-step 50 --positive-fraction 0.3

Values of every frame come from the checkpoint (batched), or with --values-from from an advantages
file this script wrote for the dataset before (relabelling with another threshold, horizon or credit
then costs no model pass, and --policy-path may be left out); rewards are -1 per step with 0 (success) or -c_fail (failure) on the
last frame, normalised per task by its longest successful episode.
A_t = sum of N rewards + V(s_t+N) - V(s_t) (Monte Carlo without --n-step). Per task a threshold
marks --positive-fraction of the frames positive, or --threshold fixes it. Frames under human
control (the dataset's `intervention` column, as lerobot-rollout's DAgger strategy writes it, or
robocandywrapper's episode_modes.json) are positive whatever their advantage, as in pi*0.6
(--no-force-human-positive turns that off).

Credit around takeovers (frames where a human took control of a rollout), for RECAP's rollouts:
--credit segment ends the stretch before each takeover as a failure, so the policy's stall is not
credited with the rescued episode's success; --pre-takeover-window K forces the last K policy frames
before each takeover negative (--pre-takeover-window stall: K is the stall patience the rollouts were
corrected with, as collect_rollouts.py records it). --threshold-by value_bin takes the positive fraction within each of
--value-bins bins of the value, so the finish of a success gets its share of positives.
--successes-positive keeps every frame of an episode that succeeded without a takeover positive (the
frames filtered BC trains on), so the advantage decides only the rest: a failure's good start, a
rescued episode's good stretches.

Episode outcomes come from robocandywrapper's outcomes file or the dataset's next.success column;
--outcomes PATH reads another outcomes file, and --outcomes-from-model lets the checkpoint decide
(success when its predicted progress on an episode's last frame is >= --success-threshold): the
way for rollout datasets, which have neither.

Writes advantages.parquet (index, episode_index, frame_index, task_index, value, return, advantage,
positive) atomically, by default into <dataset root>/rewact_extensions/, and prints a summary per task
and the positive fraction by episode outcome and phase: a threshold that leaves the finish of the
successes negative shows there (the conditioned policy never sees "positive" where the task ends).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rewact_tools.advantage_display import ADVANTAGES_RELATIVE_PATH
from rewact_tools.advantages import THRESHOLD_GROUPS
from rewact_tools.cli import (
    STALL_WINDOW,
    UNKNOWN_OUTCOMES,
    CliError,
    add_dataset_arguments,
    add_outcomes_argument,
    add_policy_arguments,
    load_dataset,
    load_metadata,
    load_reward_model,
    make_parser,
    one_line,
    positive_int,
    run_cli,
    stall_patience,
    window_frames,
)
from rewact_tools.distributed import is_main_process, join_launch
from rewact_tools.outcomes import DEFAULT_SUCCESS_THRESHOLD
from rewact_tools.takeovers import CREDITS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_dataset_arguments(parser)
    add_policy_arguments(
        parser, path_help="not read with --values-from unless --outcomes-from-model needs its success call"
    )
    horizon = parser.add_mutually_exclusive_group()
    horizon.add_argument(
        "--n-step",
        type=positive_int,
        help="advantage horizon N in frames (default: Monte Carlo, to the episode end)",
    )
    horizon.add_argument(
        "--n-step-seconds",
        type=float,
        metavar="S",
        help="advantage horizon in seconds, N = S x the dataset's fps (pi*0.6 uses about 1 s)",
    )
    split = parser.add_mutually_exclusive_group()
    split.add_argument(
        "--positive-fraction",
        type=float,
        default=0.30,
        help="fraction of each task's frames marked positive (default 0.30)",
    )
    split.add_argument("--threshold", type=float, help="fixed advantage threshold instead of a fraction")
    parser.add_argument(
        "--credit",
        choices=CREDITS,
        default="episode",
        help="outcome credit: per episode (pi*0.6) or per takeover segment (default: episode)",
    )
    parser.add_argument(
        "--pre-takeover-window",
        type=window_frames,
        default=0,
        metavar="K|stall",
        help="policy frames before each takeover forced negative (default 0: none); 'stall': the stall "
        "patience the dataset's rounds were corrected with (collect_rollouts.py --correct-stall)",
    )
    parser.add_argument(
        "--threshold-by",
        choices=THRESHOLD_GROUPS,
        default="task",
        help="where --positive-fraction is taken: per task, or per value bin of each task (default: task)",
    )
    parser.add_argument(
        "--value-bins", type=positive_int, default=10, help="with --threshold-by value_bin (10)"
    )
    parser.add_argument(
        "--successes-positive",
        action="store_true",
        help="every frame of an episode that succeeded without a takeover positive, whatever its advantage",
    )
    parser.add_argument(
        "--c-fail",
        type=float,
        help="cost of a failure at its last frame (default: the task's longest success)",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        help="the return normaliser L_max, the task's longest successful episode in steps (default: "
        "this dataset's own; give it when the dataset has no success, e.g. one round of rollouts)",
    )
    outcomes = parser.add_mutually_exclusive_group()
    add_outcomes_argument(outcomes)
    outcomes.add_argument(
        "--outcomes-from-model",
        action="store_true",
        help="call an episode a success when the checkpoint's progress on its last frame is >= --success-threshold",
    )
    parser.add_argument(
        "--success-threshold",
        type=float,
        help="with --outcomes-from-model: final progress that counts as success (default: the threshold "
        f"calibrated into the checkpoint by calibrate_success.py, else {DEFAULT_SUCCESS_THRESHOLD})",
    )
    parser.add_argument(
        "--force-human-positive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mark frames under human control positive whatever their advantage (default: on, when "
        "the dataset has an intervention column or episode_modes.json)",
    )
    parser.add_argument(
        "--unknown-outcome",
        choices=sorted(UNKNOWN_OUTCOMES),
        default="error",
        help="how to treat episodes whose outcome is unknown (default: error)",
    )
    parser.add_argument(
        "--values-from",
        type=Path,
        metavar="PARQUET",
        help="each frame's value from an advantages file written earlier for this dataset with this "
        "checkpoint, instead of a model pass: relabel with another threshold, horizon or credit",
    )
    parser.add_argument(
        "--output", type=Path, help=f"parquet to write (default: <dataset root>/{ADVANTAGES_RELATIVE_PATH})"
    )
    args = parser.parse_args(argv)
    if args.policy_path is None and reads_checkpoint(args):
        parser.error(
            "--policy-path is required unless --values-from gives the values (and no --outcomes-from-model)"
        )
    if args.success_threshold is not None and not args.outcomes_from_model:
        parser.error("--success-threshold needs --outcomes-from-model")
    if (args.credit != "episode" or args.pre_takeover_window) and not args.force_human_positive:
        parser.error(
            "--credit segment and --pre-takeover-window read the takeovers from the frames under human control: drop --no-force-human-positive"
        )
    if args.threshold is not None and args.threshold_by != "task":
        parser.error("--threshold fixes one threshold; --threshold-by needs --positive-fraction")
    return args


def reads_checkpoint(args: argparse.Namespace) -> bool:
    """Whether the model is needed: for the value pass (no --values-from) or its success call."""
    return args.values_from is None or args.outcomes_from_model


def describe_outcomes(outcomes: dict[int, bool | None], source: str) -> str:
    """One line counting successes, failures and unknowns, so a wrong outcome source shows at once."""
    counts = [sum(outcome is value for outcome in outcomes.values()) for value in (True, False, None)]
    return "episode outcomes ({}): {} success, {} failure, {} unknown".format(source, *counts)


def outcome_names(outcomes: dict[int, bool | None]) -> dict[int, str]:
    """Each episode's outcome as the row name of the phase summary."""
    return {
        episode: "unknown" if outcome is None else ("success" if outcome else "failure")
        for episode, outcome in outcomes.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.device = join_launch(args.device)
    # Imported after parsing, so --help and usage errors do not wait for torch and LeRobot.
    import numpy as np
    import pandas as pd

    from rewact_tools.advantage_display import positive_by_phase, task_summary
    from rewact_tools.advantages import (
        compute_advantages,
        frame_thresholds,
        values_from_advantages,
        write_advantages,
    )
    from rewact_tools.control_modes import human_frame_index
    from rewact_tools.outcomes import (
        MissingOutcomesError,
        load_episode_outcomes,
        model_success_threshold,
        outcomes_from_values,
    )
    from rewact_tools.returns import dataset_frames
    from rewact_tools.takeovers import frame_kinds
    from rewact_tools.values import compute_values

    if args.threshold is None and not 0.0 < args.positive_fraction < 1.0:
        raise ValueError(
            f"--positive-fraction must be strictly between 0 and 1, got {args.positive_fraction}"
        )
    meta = load_metadata(args.dataset_repo_id, args.dataset_root)
    if args.n_step_seconds is not None:
        args.n_step = round(args.n_step_seconds * meta.fps)
        if args.n_step < 1:
            raise CliError(f"--n-step-seconds {args.n_step_seconds} is less than one frame at {meta.fps} fps")
    if args.pre_takeover_window == STALL_WINDOW:
        args.pre_takeover_window = stall_patience(meta.root)
        if args.pre_takeover_window is None:
            raise CliError(
                f"--pre-takeover-window {STALL_WINDOW}: no round of {meta.root} was corrected on stalls; "
                "give the window in frames"
            )
    output = args.output if args.output is not None else Path(meta.root) / ADVANTAGES_RELATIVE_PATH
    policy, preprocessor = (
        load_reward_model(args.policy_path, args.device) if reads_checkpoint(args) else (None, None)
    )
    dataset = load_dataset(args.dataset_repo_id, args.dataset_root, meta=meta)
    # Outcomes and control modes are read before the (slow) value pass, so bad input fails at once.
    if not args.outcomes_from_model:
        try:
            outcomes = load_episode_outcomes(dataset, args.outcomes)
        except MissingOutcomesError as error:
            raise CliError(
                f"{one_line(error)}; pass --outcomes PATH (an outcomes file) or --outcomes-from-model "
                "(the checkpoint's success call)"
            ) from error
        source = str(args.outcomes) if args.outcomes is not None else "dataset"
    human = human_frame_index(dataset) if args.force_human_positive else None
    frames = dataset_frames(dataset)
    if args.values_from is not None:
        values = values_from_advantages(args.values_from, frames)
    else:
        values = compute_values(
            policy, dataset, args.batch_size, device=args.device, preprocessor=preprocessor
        )
    if args.outcomes_from_model:
        threshold, origin = model_success_threshold(policy.config, args.success_threshold)
        outcomes = outcomes_from_values(values, threshold)
        source = f"model: final progress >= {threshold:g}, {origin}"
    if (args.credit != "episode" or args.pre_takeover_window) and human is None:
        raise CliError(
            f"--credit {args.credit} and --pre-takeover-window need to know who controlled each frame, but "
            f"{args.dataset_repo_id} has no intervention column nor episode_modes.json"
        )
    table = compute_advantages(
        frames,
        values,
        outcomes,
        n_steps=args.n_step,
        positive_fraction=args.positive_fraction,
        threshold=args.threshold,
        c_fail=args.c_fail,
        max_length=args.max_length,
        unknown_as=UNKNOWN_OUTCOMES[args.unknown_outcome],
        human_index=human,
        credit=args.credit,
        pre_takeover_window=args.pre_takeover_window,
        threshold_by=args.threshold_by,
        value_bins=args.value_bins,
        successes_positive=args.successes_positive,
    )
    if is_main_process():
        write_advantages(table, output)

    if args.threshold is None:
        per_frame = frame_thresholds(table, args.positive_fraction, args.threshold_by, args.value_bins)
    else:
        per_frame = pd.Series(args.threshold, index=table.index)
    # The summary's one threshold per task; per value bin there is none (NaN).
    per_task = per_frame.groupby(table["task_index"]).agg(
        lambda values: values.iloc[0] if values.nunique() == 1 else np.nan
    )
    thresholds = {int(task): float(value) for task, value in per_task.items()}
    tasks = {
        int(index): str(name) for name, index in zip(meta.tasks.index, meta.tasks["task_index"], strict=True)
    }
    horizon = f"{args.n_step}-step" if args.n_step else "Monte Carlo"
    print(f"{horizon} advantages of {len(table)} frames in {table['episode_index'].nunique()} episodes")
    print(describe_outcomes(outcomes, source))
    if human is not None:
        forced = int((table["index"].isin(human) & ~(table["advantage"] > per_frame)).sum())
        print(
            f"human-controlled frames: {len(human)}, of which {forced} forced positive "
            "(advantage at or below the threshold)"
        )
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format
    ):
        print(task_summary(table, thresholds, tasks).to_string(index=False))
        print("positive fraction by episode outcome and phase (fifths of each episode):")
        print(positive_by_phase(table, outcome_names(outcomes)).to_string())
        if human is not None:
            kinds = frame_kinds(frames, human, args.pre_takeover_window)
            positive = table.set_index("index")["positive"].reindex(kinds.index)
            print(f"positive fraction by frame kind (pre-takeover window {args.pre_takeover_window} frames):")
            print(
                positive.groupby(kinds)
                .agg(["mean", "size"])
                .rename(columns={"mean": "positive", "size": "frames"})
                .to_string()
            )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    run_cli(main, multiprocess=True)
