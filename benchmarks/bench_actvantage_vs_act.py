"""ACTvantage against ACT and RA-BC on mixed-quality PushT data, in closed loop (SPEC §6, issue 11).

Data (keypoint observations, hand speed 40): by default 240 `clean` demonstrations and 360
`wronggoal` ones, in which an equally competent expert pushes the T to a pose a quarter turn off the
goal. The wrong pushes are as smooth and consistent as the right ones and are the majority, so
behaviour cloning on everything imitates mostly the wrong goal: room that advantage conditioning
can win back. Pipeline:
  value model   RewACT on pi*0.6 targets, trained on the train episodes; its VOC on the validation
                episodes picks the checkpoint, and VOC / AUROC are reported on the test episodes
  advantages    Monte Carlo, 30 % positive: from the value model (`compute_advantages`) and from
                the true returns with a time-only baseline (`time_baseline_advantages`, no model);
                with --successes-positive every frame of a success is positive besides
  RA-BC         the value model's progress file, weighted by LeRobot 0.6's own sample weighter
Arms, all with the same ACT settings (`policy_settings`: the fast small ACT, ENV features normalised, no
dropout, batch 256, lr 1e-3 decayed to 0 on a cosine), steps, training seeds and evaluation seeds:
  oracle           LeRobot's ACT on the clean episodes only
  filtered_bc      LeRobot's ACT on the successful episodes only: the simplest thing a user can do
                   with outcomes and no value model (the same episodes as oracle when, as in the
                   default mix, exactly the clean demonstrations succeed)
  act_all          LeRobot's ACT on every episode
  rabc             RewACT with reward_loss_weight=0 (an ACT that accepts `reduction="none"`) on every
                   episode, weighted by RA-BC (LeRobot >= 0.6)
  actvantage       ACTvantage on every episode, value-model advantages, at beta 1 and guided
                   (beta 1.5, 2) against --guidance-reference (default null: classifier-free)
  actvantage_true  the same with the true-return advantages
Each arm is evaluated in gym-pusht (300-step episodes) at every checkpoint (the learning curve) for
success, mean max coverage and throughput (successes per 1000 environment steps, steps to success);
the summary gives their means over seeds x episodes with 95 % bootstrap intervals, and the paired
difference of every arm from act_all.

    python benchmarks/bench_actvantage_vs_act.py --workers 2 --output benchmarks/results/actvantage_vs_act.json
    python benchmarks/bench_actvantage_vs_act.py --seeds 1 --output ...seed1.json   # one seed alone
    python benchmarks/bench_actvantage_vs_act.py --merge A.json B.json --output ALL.json
    python benchmarks/bench_actvantage_vs_act.py --quick     # seconds; checks the pipeline only
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.act.processor_act import make_act_pre_post_processors

from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy
from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from rewact_tools import (
    compute_advantages,
    compute_values,
    dataset_frames,
    load_episode_outcomes,
    make_pre_post_processors,
    pistar_returns,
    progress_table,
    time_baseline_advantages,
    write_progress_file,
)
from rewact_tools.advantage_display import positive_by_phase
from rewact_tools.atomic import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import closed_loop_stats  # noqa: E402
from common import (  # noqa: E402
    DATA_DIR,
    ENV_NORMALIZED,
    FAST_ACT,
    LR_SCHEDULES,
    HeldOut,
    SpawnPool,
    TrainSettings,
    act_settings,
    add_dataset_arguments,
    add_guidance_reference_argument,
    episode_settings,
    evaluate_guided,
    held_out_split,
    load_frames,
    pusht_dataset,
    refuse_invalid_guidance,
    save_figure,
    train_policy,
)
from harness import ResultsFile, add_run_arguments, finish_run_arguments, int_list, merge_runs, unchanged  # noqa: E402

KEYS = ("observation.state", "observation.environment_state")
DEFAULT_MIX = "clean=240,wronggoal=360"
ARMS = ("oracle", "filtered_bc", "act_all", "rabc", "actvantage", "actvantage_true")
REFERENCE_ARM = "act_all"
FILTERED_BC = "filtered_bc"


def policy_settings(args, dataset) -> dict:
    """The ACT fields every arm shares: the fast small ACT that learns PushT on CPU (bench_oracle)."""
    settings = {**act_settings(args.quick, KEYS, dataset), "dropout": 0.0}
    settings["normalization_mapping"] = ENV_NORMALIZED
    return settings if args.quick else {**settings, **FAST_ACT}


# ------------------------------------------------------------------------------------------------
# Value model and advantages


def train_value_model(args, dataset, frames, returns, outcomes) -> tuple[pd.DataFrame, dict]:
    """RewACT on pi*0.6 targets; the checkpoint with the best validation VOC gives every frame's value.

    Returns the values of all frames (`compute_values`' table) and the value model's report: its
    validation curve, the chosen step and its metrics on the test episodes.
    """
    train_and_validation, test = held_out_split(outcomes, args.hold_out_every)
    train, validation = held_out_split({e: outcomes[e] for e in train_and_validation}, args.hold_out_every)
    config = RewACTConfig(
        **{**policy_settings(args, dataset), "dropout": args.value_dropout},
        reward_source="dataset",
        optimizer_lr=args.value_lr,
    )
    preprocessor, _ = make_pre_post_processors(config, dataset.meta.stats)
    torch.manual_seed(args.seed)
    policy = RewACTPolicy(config)
    labels = returns[["index", "value_target"]].rename(columns={"value_target": "label"})
    validation_set = HeldOut(dataset, validation, labels, outcomes)
    curve: list[dict] = []
    best: dict = {}

    def checkpoint(step: int, seconds: float) -> None:
        metrics = validation_set.score(policy, preprocessor)
        curve.append({"step": step, "train_seconds": round(seconds, 1), **metrics})
        print(f"  value model step {step}: validation VOC {metrics['voc_mean']}", flush=True)
        if not best or _voc(metrics) > _voc(best["metrics"]):
            best.update(
                metrics=metrics, step=step, state={k: v.clone() for k, v in policy.state_dict().items()}
            )

    reward = frames.extra_by_index(returns["index"].to_numpy(), returns["value_target"].to_numpy()).float()
    info = train_policy(
        policy,
        preprocessor,
        frames,
        frames.rows_of(train),
        TrainSettings(steps=args.value_steps, batch_size=args.batch_size, lr=args.value_lr, seed=args.seed),
        extras={"reward": reward},
        checkpoints=range(args.value_eval_every, args.value_steps + 1, args.value_eval_every),
        on_checkpoint=checkpoint,
        desc="value model",
    )
    policy.load_state_dict(best.pop("state"))
    report = {
        **info,
        "episodes": {"train": len(train), "validation": len(validation), "test": len(test)},
        "chosen_step": best["step"],
        "validation": best["metrics"],
        "test": HeldOut(dataset, test, labels, outcomes).score(policy, preprocessor),
        "curve": curve,
    }
    values = compute_values(policy, dataset, batch_size=256, preprocessor=preprocessor)
    return values, report


def _voc(metrics: dict) -> float:
    """Validation VOC for choosing a checkpoint (none without successful episodes: the first wins)."""
    return -np.inf if metrics["voc_mean"] is None else float(metrics["voc_mean"])


def value_stage(args, dataset, frames, returns, outcomes) -> tuple[pd.DataFrame, dict]:
    """The value model's values and report, cached beside the dataset: parallel runs of other seeds
    (and reruns) reuse them instead of training the same model again."""
    cache = (
        Path(dataset.root)
        / "actvantage_bench"
        / (
            f"values_steps{args.value_steps}_every{args.value_eval_every}_lr{args.value_lr:g}"
            f"_dropout{args.value_dropout:g}_batch{args.batch_size}_holdout{args.hold_out_every}_seed{args.seed}"
        )
    )
    if (cache / "report.json").is_file():
        return pd.read_parquet(cache / "values.parquet"), json.loads((cache / "report.json").read_text())
    values, report = train_value_model(args, dataset, frames, returns, outcomes)
    cache.mkdir(parents=True, exist_ok=True)
    values.to_parquet(cache / "values.parquet", index=False)
    write_json(cache / "report.json", report)  # written last: its presence marks a complete cache
    return values, report


def quick_max_length(args) -> int | None:
    """Quick runs' data has no success long enough to set L_max; the step limit does it then."""
    return args.max_steps if args.quick else None


def advantage_tables(args, dataset, values, outcomes) -> dict[str, pd.DataFrame]:
    """Per ACTvantage arm, the advantages table it is conditioned on."""
    frames = dataset_frames(dataset)
    options = {
        "n_steps": args.n_steps,
        "positive_fraction": args.positive_fraction,
        "max_length": quick_max_length(args),
        "successes_positive": args.successes_positive,
    }
    return {
        "actvantage": compute_advantages(frames, values, outcomes, **options),
        "actvantage_true": time_baseline_advantages(frames, outcomes, **options),
    }


def positive_fractions(advantages: pd.DataFrame, settings: dict[int, str]) -> dict[str, dict[str, float]]:
    """How often each demonstration quality was labelled positive, per fifth of its episodes and in
    all (`all`): a check on the advantages, and on where in the successes the positives lie."""
    table = positive_by_phase(advantages, settings).round(3)
    return {str(setting): row.to_dict() for setting, row in table.iterrows()}


def rabc_weighter(values: pd.DataFrame, policy, directory: Path):
    """LeRobot 0.6's RA-BC sample weighter over RewACT's progress, as `lerobot-train` builds it."""
    from lerobot.utils.sample_weighting import SampleWeightingConfig, make_sample_weighter

    path = write_progress_file(progress_table(values), directory / "sarm_progress.parquet", overwrite=True)
    config = SampleWeightingConfig(type="rabc", progress_path=str(path), head_mode="rewact")
    return make_sample_weighter(config, policy, torch.device("cpu"))


# ------------------------------------------------------------------------------------------------
# Arms


def build_arm(args, name: str, seed: int, dataset, settings: dict) -> tuple:
    """A fresh (policy, preprocessor, postprocessor) of arm `name`, seeded with training seed `seed`;
    ACT for the imitation arms, RewACT for RA-BC, ACTvantage for every `actvantage*` arm."""
    torch.manual_seed(seed)
    if name in ("oracle", "filtered_bc", "act_all", "weighted_bc"):
        config = ACTConfig(**settings, optimizer_lr=args.lr)
        return ACTPolicy(config), *make_act_pre_post_processors(config, dataset.meta.stats)
    if name == "rabc":
        config = RewACTConfig(
            **settings, optimizer_lr=args.lr, reward_loss_weight=0.0, reward_source="dataset"
        )
        return RewACTPolicy(config), *make_pre_post_processors(config, dataset.meta.stats)
    config = ACTvantageConfig(**settings, optimizer_lr=args.lr)
    return ACTvantagePolicy(config), *make_pre_post_processors(config, dataset.meta.stats)


def run_arm(args, name: str, seed: int, dataset, frames, data: dict, directory: Path) -> dict[str, dict]:
    """Train arm `name` with training seed `seed`, evaluating at every checkpoint; returns results per
    evaluated variant (`actvantage_beta1.5`, ...): its learning curve and final evaluation."""
    settings = policy_settings(args, dataset)
    if name.startswith("actvantage"):
        settings["negative_weight"] = args.negative_weight
        settings["guidance_reference"] = args.guidance_reference
    policy, preprocessor, postprocessor = build_arm(args, name, seed, dataset, settings)
    rows = data.get(f"{name}_rows", torch.arange(len(frames)))
    extras, weighter = {}, None
    if name in data["advantages"]:
        extras = {"advantage": data["advantages"][name]}
    if name == "rabc":
        extras = {"reward": data["value_targets"]}
        weighter = rabc_weighter(data["values"], policy, directory)
    betas = args.betas if name.startswith("actvantage") else [None]
    curves: dict[str, list] = {_label(name, beta): [] for beta in betas}

    def evaluate(step: int, seconds: float) -> None:
        final = step == args.steps
        for beta in betas if final else betas[:1]:
            result = evaluate_guided(
                args, policy, preprocessor, postprocessor, beta, f"{_label(name, beta)} step {step}"
            )
            curves[_label(name, beta)].append({"step": step, "train_seconds": round(seconds, 1), **result})
            print(
                f"  seed {seed} {_label(name, beta)} step {step}: success "
                f"{result['success_rate']:.2f}, mean max coverage {result['mean_max_coverage']:.3f}",
                flush=True,
            )

    info = train_policy(
        policy,
        preprocessor,
        frames,
        rows,
        TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=seed,
            lr_schedule=args.lr_schedule,
        ),
        extras=extras,
        checkpoints=args.checkpoints,
        on_checkpoint=evaluate,
        desc=f"{name} seed {seed}",
        sample_weighter=weighter,
    )
    return {
        label: {**info, "train_frames": len(rows), "curve": curve, "final": curve[-1]}
        for label, curve in curves.items()
    }


