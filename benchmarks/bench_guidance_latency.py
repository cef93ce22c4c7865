"""Latency of ACTvantage inference with guidance (β = 2) against one conditional pass (β = 1).

SPEC §6 target: guidance costs at most 1.3× one conditional pass. Every call predicts a fresh chunk
(`predict_action_chunk`, no action queue); β = 1 and β = 2 calls alternate so that load from other
processes on a shared machine hits both alike. Reports medians (the target is on their ratio) and
minimums (steadier on a busy machine), in milliseconds.

    python benchmarks/bench_guidance_latency.py          # full: ACT's default transformer, 2 input sizes
    python benchmarks/bench_guidance_latency.py --quick    # tiny model, a few calls (run by the test suite)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from lerobot.configs.types import FeatureType, PolicyFeature

from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy
from rewact_tools.atomic import write_json

TARGET_RATIO = 1.3

# LeRobot's ACT transformer defaults (dim 512, feed-forward 3200, 4 encoder layers, chunk 100).
ACT_DEFAULTS = {"dim_model": 512, "dim_feedforward": 3200, "n_encoder_layers": 4, "chunk_size": 100}
SCENARIOS = {
    "tiny": {
        "dim_model": 32,
        "dim_feedforward": 64,
        "n_encoder_layers": 1,
        "chunk_size": 8,
        "cameras": 1,
        "image_hw": (32, 32),
    },
    # PushT: one 96x96 camera.
    "pusht_96": {**ACT_DEFAULTS, "cameras": 1, "image_hw": (96, 96)},
    # A real-robot-like setting: two 240x320 cameras.
    "two_cams_240x320": {**ACT_DEFAULTS, "cameras": 2, "image_hw": (240, 320)},
}
QUICK_SCENARIOS = ("tiny",)
FULL_SCENARIOS = ("pusht_96", "two_cams_240x320")


def camera_keys(settings: dict) -> list[str]:
    return [f"observation.images.cam{i}" for i in range(settings["cameras"])]


def build_policy(settings: dict, device: str) -> ACTvantagePolicy:
    """A policy with 2-D state and action, the scenario's cameras and random weights."""
    height, width = settings["image_hw"]
    cameras = {
        key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width)) for key in camera_keys(settings)
    }
    config = ACTvantageConfig(
        dim_model=settings["dim_model"],
        dim_feedforward=settings["dim_feedforward"],
        n_encoder_layers=settings["n_encoder_layers"],
        chunk_size=settings["chunk_size"],
        n_action_steps=settings["chunk_size"],
        pretrained_backbone_weights=None,
        device=device,
        input_features={**cameras, "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
    )
    return ACTvantagePolicy(config).to(device).eval()


def observation(settings: dict, batch_size: int, device: str) -> dict[str, torch.Tensor]:
    height, width = settings["image_hw"]
    batch = {key: torch.rand(batch_size, 3, height, width, device=device) for key in camera_keys(settings)}
    batch["observation.state"] = torch.randn(batch_size, 2, device=device)
    return batch


def _timed_call(policy: ACTvantagePolicy, batch: dict, guidance_scale: float, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        policy.predict_action_chunk(batch, guidance_scale=guidance_scale)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(
    policy: ACTvantagePolicy, batch: dict, calls: int, warmup: int, device: str
) -> dict[float, list[float]]:
    """Seconds per call for β = 1 and β = 2, interleaved."""
    for _ in range(warmup):
        for beta in (1.0, 2.0):
            _timed_call(policy, batch, beta, device)
    times: dict[float, list[float]] = {1.0: [], 2.0: []}
    for _ in range(calls):
        for beta in (1.0, 2.0):
            times[beta].append(_timed_call(policy, batch, beta, device))
    return times


def run_scenario(name: str, batch_size: int, calls: int, warmup: int, device: str) -> dict:
    settings = SCENARIOS[name]
    torch.manual_seed(0)
    policy = build_policy(settings, device)
    times = measure(policy, observation(settings, batch_size, device), calls, warmup, device)
    conditional_ms = 1000 * statistics.median(times[1.0])
    guided_ms = 1000 * statistics.median(times[2.0])
    # Minimums: the least disturbed calls, a steadier estimate than medians on a busy shared machine.
    minimum_ms = {beta: 1000 * min(seconds) for beta, seconds in times.items()}
    return {
        "scenario": name,
        "model": {**settings, "image_hw": list(settings["image_hw"])},
        "batch_size": batch_size,
        "calls_per_beta": calls,
        "median_ms_beta_1": conditional_ms,
        "median_ms_beta_2": guided_ms,
        "ratio": guided_ms / conditional_ms,
        "min_ms_beta_1": minimum_ms[1.0],
        "min_ms_beta_2": minimum_ms[2.0],
        "ratio_of_minimums": minimum_ms[2.0] / minimum_ms[1.0],
        "meets_target": guided_ms / conditional_ms <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny model and a few calls (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="observations per call (default 1)")
    parser.add_argument(
        "--calls", type=int, default=None, help="timed calls per β (default 5 quick, 30 full)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads < 1 or args.batch_size < 1 or (args.calls is not None and args.calls < 1):
        parser.error("--threads, --batch-size and --calls must be positive")

    torch.set_num_threads(args.threads)
    calls = args.calls or (5 if args.quick else 30)
    names = QUICK_SCENARIOS if args.quick else FULL_SCENARIOS
    print(
        f"ACTvantage guidance latency ({'quick' if args.quick else 'full'}): device {args.device}, "
        f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"batch {args.batch_size}, {calls} calls per β, fresh chunk per call"
    )
    results = []
    for name in names:
        results.append(
            run_scenario(name, args.batch_size, calls, warmup=2 if args.quick else 5, device=args.device)
        )
    print(
        f"{'scenario':<18} | {'β=1 median':>10} | {'β=2 median':>10} | {'ratio':>6} | "
        f"{'β=1 min':>8} | {'β=2 min':>8} | {'ratio':>6} | median ratio ≤ {TARGET_RATIO}"
    )
    for row in results:
        print(
            f"{row['scenario']:<18} | {row['median_ms_beta_1']:>10.2f} | {row['median_ms_beta_2']:>10.2f} | "
            f"{row['ratio']:>6.3f} | {row['min_ms_beta_1']:>8.2f} | {row['min_ms_beta_2']:>8.2f} | "
            f"{row['ratio_of_minimums']:>6.3f} | {'met' if row['meets_target'] else 'NOT met'}"
        )
    if args.output is not None:
        report = {
            "mode": "quick" if args.quick else "full",
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "target_ratio": TARGET_RATIO,
            "results": results,
        }
        write_json(args.output, report)


if __name__ == "__main__":
    main()
