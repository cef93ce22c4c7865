"""ACTvantage vs ACT on mixed-quality PushT data, rolled out in gym-pusht (SPEC §6).

Pipeline, all on keypoint observations (16-D `observation.environment_state` + agent position):
dataset (clean, noisy, detour and give-up demonstrations) -> RewACT value model trained on pi*0.6
targets -> `compute_values` -> `compute_advantages` (Monte Carlo by default, 30 % positive) ->
then, with the same small ACT settings, steps and seed:
  act_mixed        LeRobot's ACT on every episode
  act_clean        LeRobot's ACT on the clean episodes only (reference: what filtering by hand gives)
  actvantage       ACTvantage on every episode, conditioned on the advantage indicator,
                   evaluated with beta = 1 (conditional) and beta = 2 (classifier-free guidance)
Each policy is evaluated in gym-pusht (episodes capped at 300 steps) for success rate and mean max
coverage (the maximum coverage an episode reaches, averaged over episodes).

    python benchmarks/bench_actvantage_vs_act.py --output benchmarks/results/actvantage_vs_act.json
    python benchmarks/bench_actvantage_vs_act.py --quick     # seconds; checks the pipeline only
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
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
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DATA_DIR,
    TrainSettings,
    act_settings,
    add_dataset_arguments,
    episode_settings,
    evaluate_pusht,
    load_frames,
    pusht_dataset,
    train_policy,
)

from rewact_tools.atomic import write_json

KEYS = ("observation.state", "observation.environment_state")


def train_value_model(args, dataset, frames, returns):
    """RewACT on pi*0.6 targets over every episode; returns the policy and its pre-processor."""
    config = RewACTConfig(**act_settings(args.quick, KEYS, dataset), reward_source="dataset")
    preprocessor, _ = make_pre_post_processors(config, dataset.meta.stats)
    torch.manual_seed(args.seed)
    policy = RewACTPolicy(config)
    reward = frames.extra_by_index(returns["index"].to_numpy(), returns["value_target"].to_numpy()).float()
    info = train_policy(
        policy,
        preprocessor,
        frames,
        torch.arange(len(frames)),
        TrainSettings(steps=args.value_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed),
        extras={"reward": reward},
        desc="value model",
    )
    return policy, preprocessor, info


def advantage_table(args, dataset, value_policy, value_preprocessor, outcomes):
    values = compute_values(value_policy, dataset, batch_size=256, preprocessor=value_preprocessor)
    return compute_advantages(
        dataset_frames(dataset),
        values,
        outcomes,
        n_steps=args.n_steps,
        positive_fraction=args.positive_fraction,
        max_length=args.max_steps if args.quick else None,
    )


def positive_fraction_by_setting(advantages, settings: dict[int, str]) -> dict[str, float]:
    """How often each demonstration quality was labelled positive: a check on the value model."""
    by_setting = advantages.assign(setting=advantages["episode_index"].map(settings))
    return {name: round(float(group["positive"].mean()), 3) for name, group in by_setting.groupby("setting")}


def build_arms(args, dataset) -> dict:
    """Fresh policies and processors of every arm, with identical ACT settings."""
    settings = act_settings(args.quick, KEYS, dataset)
    act_config = ACTConfig(**settings, optimizer_lr=args.lr)
    actvantage_config = ACTvantageConfig(**settings, optimizer_lr=args.lr)
    arms = {}
    for name in ("act_mixed", "act_clean"):
        torch.manual_seed(args.train_seed)
        arms[name] = (ACTPolicy(act_config), *make_act_pre_post_processors(act_config, dataset.meta.stats))
    torch.manual_seed(args.train_seed)
    arms["actvantage"] = (
        ACTvantagePolicy(actvantage_config),
        *make_pre_post_processors(actvantage_config, dataset.meta.stats),
    )
    return arms


def run_seed(args, dataset, frames, advantages, settings: dict[int, str]) -> dict:
    """Train every arm with `args.train_seed` and evaluate it; returns metrics per evaluated arm."""
    positive = frames.extra_by_index(advantages["index"].to_numpy(), advantages["positive"].to_numpy()).bool()
    clean = [episode for episode, setting in settings.items() if setting == "clean"]
    rows = {
        "act_mixed": torch.arange(len(frames)),
        "act_clean": frames.rows_of(clean),
        "actvantage": torch.arange(len(frames)),
    }
    extras = {"actvantage": {"advantage": positive}}
    results = {}
    for name, (policy, preprocessor, postprocessor) in build_arms(args, dataset).items():
        train = train_policy(
            policy,
            preprocessor,
            frames,
            rows[name],
            TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.train_seed),
            extras=extras.get(name, {}),
            desc=f"{name} seed {args.train_seed}",
        )
        betas = args.betas if name == "actvantage" else [None]
        for beta in betas:
            label = name if beta is None else f"{name}_beta{beta:g}"
            if beta is not None:
                policy.config.guidance_scale = beta
            evaluation = evaluate_pusht(
                policy,
                preprocessor,
                postprocessor,
                episodes=args.eval_episodes,
                seed=1000 + args.train_seed,
                env_batch=args.env_batch,
                max_steps=args.eval_max_steps,
                desc=label,
            )
            results[label] = {**train, "train_frames": len(rows[name]), **evaluation}
            print(
                f"  seed {args.train_seed} {label}: success {evaluation['success_rate']:.2f} "
                f"mean max coverage {evaluation['mean_max_coverage']:.3f}",
                flush=True,
            )
    return results


def summarise(per_seed: dict[int, dict]) -> dict:
    """Per arm: mean and per-seed success rate and mean max coverage."""
    arms = next(iter(per_seed.values())).keys()
    summary = {}
    for arm in arms:
        success = [per_seed[seed][arm]["success_rate"] for seed in per_seed]
        coverage = [per_seed[seed][arm]["mean_max_coverage"] for seed in per_seed]
        summary[arm] = {
            "success_rate_mean": float(np.mean(success)),
            "mean_max_coverage_mean": float(np.mean(coverage)),
            "success_rate_per_seed": success,
            "mean_max_coverage_per_seed": coverage,
            "episodes_per_seed": per_seed[next(iter(per_seed))][arm]["episodes"],
        }
    return summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny data and model, 2 eval episodes (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned; default 1)")
    parser.add_argument("--seed", type=int, default=0, help="dataset and value-model seed")
    parser.add_argument(
        "--seeds", default=None, help="policy training seeds, comma-separated (default 0,1,2)"
    )
    add_dataset_arguments(parser, default_mix="clean=40,noisy=20,detour=20,giveup=20")
    parser.add_argument(
        "--value-steps", type=int, default=None, help="value-model training steps (default 3000)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="policy training steps per arm (default 8000)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--n-steps", type=int, default=None, help="N-step advantage horizon (default: Monte Carlo)"
    )
    parser.add_argument("--positive-fraction", type=float, default=0.3)
    parser.add_argument("--betas", default="1,2", help="ACTvantage guidance scales to evaluate")
    parser.add_argument(
        "--eval-episodes", type=int, default=None, help="gym-pusht episodes per arm and seed (50)"
    )
    parser.add_argument("--eval-max-steps", type=int, default=None, help="step cap per eval episode (300)")
    parser.add_argument("--env-batch", type=int, default=10, help="envs rolled out together")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated datasets are cached")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    defaults = {
        "seeds": "0" if args.quick else "0,1,2",
        "mix": "clean=2,giveup=2" if args.quick else "clean=40,noisy=20,detour=20,giveup=20",
        "max_steps": 40 if args.quick else 300,
        "value_steps": 5 if args.quick else 3000,
        "steps": 5 if args.quick else 8000,
        "eval_episodes": 2 if args.quick else 50,
        "eval_max_steps": 20 if args.quick else 300,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.batch_size = min(args.batch_size, 8)
        args.env_batch = min(args.env_batch, 2)
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.betas = [float(beta) for beta in args.betas.split(",")]
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = pusht_dataset(args.mix, args.seed, args.max_steps, args.data_dir, args.hand_speed)
    outcomes = load_episode_outcomes(dataset)
    settings = episode_settings(dataset)
    frames = load_frames(dataset, KEYS)
    returns = pistar_returns(
        dataset_frames(dataset), outcomes, max_length=args.max_steps if args.quick else None
    )
    value_policy, value_preprocessor, value_info = train_value_model(args, dataset, frames, returns)
    advantages = advantage_table(args, dataset, value_policy, value_preprocessor, outcomes)
    results = {
        "benchmark": "actvantage_vs_act",
        "date": date.today().isoformat(),
        "quick": args.quick,
        "threads": args.threads,
        "dataset": {
            "mix": args.mix,
            "seed": args.seed,
            "max_steps": args.max_steps,
            "hand_speed": args.hand_speed,
            "episodes": dataset.meta.total_episodes,
            "frames": dataset.meta.total_frames,
            "success_rate": float(np.mean([bool(o) for o in outcomes.values()])),
        },
        "model": {k: v for k, v in act_settings(args.quick, KEYS, dataset).items() if "features" not in k},
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "value_model": value_info,
        "advantage": {
            "n_steps": args.n_steps or "monte_carlo",
            "positive_fraction": args.positive_fraction,
            "positive_fraction_by_setting": positive_fraction_by_setting(advantages, settings),
        },
        "eval": {"episodes_per_seed": args.eval_episodes, "max_steps": args.eval_max_steps},
        "seeds_requested": args.seeds,
    }
    per_seed: dict[int, dict] = {}
    for seed in args.seeds:
        args.train_seed = seed
        per_seed[seed] = run_seed(args, dataset, frames, advantages, settings)
        # Written after every seed, so a long run that is stopped still leaves its finished seeds.
        results |= {"seeds": list(per_seed), "summary": summarise(per_seed), "per_seed": per_seed}
        results["complete"] = len(per_seed) == len(args.seeds)
        results["wall_seconds"] = round(time.perf_counter() - started, 1)
        if args.output:
            write_json(args.output, results)
    print_table(results)


def print_table(results: dict) -> None:
    print(
        f"threads={results['threads']} seeds={results['seeds']} steps={results['steps']} "
        f"eval episodes/seed={results['eval']['episodes_per_seed']} mix={results['dataset']['mix']}"
    )
    print(f"positive fraction by setting: {results['advantage']['positive_fraction_by_setting']}")
    print(f"{'arm':<20}{'success':>10}{'mean max coverage':>20}")
    for arm, summary in results["summary"].items():
        print(f"{arm:<20}{summary['success_rate_mean']:>10.2f}{summary['mean_max_coverage_mean']:>20.3f}")


if __name__ == "__main__":
    main()
