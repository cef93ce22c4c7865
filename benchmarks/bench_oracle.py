"""Can LeRobot's ACT imitate the built-in PushT expert? The oracle diagnosis of issue 11.

The ACTvantage benchmark means something only if ACT trained on *clean* demonstrations (the oracle)
learns the task. This benchmark trains LeRobot's ACT (the benchmarks' small keypoint setting) on clean
demonstrations for each arm and, at every checkpoint, measures
  open loop    L1 error (px, x + y) of the first predicted action and of the whole chunk on the
               frames of held-out episodes, beside the error of "command the agent's own position"
               (how far the expert's commands lead the agent: what a policy that learnt nothing of
               the expert's intent would score);
  closed loop  success and mean max coverage in gym-pusht (300-step episodes) from fresh start
               states, executing `n_action_steps` of each chunk and with ACT's temporal ensembling,
               and from the start states of training episodes (is failure a matter of generalising
               to new states, or of imitating at all?).
Arms differ in the data, the normalisation and the model:
  raw           the expert's raw commands (hand_speed 0), LeRobot ACT's normalisation, which leaves
                `observation.environment_state` (ENV features) in pixels
  raw_env_norm  the same data, ENV features normalised (mean/std) like the state
  hand40, hand20  the expert's commands moving at most 40 / 20 px per step, ENV normalised
  hand40_fast   hand40 with the fast small ACT (dim 64, 2 heads, feed-forward 256: ~2.7x less
                compute per step) at lr 1e-3; hand40_fast_lr4e-4 the same at the ACT arms' lr
  mlp_raw, mlp_hand40  the same data as raw / hand40 (ENV normalised) for the simplest behaviour
                cloning model, an MLP from the normalised observation to the action chunk (3 x 512
                ReLU, L1, lr 1e-3): can the demonstrations be imitated at all, and at what cost?
All arms share batches (256), steps, chunk (10) and executed steps (5); the ACT arms are the
benchmarks' small ACT (dim 128, 2 encoder / 1 decoder layers, no VAE) without dropout, lr 4e-4.

    python benchmarks/bench_oracle.py --output benchmarks/results/oracle.json
    python benchmarks/bench_oracle.py --quick     # seconds; checks the pipeline only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import torch
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.act.processor_act import make_act_pre_post_processors
from lerobot.utils.constants import ACTION

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DATA_DIR,
    ENV_NORMALIZED,
    FAST_ACT,
    Frames,
    TrainSettings,
    act_settings,
    evaluate_pusht,
    load_frames,
    pusht_dataset,
    save_figure,
    train_policy,
)
from harness import add_run_arguments, finish_run_arguments, int_list, read_runs  # noqa: E402

from rewact_tools.atomic import write_json
from rewact_tools.pusht import EPISODES_SIDECAR

KEYS = ("observation.state", "observation.environment_state")
TEMPORAL_ENSEMBLE_COEFF = 0.01
"""ACT paper's value: chunk predictions weighted by exp(-0.01 * age)."""


@dataclass(frozen=True)
class Arm:
    hand_speed: float
    normalize_env: bool
    model: str = "act"
    lr: float | None = None
    """Learning rate of this arm (None: --lr)."""
    act_overrides: tuple[tuple[str, Any], ...] = ()
    """ACT config fields this arm changes from the benchmarks' small ACT."""


ARMS = {
    "raw": Arm(hand_speed=0.0, normalize_env=False),
    "raw_env_norm": Arm(hand_speed=0.0, normalize_env=True),
    "hand40": Arm(hand_speed=40.0, normalize_env=True),
    "hand20": Arm(hand_speed=20.0, normalize_env=True),
    "hand40_fast": Arm(hand_speed=40.0, normalize_env=True, lr=1e-3, act_overrides=tuple(FAST_ACT.items())),
    "hand40_fast_lr4e-4": Arm(hand_speed=40.0, normalize_env=True, act_overrides=tuple(FAST_ACT.items())),
    "mlp_raw": Arm(hand_speed=0.0, normalize_env=True, model="mlp", lr=1e-3),
    "mlp_hand40": Arm(hand_speed=40.0, normalize_env=True, model="mlp", lr=1e-3),
}