def _label(name: str, beta: float | None) -> str:
    return name if beta is None else f"{name}_beta{beta:g}"


# ------------------------------------------------------------------------------------------------
# Jobs: the value model and every (arm, seed), run by a pool of worker processes

VALUE_ARMS = ("rabc", "actvantage", "actvantage_true")
"""The arms that wait for the value model (or for advantages, which come with it)."""

_worker: dict = {}
"""A worker process's arguments, dataset, frames and scratch folder, loaded once by `_start_worker`."""


def load_data(args, workers: int = 1) -> tuple:
    """The benchmark's dataset (generated by `workers` processes on first use) and its frames in memory."""
    dataset = pusht_dataset(
        args.mix, args.seed, args.max_steps, args.data_dir, args.hand_speed, with_image=False, workers=workers
    )
    return dataset, load_frames(dataset, KEYS)


def _start_worker(args, directory: Path) -> None:
    torch.set_num_threads(args.threads)
    dataset, frames = load_data(args)
    _worker.update(args=args, dataset=dataset, frames=frames, directory=directory)


def _value_job(returns: pd.DataFrame, outcomes: dict) -> tuple[pd.DataFrame, dict]:
    return value_stage(_worker["args"], _worker["dataset"], _worker["frames"], returns, outcomes)


def _arm_job(name: str, seed: int, data: dict) -> dict[str, dict]:
    directory = _worker["directory"] / f"{name}_seed{seed}"
    directory.mkdir()
    return run_arm(_worker["args"], name, seed, _worker["dataset"], _worker["frames"], data, directory)


