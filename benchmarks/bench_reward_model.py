"""RewACT reward-model quality on held-out episodes of the built-in PushT data with failures (SPEC §6).

Labels (fed as `batch["reward"]`), `--labels`:
  success_progress (default)  successful episodes: linear progress (`rewact_tools.progress`, 0 -> 1);
                              failed episodes: their pi*0.6 value target (0 throughout, c_fail = L_max)
  pistar                      pi*0.6 value targets (`pistar_returns(...)["value_target"]`) everywhere
Both rise through a successful episode (VOC) and end at 0 for a failure (terminal-success AUROC).
pi*0.6 values of successful episodes also encode how fast the demonstrator was (a clean 56-step
episode starts at 0.82, a noisy 250-step one near 0.2), which the state does not show. Every 4th
successful and every 4th failed episode is held out; metrics come from
`rewact_tools.reward_model_metrics` over values from `compute_values`.

(a) environment-state input (16-D keypoints + agent position): the three value-target encodings
    (one_hot, two_hot, hl_gauss; 101 bins, reward_loss_weight from --reward-loss-weight) and the
    upstream-style setting (100 bins, one_hot, reward_loss_weight 0.1), same data, steps and seed.
(b) image input (96x96 observation.image + agent position, no keypoints), from random weights:
    held-out VOC over training time for each image arm and seed, within a fixed CPU budget per run
    (process CPU time, so other jobs on a shared machine do not shrink it); a PNG learning curve.
    Arms: `frozen_bn`, `batch_norm`, `group_norm` (LeRobot's torchvision ResNet18 with that
    `backbone_norm`) and `timm:<model>` (a timm model from random weights, e.g. `timm:resnet10t`).
    Seeds (`--image-seeds`) change initialisation and batch order; the data and split stay fixed.
    The JSON is rewritten after every run and `--resume` skips the runs it already holds.

    python benchmarks/bench_reward_model.py --output benchmarks/results/reward_model.json
    python benchmarks/bench_reward_model.py --quick     # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from rewact_tools import (
    dataset_frames,
    load_episode_outcomes,
    make_pre_post_processors,
    pistar_returns,
    progress,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DATA_DIR,
    Frames,
    HeldOut,
    TrainSettings,
    act_settings,
    add_dataset_arguments,
    held_out_split,
    load_frames,
    pusht_dataset,
    save_figure,
    train_policy,
)

from rewact_tools.atomic import write_json

STATE_KEYS = ("observation.state", "observation.environment_state")
IMAGE_KEYS = ("observation.image", "observation.state")
ENCODING_ARMS = {
    "one_hot": {"value_target": "one_hot"},
    "two_hot": {"value_target": "two_hot"},
    "hl_gauss": {"value_target": "hl_gauss"},
    # RewACT's original settings.
    "upstream_style": {"value_target": "one_hot", "num_value_bins": 100, "reward_loss_weight": 0.1},
}
BACKBONE_NORM_ARMS = ("frozen_bn", "batch_norm", "group_norm")
TIMM_ARM_PREFIX = "timm:"


def value_labels(returns: pd.DataFrame, outcomes: dict, kind: str) -> np.ndarray:
    """Per-frame labels of the `pistar_returns` table: see the module docstring."""
    if kind == "pistar":
        return returns["value_target"].to_numpy()
    lengths = returns.groupby("episode_index")["frame_index"].transform("size").to_numpy()
    success = returns["episode_index"].map(lambda episode: bool(outcomes[episode])).to_numpy()
    ramp = progress(returns["frame_index"].to_numpy(), lengths)
    return np.where(success, ramp, returns["value_target"].to_numpy())


def make_policy(settings: dict, stats: dict, **overrides) -> tuple[RewACTPolicy, object]:
    config = RewACTConfig(**{**settings, "reward_source": "dataset", **overrides})
    preprocessor, _ = make_pre_post_processors(config, stats)
    return RewACTPolicy(config), preprocessor


def run_state_arms(args, dataset, held_out, rows, reward) -> dict:
    """Part (a): every encoding arm on keypoint input, same data, steps and seed."""
    frames = load_frames(dataset, STATE_KEYS)
    settings = act_settings(args.quick, STATE_KEYS, dataset) | {"reward_loss_weight": args.reward_loss_weight}
    results = {}
    for name in args.arms:
        overrides = ENCODING_ARMS[name]
        torch.manual_seed(args.seed)
        policy, preprocessor = make_policy(settings, dataset.meta.stats, **overrides)
        train = train_policy(
            policy,
            preprocessor,
            frames,
            rows(frames),
            TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed),
            extras={"reward": reward(frames)},
            desc=f"state {name}",
        )
        results[name] = {"config": {k: getattr(policy.config, k) for k in _VALUE_FIELDS}, **train}
        results[name]["metrics"] = held_out.score(policy, preprocessor)
    return results


_VALUE_FIELDS = ("value_target", "num_value_bins", "reward_loss_weight")


def image_arm_overrides(arm: str) -> dict:
    """RewACT config fields of an image arm (see the module docstring)."""
    if arm in BACKBONE_NORM_ARMS:
        return {"backbone_norm": arm}
    if arm.startswith(TIMM_ARM_PREFIX) and arm[len(TIMM_ARM_PREFIX) :]:
        return {"vision_encoder_type": "timm", "vision_backbone": arm[len(TIMM_ARM_PREFIX) :]}
    raise ValueError(f"Unknown image arm {arm!r}: expected one of {list(BACKBONE_NORM_ARMS)} or timm:<model>")


def run_image_arm(args, dataset, frames: Frames, held_out, rows, reward, arm: str, seed: int) -> dict:
    """One image run: train from random weights for the CPU budget, scoring held-out episodes on the way."""
    settings = act_settings(args.quick, IMAGE_KEYS, dataset)
    # The trunk learns at the same rate as the rest: ACT's 1e-5 backbone rate is meant for pretrained weights.
    settings |= {"optimizer_lr_backbone": args.lr, "reward_loss_weight": args.reward_loss_weight}
    torch.manual_seed(seed)
    policy, preprocessor = make_policy(settings, dataset.meta.stats, **image_arm_overrides(arm))
    curve: list[dict] = []

    def checkpoint(step: int, seconds: float) -> None:
        curve.append(
            {"step": step, "train_seconds": round(seconds, 2), **held_out.score(policy, preprocessor)}
        )
        print(
            f"  {arm} seed {seed}: step {step} ({seconds:.0f} CPU s) VOC {curve[-1]['voc_mean']}", flush=True
        )

    started = time.perf_counter()
    train = train_policy(
        policy,
        preprocessor,
        frames,
        rows(frames),
        TrainSettings(
            steps=args.image_steps,
            batch_size=args.image_batch_size,
            lr=args.lr,
            seed=seed,
            time_budget_s=args.image_minutes * 60,
            clock="cpu",
            checkpoint_every_s=args.image_eval_minutes * 60 if args.image_eval_minutes else None,
        ),
        extras={"reward": reward(frames)},
        checkpoints=checkpoint_steps(min(args.image_steps, FIRST_EVALUATIONS_UP_TO), count=3),
        on_checkpoint=checkpoint,
        desc=f"image {arm} seed {seed}",
    )
    return {
        **train,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "curve": curve,
        "final": curve[-1],
    }


FIRST_EVALUATIONS_UP_TO = 200
"""Besides the timed evaluations, a few log-spaced early ones show how fast each arm starts."""


def summarise(runs: dict[str, dict]) -> dict:
    """Mean, min and max over seeds of the final held-out metrics of one arm."""
    summary = {}
    for metric in ("voc_mean", "terminal_auroc", "mae"):
        values = [run["final"][metric] for run in runs.values() if run["final"][metric] is not None]
        if values:
            summary[metric] = {
                "mean": float(np.mean(values)),
                "min": float(np.min(values)),
                "max": float(np.max(values)),
            }
    summary["seeds"] = len(runs)
    return summary


def run_image_arms(args, dataset, held_out, rows, reward, results: dict, save) -> None:
    """Part (b): every arm for every seed (seed-major, so a partial run compares the arms fairly)."""
    arms = results["image"]["arms"]
    frames = load_frames(dataset, IMAGE_KEYS)
    for seed in args.image_seeds:
        for arm in args.image_arms:
            entry = arms.setdefault(arm, {"config": image_arm_overrides(arm), "seeds": {}})
            if str(seed) in entry["seeds"]:
                print(f"  {arm} seed {seed}: already in {args.output}, skipped", flush=True)
                continue
            entry["seeds"][str(seed)] = run_image_arm(
                args, dataset, frames, held_out, rows, reward, arm, seed
            )
            entry["summary"] = summarise(entry["seeds"])
            save()


def checkpoint_steps(steps: int, count: int = 5) -> list[int]:
    """`count` log-spaced evaluation steps up to `steps` (each evaluation runs the trunk on every
    held-out frame, so they are few)."""
    return sorted({int(round(step)) for step in np.geomspace(min(10, steps), steps, num=count)})


def plot_curves(image: dict, path: Path, title: str) -> None:
    """Held-out VOC and AUROC against CPU minutes: one line per seed, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for colour, (arm, entry) in enumerate(image.items()):
        for number, run in enumerate(entry["seeds"].values()):
            minutes = [point["train_seconds"] / 60 for point in run["curve"]]
            for axis, metric in zip(axes, ("voc_mean", "terminal_auroc"), strict=True):
                values = [np.nan if point[metric] is None else point[metric] for point in run["curve"]]
                axis.plot(
                    minutes,
                    values,
                    marker="o",
                    markersize=3,
                    color=f"C{colour}",
                    alpha=0.8,
                    label=f"{arm} ({len(entry['seeds'])} seeds)" if number == 0 else None,
                )
    for axis, metric in zip(
        axes, ("held-out VOC (successful episodes)", "terminal-success AUROC"), strict=True
    ):
        axis.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="target 0.9")
        axis.set_xlabel("training time (CPU minutes, 1 torch thread)")
        axis.set_ylabel(metric)
        axis.set_ylim(-0.5, 1.05)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny data and model, a few steps (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned; default 1)")
    parser.add_argument(
        "--seed", type=int, default=0, help="dataset seed, and the keypoint arms' initialisation/batch seed"
    )
    add_dataset_arguments(parser, default_mix="clean=40,noisy=20,detour=20,giveup=20")
    parser.add_argument(
        "--hold-out-every", type=int, default=None, help="hold out every N-th success and failure (default 4)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per keypoint arm (default 3000)"
    )
    parser.add_argument(
        "--labels", choices=("success_progress", "pistar"), default="success_progress", help="value labels"
    )
    parser.add_argument(
        "--reward-loss-weight", type=float, default=1.0, help="value-loss weight (not upstream_style's 0.1)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--image-steps", type=int, default=None, help="step cap per image run (default 20000)"
    )
    parser.add_argument(
        "--image-minutes", type=float, default=None, help="CPU-minute budget per image run (default 15)"
    )
    parser.add_argument(
        "--image-eval-minutes",
        type=float,
        default=None,
        help="score held-out episodes every N CPU minutes (3)",
    )
    parser.add_argument("--image-batch-size", type=int, default=None, help="image batch size (default 16)")
    parser.add_argument(
        "--image-arms",
        default=",".join(BACKBONE_NORM_ARMS),
        help=f"image arms: some of {','.join(BACKBONE_NORM_ARMS)} and timm:<model> (default: the three norms)",
    )
    parser.add_argument("--image-seeds", default="0", help="comma-separated training seeds of the image runs")
    parser.add_argument(
        "--resume", action="store_true", help="keep the image runs --output already holds and run the rest"
    )
    parser.add_argument(
        "--arms", default=",".join(ENCODING_ARMS), help="keypoint arms to run (default: all four)"
    )
    parser.add_argument("--parts", default="state,image", help="which parts to run: state, image or both")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated datasets are cached")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument(
        "--plot", type=Path, default=None, help="learning-curve PNG (default next to --output)"
    )
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "mix": "clean=2,giveup=2" if quick else "clean=40,noisy=20,detour=20,giveup=20",
        "max_steps": 40 if quick else 300,
        "hold_out_every": 2 if quick else 4,
        "steps": 10 if quick else 3000,
        "image_steps": 3 if quick else 20000,
        "image_minutes": 1.0 if quick else 15.0,
        "image_eval_minutes": 0.0 if quick else 3.0,
        "image_batch_size": 4 if quick else 16,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick:
        args.batch_size = min(args.batch_size, 8)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    if not args.arms or any(arm not in ENCODING_ARMS for arm in args.arms):
        parser.error(f"--arms takes some of {list(ENCODING_ARMS)}, got {args.arms}")
    args.image_arms = [arm.strip() for arm in args.image_arms.split(",") if arm.strip()]
    for arm in args.image_arms:
        try:
            image_arm_overrides(arm)
        except ValueError as error:
            parser.error(str(error))
    try:
        args.image_seeds = [int(seed) for seed in args.image_seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--image-seeds takes comma-separated integers, got {args.image_seeds!r}")
    if args.resume and args.output is None:
        parser.error("--resume needs --output (the results file to continue)")
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in args.parts if part not in ("state", "image")]
    if unknown or not args.parts:
        parser.error(f"--parts takes state and/or image, got {unknown or args.parts}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = pusht_dataset(args.mix, args.seed, args.max_steps, args.data_dir, args.hand_speed)
    outcomes = load_episode_outcomes(dataset)
    # Quick data is too short for the expert to finish, so the return scale is set by the step limit.
    returns = pistar_returns(
        dataset_frames(dataset), outcomes, max_length=args.max_steps if args.quick else None
    )
    returns["label"] = value_labels(returns, outcomes, args.labels)
    labels = returns[["index", "label"]]
    train_episodes, held_out_episodes = held_out_split(outcomes, args.hold_out_every)
    held_out = HeldOut(dataset, held_out_episodes, labels, outcomes)

    def rows(frames: Frames) -> torch.Tensor:
        return frames.rows_of(train_episodes)

    def reward(frames: Frames) -> torch.Tensor:
        return frames.extra_by_index(returns["index"].to_numpy(), returns["label"].to_numpy()).float()

    results = {
        "benchmark": "reward_model",
        "date": date.today().isoformat(),
        "quick": args.quick,
        "threads": args.threads,
        "seed": args.seed,
        "dataset": {
            "mix": args.mix,
            "max_steps": args.max_steps,
            "hand_speed": args.hand_speed,
            "episodes": dataset.meta.total_episodes,
        },
        "labels": args.labels,
        "reward_loss_weight": args.reward_loss_weight,
        "held_out_episodes": held_out_episodes,
        "held_out_successful": sum(bool(held_out.outcomes[e]) for e in held_out_episodes),
        "model": {
            k: v for k, v in act_settings(args.quick, STATE_KEYS, dataset).items() if "features" not in k
        },
        "lr": args.lr,
    }
    if "state" in args.parts:
        results["state"] = {"steps": args.steps, "batch_size": args.batch_size}
        results["state"]["arms"] = run_state_arms(args, dataset, held_out, rows, reward)
    if "image" in args.parts:
        results["image"] = {
            "step_cap": args.image_steps,
            "cpu_minutes_budget": args.image_minutes,
            "eval_every_cpu_minutes": args.image_eval_minutes,
            "batch_size": args.image_batch_size,
            "arms": {},
        }
        if args.resume and args.output.is_file():
            results["image"]["arms"] = resumable_image_arms(args.output, results)

        def save() -> None:
            results["wall_seconds"] = round(time.perf_counter() - started, 1)
            if args.output:
                write_json(args.output, results)

        run_image_arms(args, dataset, held_out, rows, reward, results, save)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    print_table(results)
    if args.output:
        write_json(args.output, results)
    if "image" in args.parts and (args.plot or args.output):
        plot = args.plot or args.output.with_suffix(".png")
        plot_curves(results["image"]["arms"], plot, "RewACT image reward model from random weights (CPU)")
        print(f"learning curve: {plot}")


RESUME_KEYS = ("seed", "dataset", "labels", "reward_loss_weight", "held_out_episodes", "lr")


def resumable_image_arms(path: Path, results: dict) -> dict:
    """The image runs of an earlier results file, when it was made with the same data and settings."""
    earlier = json.loads(path.read_text())
    settings = ("step_cap", "cpu_minutes_budget", "eval_every_cpu_minutes", "batch_size")
    mismatched = [key for key in RESUME_KEYS if earlier.get(key) != results[key]]
    mismatched += [key for key in settings if earlier.get("image", {}).get(key) != results["image"][key]]
    if mismatched:
        raise SystemExit(
            f"--resume: {path} was made with other settings ({', '.join(mismatched)}); not resuming"
        )
    return earlier["image"]["arms"]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_table(results: dict) -> None:
    print(
        f"threads={results['threads']} seed={results['seed']} labels={results['labels']} "
        f"mix={results['dataset']['mix']} "
        f"held-out episodes={len(results['held_out_episodes'])} ({results['held_out_successful']} successful)"
    )
    print(f"{'arm':<26}{'steps':>7}{'train s':>9}{'VOC':>8}{'MAE':>8}{'AUROC':>8}")
    rows = [(f"state/{n}", r) for n, r in results.get("state", {}).get("arms", {}).items()]
    rows += [
        (f"image/{arm} s{seed}", {**run, "metrics": run["final"]})
        for arm, entry in results.get("image", {}).get("arms", {}).items()
        for seed, run in entry["seeds"].items()
    ]
    for name, result in rows:
        metrics = result["metrics"]
        print(
            f"{name:<26}{result['steps']:>7}{result['train_seconds']:>9.0f}{_fmt(metrics['voc_mean']):>8}"
            f"{_fmt(metrics['mae']):>8}{_fmt(metrics['terminal_auroc']):>8}"
        )
    print("targets: VOC >= 0.9, AUROC >= 0.9 (SPEC §6)")


if __name__ == "__main__":
    main()