class ChunkMLP(torch.nn.Module):
    """Behaviour cloning's simplest model with ACT's interface: normalised observation -> action chunk.

    It reads the same normalised batch as ACT (ACT's pre-processor), is trained with the same L1 over
    valid chunk positions, and executes `n_action_steps` of each chunk, so it differs from the ACT arms
    in the network alone.
    """

    def __init__(self, config: ACTConfig, width: int = 512, depth: int = 3):
        super().__init__()
        self.config = config
        inputs = sum(config.input_features[key].shape[0] for key in KEYS)
        self.action_dim = config.output_features[ACTION].shape[0]
        layers: list[torch.nn.Module] = []
        for size in [inputs] + [width] * (depth - 1):
            layers += [torch.nn.Linear(size, width), torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, config.chunk_size * self.action_dim))
        self._queue: deque[torch.Tensor] = deque()

    def get_optim_params(self):
        return self.parameters()

    def predict_action_chunk(self, batch: dict) -> torch.Tensor:
        features = torch.cat([batch[key] for key in KEYS], dim=-1)
        return self.net(features).view(len(features), self.config.chunk_size, self.action_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        valid = ~batch["action_is_pad"]
        error = (self.predict_action_chunk(batch) - batch[ACTION]).abs().mean(-1)
        return (error * valid).sum() / valid.sum(), {}

    def reset(self) -> None:
        self._queue.clear()

    def select_action(self, batch: dict) -> torch.Tensor:
        if not self._queue:
            self._queue.extend(self.predict_action_chunk(batch)[:, : self.config.n_action_steps].unbind(1))
        return self._queue.popleft()


def act_config(args, dataset, arm: Arm, **overrides) -> ACTConfig:
    settings = {**act_settings(args.quick, KEYS, dataset), "dropout": args.dropout}
    if arm.normalize_env:
        settings["normalization_mapping"] = ENV_NORMALIZED
    return ACTConfig(**{**settings, **dict(arm.act_overrides), **overrides}, optimizer_lr=arm.lr or args.lr)


def open_loop_errors(policy, preprocessor, postprocessor, frames: Frames, rows: torch.Tensor) -> dict:
    """L1 (px) of the predicted chunk against the demonstrated one, and of holding the agent still."""
    chunk = policy.config.chunk_size
    errors = []
    policy.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), 512):
            batch = frames.batch(rows[start : start + 512], chunk)
            predicted = postprocessor(policy.predict_action_chunk(preprocessor({k: batch[k] for k in KEYS})))
            error = (predicted - batch["action"]).abs().sum(-1)
            errors.append(error.masked_fill(batch["action_is_pad"], float("nan")))
    error = torch.cat(errors)
    batch = frames.batch(rows, 1)
    hold = (batch["action"][:, 0] - batch["observation.state"]).abs().sum(-1)
    return {
        "first_action_l1_px": round(float(error[:, 0].nanmedian()), 2),
        "chunk_l1_px": round(float(error.nanmedian()), 2),
        "hold_position_l1_px": round(float(hold.median()), 2),
    }


def closed_loop(args, policy, ensembled, preprocessor, postprocessor, train_seeds) -> dict:
    """gym-pusht rollouts: chunked from fresh and from training start states, and temporally
    ensembled from fresh ones (ACT arms only: `ensembled` is None for the MLP)."""
    keep = ("success_rate", "mean_max_coverage", "successes", "max_coverages")
    sets = [("chunked", policy, None), ("training_starts", policy, train_seeds)]
    if ensembled is not None:
        ensembled.load_state_dict(policy.state_dict())
        sets.append(("ensembled", ensembled, None))
    results = {}
    for name, rollout_policy, seeds in sets:
        result = evaluate_pusht(
            rollout_policy,
            preprocessor,
            postprocessor,
            args.eval_episodes,
            seed=args.eval_seed,
            max_steps=args.eval_max_steps,
            desc=name,
            seeds=seeds,
        )
        results[name] = {key: result[key] for key in keep}
    return results