def run_jobs(args, dataset, frames, returns, outcomes, settings, on_value, on_arm) -> None:
    """Train the value model and every (arm, seed) of `args` in `args.workers` processes: the arms that
    need no value model alongside it, the others once it is ready.

    `on_value(report, advantages)` and `on_arm(name, seed, result)` receive the results as they come.
    Every job seeds itself, so its batches and initial weights do not depend on the number of
    workers or on the order.
    """
    base = {
        "oracle_rows": frames.rows_of([e for e, setting in settings.items() if setting == "clean"]),
        "filtered_bc_rows": frames.rows_of([e for e, outcome in outcomes.items() if outcome]),
    }
    jobs = [(name, seed) for name in args.arms for seed in args.seeds]
    with SpawnPool(args.workers, _start_worker, (args,)) as pool:
        pool.submit("value", _value_job, returns, outcomes)
        for name, seed in jobs:
            if name not in VALUE_ARMS:
                pool.submit((name, seed), _arm_job, name, seed, {**base, "advantages": {}})
        while pool.pending:
            key, result = pool.next_result()
            if key != "value":
                on_arm(*key, result)
                continue
            values, report = result
            advantages = advantage_tables(args, dataset, values, outcomes)
            on_value(report, advantages)
            data = {
                **base,
                "advantages": {
                    name: frames.extra_by_index(
                        table["index"].to_numpy(), table["positive"].to_numpy()
                    ).bool()
                    for name, table in advantages.items()
                },
                "values": values,
                "value_targets": frames.extra_by_index(
                    returns["index"].to_numpy(), returns["value_target"].to_numpy()
                ).float(),
            }
            for name, seed in jobs:
                if name in VALUE_ARMS:
                    pool.submit((name, seed), _arm_job, name, seed, data)


