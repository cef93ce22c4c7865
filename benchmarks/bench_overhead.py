"""RewACT's cost over LeRobot's ACT at equal settings: train step and inference (SPEC §6: ≤ 1.05×).

Both policies are built from the same ACT settings and fed the same synthetic batches; their steps
are interleaved in one process so that machine load affects both alike. Reports medians and ratios.

    python benchmarks/bench_overhead.py            # full: PushT-sized image + state, dim 256
    python benchmarks/bench_overhead.py --quick    # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from rewact_tools.atomic import write_json


def features(image_size: int) -> dict:
    inputs = {
        "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
        "observation.environment_state": PolicyFeature(FeatureType.ENV, (16,)),
    }
    if image_size:
        inputs["observation.image"] = PolicyFeature(FeatureType.VISUAL, (3, image_size, image_size))
    return {"input_features": inputs, "output_features": {"action": PolicyFeature(FeatureType.ACTION, (2,))}}


def synthetic_batch(batch_size: int, chunk: int, image_size: int, num_frames: int) -> dict:
    batch = {
        "observation.state": torch.randn(batch_size, 2),
        "observation.environment_state": torch.randn(batch_size, 16),
        "action": torch.randn(batch_size, chunk, 2),
        "action_is_pad": torch.zeros(batch_size, chunk, dtype=torch.bool),
        "reward": torch.rand(batch_size),
        "index": torch.randint(0, num_frames, (batch_size,)),
    }
    if image_size:
        batch["observation.image"] = torch.randn(batch_size, 3, image_size, image_size)
    return batch


def train_step(policy, optimizer, batch) -> None:
    loss, _ = policy.forward(batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def inference_step(policy, batch) -> None:
    policy.predict_action_chunk({k: v for k, v in batch.items() if k.startswith("observation.")})


def interleaved_medians(
    steps: dict, repeats: int, warmup: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Median seconds per call of each step function on `clock`, the functions taking turns every repeat."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(warmup + repeats):
        for name, step in steps.items():
            start = clock()
            step()
            if repeat >= warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned; default 1)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.quick:
        act = {"dim_model": 32, "n_heads": 2, "dim_feedforward": 64, "n_encoder_layers": 1, "chunk_size": 4}
        batch_size, image_size, repeats = 4, 32, args.repeats or 5
    else:
        act = {
            "dim_model": 256,
            "n_heads": 8,
            "dim_feedforward": 1024,
            "n_encoder_layers": 4,
            "chunk_size": 20,
        }
        batch_size, image_size, repeats = 16, 96, args.repeats or 30
    act |= {"n_action_steps": act["chunk_size"], "pretrained_backbone_weights": None, "device": "cpu"}
    act |= features(image_size)

    policies = {
        "act": ACTPolicy(ACTConfig(**act)),
        # Same trunk normalisation as ACT, so the ratio isolates the value head and state dropout.
        "rewact": RewACTPolicy(RewACTConfig(**act, backbone_norm="frozen_bn", reward_source="dataset")),
        # What RewACT uses by default without pretrained weights (trainable BatchNorm).
        "rewact_bn": RewACTPolicy(RewACTConfig(**act, backbone_norm="batch_norm", reward_source="dataset")),
    }
    batch = synthetic_batch(batch_size, act["chunk_size"], image_size, num_frames=1000)
    optimizers = {name: torch.optim.AdamW(p.parameters(), lr=1e-4) for name, p in policies.items()}
    for policy in policies.values():
        policy.train()
    train = interleaved_medians(
        {n: (lambda n=n: train_step(policies[n], optimizers[n], batch)) for n in policies}, repeats, warmup=2
    )
    with torch.no_grad():
        infer = interleaved_medians(
            {n: (lambda n=n: inference_step(policies[n], batch)) for n in policies}, repeats, warmup=2
        )
    results = {
        "threads": args.threads,
        "batch_size": batch_size,
        "image_size": image_size,
        "dim_model": act["dim_model"],
        "repeats": repeats,
        "train_step_s": train,
        "inference_s": infer,
        "train_ratio_rewact_over_act": train["rewact"] / train["act"],
        "inference_ratio_rewact_over_act": infer["rewact"] / infer["act"],
        "train_ratio_rewact_batchnorm_over_act": train["rewact_bn"] / train["act"],
    }
    print(
        f"threads={args.threads} batch={batch_size} image={image_size} dim_model={act['dim_model']} repeats={repeats}"
    )
    print(f"{'policy':<12}{'train step (ms)':>18}{'inference (ms)':>18}")
    for name in policies:
        print(f"{name:<12}{1000 * train[name]:>18.1f}{1000 * infer[name]:>18.1f}")
    print(f"RewACT/ACT train step ratio: {results['train_ratio_rewact_over_act']:.3f} (target <= 1.05)")
    print(f"RewACT/ACT inference ratio:  {results['inference_ratio_rewact_over_act']:.3f} (target <= 1.05)")
    print(
        f"RewACT (trainable BatchNorm)/ACT train step ratio: {results['train_ratio_rewact_batchnorm_over_act']:.3f}"
    )
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main()