def run_arm(args, name: str, arm: Arm) -> dict:
    dataset = pusht_dataset(
        f"clean={args.episodes}", args.seed, args.max_steps, args.data_dir, arm.hand_speed, with_image=False
    )
    frames = load_frames(dataset, KEYS)
    episodes = sorted(set(frames.episode_index.tolist()))
    held_out = episodes[:: args.hold_out_every]
    train_rows = frames.rows_of([e for e in episodes if e not in held_out])
    held_out_rows = frames.rows_of(held_out)
    sidecar = json.loads((Path(dataset.root) / EPISODES_SIDECAR).read_text())["episodes"]
    train_seeds = [e["seed"] for e in sidecar if e["episode_index"] not in held_out][: args.eval_episodes]
    config = act_config(args, dataset, arm)
    preprocessor, postprocessor = make_act_pre_post_processors(config, dataset.meta.stats)
    torch.manual_seed(args.train_seed)
    if arm.model == "mlp":
        policy, ensembled = ChunkMLP(config), None
    else:
        policy = ACTPolicy(config)
        ensembled = ACTPolicy(
            act_config(args, dataset, arm, n_action_steps=1, temporal_ensemble_coeff=TEMPORAL_ENSEMBLE_COEFF)
        )
    curve = []

    def checkpoint(step: int, train_seconds: float) -> None:
        point = {"step": step, "train_seconds": round(train_seconds, 1)}
        point.update(open_loop_errors(policy, preprocessor, postprocessor, frames, held_out_rows))
        point.update(closed_loop(args, policy, ensembled, preprocessor, postprocessor, train_seeds))
        curve.append(point)
        print(
            f"{name} step {step}: open-loop L1 {point['first_action_l1_px']} px "
            f"(hold {point['hold_position_l1_px']}); coverage chunked "
            f"{point['chunked']['mean_max_coverage']:.3f}, ensembled "
            f"{_coverage(point, 'ensembled')}, training starts "
            f"{point['training_starts']['mean_max_coverage']:.3f}",
            flush=True,
        )

    info = train_policy(
        policy,
        preprocessor,
        frames,
        train_rows,
        TrainSettings(
            steps=args.steps, batch_size=args.batch_size, lr=config.optimizer_lr, seed=args.train_seed
        ),
        checkpoints=args.checkpoints,
        on_checkpoint=checkpoint,
        desc=name,
    )
    return {
        "model": arm.model,
        "lr": config.optimizer_lr,
        "hand_speed": arm.hand_speed,
        "normalize_env": arm.normalize_env,
        "dataset": {"name": Path(dataset.root).name, "frames": len(frames), "held_out_episodes": held_out},
        "train_seconds": round(info["train_seconds"], 1),
        "curve": curve,
    }