# ------------------------------------------------------------------------------------------------
# Statistics


def summarise(per_seed: dict[str, dict], reference: str = REFERENCE_ARM) -> dict:
    """The statistics of every arm's final evaluation (`closed_loop_stats.summarise`)."""
    finals = {seed: {label: run["final"] for label, run in arms.items()} for seed, arms in per_seed.items()}
    return closed_loop_stats.summarise(finals, reference)


def summaries(per_seed: dict[str, dict]) -> dict:
    """`summary` (differences from ACT on everything) and, when filtered BC ran, `summary_vs_filtered_bc`
    (differences from the simplest thing a user can do with outcomes)."""
    labels = {label for evaluated in per_seed.values() for label in evaluated}
    return {"summary": summarise(per_seed)} | (
        {"summary_vs_filtered_bc": summarise(per_seed, FILTERED_BC)} if FILTERED_BC in labels else {}
    )


# ------------------------------------------------------------------------------------------------
# Output


def plot_results(results: dict, path: Path) -> None:
    """Learning curves (mean over seeds, shaded between the seeds' lowest and highest) of success and
    mean max coverage, and the final results with their 95 % intervals, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_seed, summary = results["per_seed"], results["summary"]
    labels = list(summary)
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    metrics = (("mean_max_coverage", "max_coverages"), ("success_rate", "successes"))
    for colour, label in enumerate(labels):
        runs = [per_seed[seed][label]["curve"] for seed in per_seed]
        steps = [point["step"] for point in runs[0]]
        for axis, (metric, _) in zip(axes[:2], metrics, strict=True):
            by_seed = np.array([[point[metric] for point in run] for run in runs])
            axis.plot(steps, by_seed.mean(0), marker="o", markersize=3, color=f"C{colour}", label=label)
            axis.fill_between(steps, by_seed.min(0), by_seed.max(0), color=f"C{colour}", alpha=0.12)
    for axis, (metric, _) in zip(axes[:2], metrics, strict=True):
        axis.set_xlabel(f"training steps (batch {results['batch_size']})")
        axis.set_ylabel(f"{metric.replace('_', ' ')} (mean, band: range of {len(per_seed)} seeds)")
        axis.set_ylim(0, 1)
        axis.legend(fontsize=7)
    positions = np.arange(len(labels))
    for offset, (metric, hatch) in zip(
        (-0.2, 0.2), (("success_rate", ""), ("mean_max_coverage", "//")), strict=True
    ):
        means = np.array([summary[label][metric]["mean"] for label in labels])
        intervals = np.array([summary[label][metric]["ci95"] for label in labels])
        axes[2].bar(
            positions + offset,
            means,
            width=0.4,
            yerr=[means - intervals[:, 0], intervals[:, 1] - means],
            capsize=3,
            color=[f"C{i}" for i in range(len(labels))],
            hatch=hatch,
            edgecolor="black",
            label=metric.replace("_", " "),
        )
    axes[2].set_xticks(positions, labels, rotation=35, ha="right", fontsize=7)
    axes[2].set_ylim(0, 1)
    axes[2].set_title("final: plain success, hatched coverage (95 % intervals)", fontsize=9)
    figure.suptitle(f"ACTvantage vs ACT vs RA-BC, PushT mix {results['dataset']['mix']}")
    save_figure(figure, path)


def print_table(results: dict) -> None:
    print(
        f"threads={results['threads']} seeds={results['seeds']} steps={results['steps']} "
        f"eval episodes/seed={results['eval']['episodes_per_seed']} mix={results['dataset']['mix']}"
    )
    print(f"value model (test episodes): {results['value_model']['test']}")
    print(f"positive fraction by setting: {results['advantage']['positive_fraction_by_setting']}")
    # Runs made before the phase table was recorded lack it; --merge still reads them.
    for name, fractions in results["advantage"].get("positive_fraction_by_setting_and_phase", {}).items():
        print(f"{name}: positive fraction by setting and fifth of the episode")
        print(pd.DataFrame(fractions).T.to_string())
    closed_loop_stats.print_summary(results["summary"], REFERENCE_ARM)
    if "summary_vs_filtered_bc" in results:
        print(f"differences from {FILTERED_BC}:")
        for label, entry in results["summary_vs_filtered_bc"].items():
            if label != FILTERED_BC:
                cells = "  ".join(
                    f"{metric} {closed_loop_stats.format_difference(entry[metric]['minus_' + FILTERED_BC])}"
                    for metric in closed_loop_stats.METRICS
                )
                print(f"  {label:<24} {cells}")


MERGE_SHARED = ("quick", "dataset", "model", "steps", "batch_size", "lr", "value_model", "eval")


def merge_results(sources: list[str], seeds: list[int] | None, output: Path) -> dict:
    """One results file from runs of other training seeds (or, renamed with `PATH:arm=label`, other
    settings) with the same data, value model and evaluation (`harness.merge_runs`)."""
    runs, per_seed = merge_runs(sources, MERGE_SHARED, seeds, unchanged)
    merged = {
        **runs[0],
        "per_seed": per_seed,
        "seeds": sorted(int(s) for s in per_seed),
        "arms": sorted(next(iter(per_seed.values()))),
    }
    merged |= summaries(per_seed) | {"merged_from": [Path(source).name for source in sources]}
    merged["wall_seconds"] = max(run["wall_seconds"] for run in runs)
    write_json(output, merged)
    return merged


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser, ARMS)
    parser.add_argument("--seed", type=int, default=0, help="dataset and value-model seed")
    add_dataset_arguments(parser, default_mix=DEFAULT_MIX)
    parser.add_argument("--value-steps", type=int, default=None, help="value-model steps (default 3000)")
    parser.add_argument("--value-eval-every", type=int, default=None, help="validation period (default 500)")
    parser.add_argument("--value-lr", type=float, default=4e-4)
    parser.add_argument("--value-dropout", type=float, default=0.1, help="the value model's dropout")
    parser.add_argument(
        "--hold-out-every", type=int, default=10, help="test and validation: every N-th episode"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="policy training steps per arm (default 8000)"
    )
    parser.add_argument("--checkpoints", default=None, help="steps to evaluate at (default 2000,4000,8000)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="the policies' learning rate")
    parser.add_argument(
        "--lr-schedule", choices=LR_SCHEDULES, default="cosine", help="the policies' lr schedule"
    )
    parser.add_argument(
        "--n-steps", type=int, default=None, help="N-step advantage horizon (default: Monte Carlo)"
    )
    parser.add_argument("--positive-fraction", type=float, default=0.3)
    parser.add_argument(
        "--successes-positive",
        action="store_true",
        help="every frame of a successful episode positive, the advantage ranking the rest "
        "(recap.py's default recipe)",
    )
    parser.add_argument(
        "--negative-weight",
        type=float,
        default=1.0,
        help="ACTvantage's loss weight of negative frames (its negative_weight; default 1, uniform)",
    )
    parser.add_argument(
        "--betas", default="1,1.5,2", help="ACTvantage guidance scales (the first on the curve)"
    )
    add_guidance_reference_argument(parser)
    parser.add_argument(
        "--eval-episodes", type=int, default=None, help="gym-pusht episodes per arm and seed (50)"
    )
    parser.add_argument(
        "--eval-seed", type=int, default=7, help="the evaluation episodes' reset seeds (all arms)"
    )
    parser.add_argument("--eval-max-steps", type=int, default=None, help="step cap per eval episode (300)")
    parser.add_argument("--env-batch", type=int, default=10, help="envs rolled out together")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated datasets are cached")
    args = parser.parse_args()
    finish_run_arguments(
        parser,
        args,
        ARMS,
        {
            "mix": ("clean=4,wronggoal=4", DEFAULT_MIX),
            "max_steps": (160, 300),  # quick: long enough for some clean successes
            "value_steps": (4, 3000),
            "value_eval_every": (2, 500),
            "steps": (4, 8000),
            "checkpoints": ("2,4", "2000,4000,8000"),
            "eval_episodes": (2, 50),
            "eval_max_steps": (10, 300),
        },
    )
    if args.quick:
        args.batch_size = min(args.batch_size, 8)
        args.env_batch = min(args.env_batch, 2)
        args.hold_out_every = 2
    args.betas = [float(beta) for beta in args.betas.split(",")]
    refuse_invalid_guidance(parser, "--betas", args.betas, args.guidance_reference)
    args.checkpoints = sorted(set(int_list(args.checkpoints)) | {args.steps})
    return args


def main() -> None:
    args = parse_args()
    if args.merge:
        results = merge_results(args.merge, args.merge_seeds, args.output)
        print_table(results)
        plot_results(results, args.output.with_suffix(".png"))
        return
    torch.set_num_threads(args.threads)
    dataset, frames = load_data(args, workers=args.workers)
    outcomes = load_episode_outcomes(dataset)
    settings = episode_settings(dataset)
    returns = pistar_returns(dataset_frames(dataset), outcomes, max_length=quick_max_length(args))
    results = {
        "benchmark": "actvantage_vs_act",
        "date": date.today().isoformat(),
        "quick": args.quick,
        "threads": args.threads,
        "workers": args.workers,
        "dataset": {
            "mix": args.mix,
            "seed": args.seed,
            "max_steps": args.max_steps,
            "hand_speed": args.hand_speed,
            "episodes": dataset.meta.total_episodes,
            "frames": dataset.meta.total_frames,
            "success_rate": float(np.mean([bool(o) for o in outcomes.values()])),
        },
        "model": {k: v for k, v in policy_settings(args, dataset).items() if "features" not in k},
        "arms": args.arms,
        "guidance_reference": args.guidance_reference,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "value_model": None,
        "advantage": None,
        "eval": {
            "episodes_per_seed": args.eval_episodes,
            "seed": args.eval_seed,
            "max_steps": args.eval_max_steps,
        },
        "seeds_requested": args.seeds,
        "complete": False,
    }
    results_file = ResultsFile(args.output, results)
    finished: dict[tuple[int, str], dict] = {}

    def on_value(report: dict, advantages: dict) -> None:
        results["value_model"] = report
        by_phase = {name: positive_fractions(table, settings) for name, table in advantages.items()}
        results["advantage"] = {
            "n_steps": args.n_steps or "monte_carlo",
            "positive_fraction": args.positive_fraction,
            "successes_positive": args.successes_positive,
            "negative_weight": args.negative_weight,
            "positive_fraction_by_setting": {
                name: {setting: row["all"] for setting, row in fractions.items()}
                for name, fractions in by_phase.items()
            },
            "positive_fraction_by_setting_and_phase": by_phase,
        }

    def on_arm(name: str, seed: int, arm: dict) -> None:
        finished[(seed, name)] = arm
        results["per_seed"] = {
            str(s): {
                label: run for n in args.arms if (s, n) in finished for label, run in finished[(s, n)].items()
            }
            for s in args.seeds
        }
        results_file.save()

    run_jobs(args, dataset, frames, returns, outcomes, settings, on_value, on_arm)
    results |= {"seeds": args.seeds, **summaries(results["per_seed"]), "complete": True}
    results_file.save()
    print_table(results)
    if args.output:
        plot_results(results, args.output.with_suffix(".png"))
        print(f"results: {args.output}\nplot: {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
