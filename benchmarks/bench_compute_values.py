"""`compute_values` against a one-frame-at-a-time loop over the same dataset (SPEC §6: ≥ 20×).

The loop is what one writes without `compute_values`: for every frame, `dataset[i]`, the policy's
pre-processor, `predict_value`. Both run in this process on the same policy and a synthetic local
PushT-shaped dataset (2-D state and action, 16-D environment state, optionally a 96×96 camera)
written here; torch's thread count is pinned (`--threads`, default 1) and printed. Each scenario
alternates the two methods `--repeats` times and reports median seconds per frame, their ratio,
and the largest difference between the two methods' values.

    python benchmarks/bench_compute_values.py                 # full: dim-256 keypoint and image models
    python benchmarks/bench_compute_values.py --quick         # tiny model, seconds (run by the tests)
    python benchmarks/bench_compute_values.py --output benchmarks/results/compute_values.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lerobot.configs.types import FeatureType
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors
from rewact_tools.atomic import write_json
from rewact_tools.lerobot_compat import dataset_to_policy_features
from rewact_tools.values import compute_values

TARGET_SPEEDUP = 20.0
TINY = {"dim_model": 32, "n_heads": 2, "dim_feedforward": 64, "n_encoder_layers": 1, "chunk_size": 4}
# The PushT model size of benchmarks/bench_overhead.py.
DIM_256 = {"dim_model": 256, "n_heads": 8, "dim_feedforward": 1024, "n_encoder_layers": 4, "chunk_size": 20}
SCENARIOS = {
    "tiny_keypoints": {"model": TINY, "episodes": 8, "length": 50, "image_size": None},
    "keypoints_dim256": {"model": DIM_256, "episodes": 20, "length": 100, "image_size": None},
    "image96_dim256": {"model": DIM_256, "episodes": 4, "length": 50, "image_size": 96},
}
QUICK_SCENARIOS = ("tiny_keypoints",)
FULL_SCENARIOS = ("keypoints_dim256", "image96_dim256")


def write_dataset(
    root: Path, episodes: int, length: int, image_size: int | None, seed: int = 0
) -> LeRobotDataset:
    """A local dataset of smooth synthetic PushT-shaped episodes (images stored as images)."""
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,), "names": None},
        "observation.environment_state": {"dtype": "float32", "shape": (16,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
    }
    if image_size:
        features["observation.image"] = {
            "dtype": "image",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channel"],
        }
    dataset = LeRobotDataset.create(
        repo_id="local/bench_values",
        fps=10,
        features=features,
        root=root,
        use_videos=False,
        image_writer_threads=0,
    )
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        keypoints = np.cumsum(rng.normal(0, 0.05, size=(length, 16)), axis=0).astype(np.float32)
        agent = np.cumsum(rng.normal(0, 0.05, size=(length, 2)), axis=0).astype(np.float32)
        for frame in range(length):
            item = {
                "observation.state": agent[frame],
                "observation.environment_state": keypoints[frame],
                "action": agent[min(frame + 1, length - 1)],
                "task": "push the T",
            }
            if image_size:
                item["observation.image"] = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
            dataset.add_frame(item)
        dataset.save_episode()
    dataset.finalize()
    return LeRobotDataset("local/bench_values", root=root)


def build_policy(dataset: LeRobotDataset, model: dict, device: str) -> RewACTPolicy:
    features = dataset_to_policy_features(dataset.meta.features)
    config = RewACTConfig(
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
        n_action_steps=model["chunk_size"],
        pretrained_backbone_weights=None,
        device=device,
        **model,
    )
    return RewACTPolicy(config).to(device).eval()


def one_frame_loop(policy: RewACTPolicy, dataset: LeRobotDataset, preprocessor) -> np.ndarray:
    """The baseline: one dataset item, one pre-processing call and one model call per frame."""
    values = np.empty(len(dataset), dtype=np.float32)
    with torch.inference_mode():
        for position in range(len(dataset)):
            batch = preprocessor(dataset[position])
            observation = {k: v for k, v in batch.items() if k.startswith("observation.")}
            values[position] = policy.predict_value(observation).item()
    return values


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def run_scenario(name: str, batch_size: int, repeats: int, device: str, workdir: Path) -> dict:
    settings = SCENARIOS[name]
    dataset = write_dataset(workdir / name, settings["episodes"], settings["length"], settings["image_size"])
    torch.manual_seed(0)
    policy = build_policy(dataset, settings["model"], device)
    preprocessor, _ = make_rewact_pre_post_processors(policy.config, dataset.meta.stats)

    def batched():
        return compute_values(
            policy, dataset, batch_size=batch_size, preprocessor=preprocessor, progress=False
        )

    batched()  # warm-up (allocator, first-call overheads)
    loop_times, batched_times = [], []
    for _ in range(repeats):
        seconds, loop_values = _timed(lambda: one_frame_loop(policy, dataset, preprocessor))
        loop_times.append(seconds / len(dataset))
        seconds, table = _timed(batched)
        batched_times.append(seconds / len(dataset))
    loop_s, batched_s = statistics.median(loop_times), statistics.median(batched_times)
    return {
        "frames": len(dataset),
        "image_size": settings["image_size"],
        "model": settings["model"],
        "loop_ms_per_frame": 1000 * loop_s,
        "compute_values_ms_per_frame": 1000 * batched_s,
        "speedup": loop_s / batched_s,
        "max_abs_value_difference": float(np.abs(table["value"].to_numpy() - loop_values).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny model on a small dataset (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned; default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="compute_values batch size (default 64)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds per scenario (default 3, quick 2)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    names = QUICK_SCENARIOS if args.quick else FULL_SCENARIOS

    results = {
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "device": args.device,
        "repeats": repeats,
        "machine": platform.processor() or platform.machine(),
        "scenarios": {},
    }
    print(f"threads={results['threads']} device={args.device} batch_size={args.batch_size} repeats={repeats}")
    print(
        f"{'scenario':<18}{'frames':>8}{'loop ms/frame':>16}{'batched ms/frame':>18}{'speed-up':>10}{'max |diff|':>12}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_compute_values_") as workdir:
        for name in names:
            row = run_scenario(name, args.batch_size, repeats, args.device, Path(workdir))
            results["scenarios"][name] = row
            print(
                f"{name:<18}{row['frames']:>8}{row['loop_ms_per_frame']:>16.3f}"
                f"{row['compute_values_ms_per_frame']:>18.3f}{row['speedup']:>9.1f}x{row['max_abs_value_difference']:>12.1e}"
            )
    print(f"target: compute_values >= {TARGET_SPEEDUP:.0f}x the one-frame loop")
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main()