def plot_curves(arms: dict, path: Path, batch_size: int) -> None:
    """Mean max coverage and success against training steps, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for colour, (name, arm) in enumerate(arms.items()):
        steps = [point["step"] for point in arm["curve"]]
        for axis, metric in zip(axes, ("mean_max_coverage", "success_rate"), strict=True):
            for mode, style in (("chunked", "-"), ("ensembled", ":")):
                if mode not in arm["curve"][0]:
                    continue
                values = [point[mode][metric] for point in arm["curve"]]
                label = f"{name} ({mode})"
                axis.plot(steps, values, style, marker="o", markersize=3, color=f"C{colour}", label=label)
    for axis, metric, target in zip(axes, ("mean max coverage", "success rate"), (0.6, 0.25), strict=True):
        axis.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"oracle bar {target}")
        axis.set_xlabel(f"training steps (batch {batch_size})")
        axis.set_ylabel(metric)
        axis.set_ylim(0, 1)
        axis.legend(fontsize=7)
    figure.suptitle("Behaviour cloning of clean scripted PushT demonstrations (keypoints, gym-pusht)")
    save_figure(figure, path)


def _coverage(point: dict, rollouts: str) -> str:
    return f"{point[rollouts]['mean_max_coverage']:.3f}" if rollouts in point else "-"


def print_table(arms: dict) -> None:
    print(
        f"\n{'arm':<14}{'step':>7}{'L1 px':>8}{'hold px':>9}{'cov chunk':>11}{'cov ens':>9}{'cov train':>11}{'succ':>6}"
    )
    for name, arm in arms.items():
        for point in arm["curve"]:
            print(
                f"{name:<14}{point['step']:>7}{point['first_action_l1_px']:>8.1f}"
                f"{point['hold_position_l1_px']:>9.1f}{point['chunked']['mean_max_coverage']:>11.3f}"
                f"{_coverage(point, 'ensembled'):>9}"
                f"{point['training_starts']['mean_max_coverage']:>11.3f}"
                f"{point['chunked']['success_rate']:>6.2f}"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser, list(ARMS), seeds=False)
    parser.add_argument("--episodes", type=int, default=None, help="clean demonstrations (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--train-seed", type=int, default=0, help="initialisation and batch-order seed")
    parser.add_argument("--max-steps", type=int, default=None, help="episode step limit (default 300)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per arm (default 4000)")
    parser.add_argument("--checkpoints", default=None, help="steps to evaluate at (default 1000,2000,4000)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=4e-4, help="ACT arms' learning rate")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="ACT's transformer dropout (the benchmarks' usual 0.1 underfits)",
    )
    parser.add_argument("--hold-out-every", type=int, default=10, help="hold out every N-th episode")
    parser.add_argument("--eval-episodes", type=int, default=None, help="per rollout set (default 50)")
    parser.add_argument("--eval-seed", type=int, default=7, help="gym-pusht reset seeds of fresh starts")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    finish_run_arguments(
        parser,
        args,
        list(ARMS),
        {
            "episodes": (4, 300),
            "max_steps": (40, 300),
            "steps": (4, 4000),
            "checkpoints": ("2,4", "1000,2000,4000"),
            "eval_episodes": (2, 50),
        },
    )
    args.eval_max_steps = 10 if args.quick else 300
    args.checkpoints = int_list(args.checkpoints)
    return args


def merge_results(sources: list[str], output: Path) -> dict:
    """One results file from several runs of this benchmark with the same settings but other arms."""
    shared = ("quick", "episodes", "seed", "train_seed", "eval_seed", "eval_episodes", "steps", "batch_size")
    paths = [Path(source) for source in sources]
    runs = read_runs(paths, shared)
    merged = {**runs[0], "arms": {}, "merged_from": [path.name for path in paths]}
    for run in runs:
        merged["arms"].update(run["arms"])
    write_json(output, merged)
    return merged


def main() -> None:
    args = parse_args()
    if args.merge:
        results = merge_results(args.merge, args.output)
        print_table(results["arms"])
        plot_curves(results["arms"], args.output.with_suffix(".png"), results["batch_size"])
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = {
        "benchmark": "oracle",
        "date": date.today().isoformat(),
        "quick": args.quick,
        "threads": args.threads,
        "episodes": args.episodes,
        "seed": args.seed,
        "train_seed": args.train_seed,
        "eval_seed": args.eval_seed,
        "eval_episodes": args.eval_episodes,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "dropout": args.dropout,
        "arms": {},
    }
    for name in args.arms:
        results["arms"][name] = run_arm(args, name, ARMS[name])
        results["wall_seconds"] = round(time.perf_counter() - started, 1)
        if args.output:
            write_json(args.output, results)
    print_table(results["arms"])
    if args.output:
        plot = args.output.with_suffix(".png")
        plot_curves(results["arms"], plot, args.batch_size)
        print(f"results: {args.output}\nlearning curve: {plot}")


if __name__ == "__main__":
    main()
