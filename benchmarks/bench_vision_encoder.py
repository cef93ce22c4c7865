"""Train-step cost of a frozen vs a trained timm ViT trunk in RewACT (issue: frozen encoders run
under `no_grad`, so a frozen trunk skips its backward pass and its activations are not kept).

Both policies are RewACT with the same random-weight `vit_small_patch16_224` trunk (timm), image +
state, and the transformer of `bench_overhead.py`; their steps are interleaved in one process and
timed in process CPU time (one torch thread), so other jobs on the machine slow neither. Two camera
sizes: 224x224 (the ViT's native size, 196 patches) and PushT's 96x96 (36 patches).

    python benchmarks/bench_vision_encoder.py --output benchmarks/results/vision_encoder.json
    python benchmarks/bench_vision_encoder.py --quick     # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from rewact_tools.atomic import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import features, inference_step, interleaved_medians, synthetic_batch, train_step  # noqa: E402

TRANSFORMER = {
    "dim_model": 256,
    "n_heads": 8,
    "dim_feedforward": 1024,
    "n_encoder_layers": 4,
    "chunk_size": 20,
}
TINY_TRANSFORMER = {
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "chunk_size": 4,
}
VIT = ("vit_small_patch16_224", {})
TINY_VIT = ("vit_tiny_patch16_224", {"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 8})
# (name, image size, batch size)
SCENARIOS = [("native_224", 224, 8), ("pusht_96", 96, 16)]
QUICK_SCENARIOS = [("quick_32", 32, 4)]


def make_policy(image_size: int, transformer: dict, vit: tuple[str, dict], frozen: bool) -> RewACTPolicy:
    name, kwargs = vit
    config = RewACTConfig(
        **transformer,
        **features(image_size),
        n_action_steps=transformer["chunk_size"],
        pretrained_backbone_weights=None,
        device="cpu",
        reward_source="dataset",
        vision_encoder_type="timm",
        vision_backbone=name,
        vision_encoder_kwargs=kwargs,
        freeze_vision_encoder=frozen,
    )
    return RewACTPolicy(config)


def measure(image_size: int, batch_size: int, transformer: dict, vit: tuple[str, dict], repeats: int) -> dict:
    torch.manual_seed(0)
    policies = {
        kind: make_policy(image_size, transformer, vit, kind == "frozen") for kind in ("frozen", "trained")
    }
    optimizers = {kind: torch.optim.AdamW(p.get_optim_params(), lr=1e-4) for kind, p in policies.items()}
    batch = synthetic_batch(batch_size, transformer["chunk_size"], image_size, num_frames=1000)
    batch["observation.image"] = torch.rand_like(batch["observation.image"])  # images arrive in [0, 1]
    for policy in policies.values():
        policy.train()
    steps = {
        kind: (lambda kind=kind: train_step(policies[kind], optimizers[kind], batch)) for kind in policies
    }
    train = interleaved_medians(steps, repeats, warmup=1, clock=time.process_time)
    with torch.no_grad():
        infer = interleaved_medians(
            {kind: (lambda kind=kind: inference_step(policies[kind], batch)) for kind in policies},
            repeats,
            warmup=1,
            clock=time.process_time,
        )
    trunk = policies["trained"].model.backbone
    return {
        "image_size": image_size,
        "batch_size": batch_size,
        "trunk_parameters": sum(p.numel() for p in trunk.parameters()),
        "tokens_per_camera": int(trunk(batch["observation.image"][:1])["feature_map"][0, 0].numel()),
        "train_step_cpu_s": train,
        "inference_cpu_s": infer,
        "train_ratio_frozen_over_trained": train["frozen"] / train["trained"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny ViT and transformer, few repeats (seconds)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned; default 1)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed steps per variant (default 10; quick 3)"
    )
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformer, vit = (TINY_TRANSFORMER, TINY_VIT) if args.quick else (TRANSFORMER, VIT)
    repeats = args.repeats or (3 if args.quick else 10)
    scenarios = {
        name: measure(size, batch, transformer, vit, repeats)
        for name, size, batch in (QUICK_SCENARIOS if args.quick else SCENARIOS)
    }
    results = {
        "threads": args.threads,
        "clock": "process CPU time",
        "repeats": repeats,
        "vit": {"name": vit[0], "kwargs": vit[1]},
        "transformer": transformer,
        "scenarios": scenarios,
    }
    print(
        f"threads={args.threads} repeats={repeats} trunk={vit[0]} (random weights) dim_model={transformer['dim_model']}"
    )
    print(
        f"{'scenario':<12}{'batch':>6}{'tokens':>8}{'frozen s':>10}{'trained s':>11}{'ratio':>8}{'infer s':>9}"
    )
    for name, row in scenarios.items():
        train = row["train_step_cpu_s"]
        print(
            f"{name:<12}{row['batch_size']:>6}{row['tokens_per_camera']:>8}{train['frozen']:>10.3f}"
            f"{train['trained']:>11.3f}{row['train_ratio_frozen_over_trained']:>8.3f}"
            f"{row['inference_cpu_s']['trained']:>9.3f}"
        )
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main()
