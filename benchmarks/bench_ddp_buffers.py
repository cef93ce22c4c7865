"""What a per-frame table costs a DDP training step: RewACT's value targets for 10 k and for 2 M frames.

PyTorch DDP (LeRobot wraps every policy with `broadcast_buffers=True`) sends every module buffer from
rank 0 at each forward. RewACT's target table and ACTvantage's advantage lookup have one entry per
dataset frame, so they are kept off the buffers; this measures that a step with a 2 M-frame table
costs what one with a 10 k-frame table does (goal: ratio <= 1.05), beside the layout it replaced (the
table as a buffer, which DDP broadcasts), and the bytes DDP broadcasts per step in each.

Two processes (gloo on CPU, 1 torch thread each, as `torchrun --nproc_per_node 2` runs them) train
the same small RewACT on synthetic env-state batches whose targets come from the table; the arms'
steps are interleaved, so machine load affects all alike. Reports median step times and ratios.

    python benchmarks/bench_ddp_buffers.py --output benchmarks/results/ddp_buffers.json
    python benchmarks/bench_ddp_buffers.py --quick     # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lerobot.configs.types import FeatureType, PolicyFeature
from torch.nn.parallel import DistributedDataParallel

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from lerobot_policy_rewact.targets import TargetTable
from rewact_tools.atomic import write_json

ARMS = {
    # name: (frames in the table, kept as a module buffer (the replaced layout))
    "table_10k": (10_000, False),
    "table_2M": (2_000_000, False),
    "buffer_2M": (2_000_000, True),
}


def make_policy(frames: int, as_buffer: bool, dim_model: int) -> RewACTPolicy:
    """A small env-state RewACT whose value targets come from a `frames`-entry table."""
    config = RewACTConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
            "observation.environment_state": PolicyFeature(FeatureType.ENV, (16,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))},
        dim_model=dim_model,
        n_heads=4,
        dim_feedforward=4 * dim_model,
        n_encoder_layers=2,
        n_decoder_layers=1,
        chunk_size=10,
        n_action_steps=10,
        use_vae=False,
        pretrained_backbone_weights=None,
        device="cpu",
    )
    policy = RewACTPolicy(config)
    table = torch.rand(frames)
    policy.target_table = TargetTable(table, "progress")
    if as_buffer:
        policy.register_buffer("replaced_table_layout", table, persistent=False)
    return policy


def buffer_bytes(module: torch.nn.Module) -> int:
    """What DDP broadcasts from rank 0 at every forward: all of the module's buffers."""
    return sum(buffer.numel() * buffer.element_size() for buffer in module.buffers())


def batch(size: int, frames: int, generator: torch.Generator) -> dict:
    return {
        "observation.state": torch.randn(size, 2, generator=generator),
        "observation.environment_state": torch.randn(size, 16, generator=generator),
        "action": torch.randn(size, 10, 2, generator=generator),
        "action_is_pad": torch.zeros(size, 10, dtype=torch.bool),
        "index": torch.randint(0, frames, (size,), generator=generator),
    }


def worker(rank: int, world: int, port: int, args: argparse.Namespace, queue) -> None:
    torch.set_num_threads(args.threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    arms = {}
    for name, (frames, as_buffer) in ARMS.items():
        policy = make_policy(frames, as_buffer, args.dim_model)
        arms[name] = (
            DistributedDataParallel(policy, broadcast_buffers=True, find_unused_parameters=True),
            torch.optim.AdamW(policy.parameters(), lr=1e-4),
            buffer_bytes(policy),
            frames,
        )
    generator = torch.Generator().manual_seed(rank)
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    for step in range(args.warmup + args.steps):
        for name, (ddp, optimizer, _, frames) in arms.items():  # interleaved: equal load
            data = batch(args.batch_size, frames, generator)
            dist.barrier()
            start = time.perf_counter()
            loss, _ = ddp(data)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    if rank == 0:
        queue.put(
            {name: {"bytes_broadcast_per_step": arms[name][2], "step_seconds": times[name]} for name in ARMS}
        )
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model (seconds)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per arm (default 200)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 20)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dim-model", type=int, default=None, help="default 128")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--output", type=Path, default=None, help="results JSON")
    args = parser.parse_args()
    for name, full, quick in (("steps", 200, 3), ("warmup", 20, 1), ("dim_model", 128, 32)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    processes = mp.start_processes(
        worker, args=(2, free_port(), args, queue), nprocs=2, start_method="spawn", join=False
    )
    measured = queue.get()  # before joining: a large result would fill the pipe and block the sender
    while not processes.join():
        pass
    baseline = statistics.median(measured["table_10k"]["step_seconds"])
    results = {
        "benchmark": "ddp_buffers",
        "quick": args.quick,
        "processes": 2,
        "threads": args.threads,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "dim_model": args.dim_model,
        "arms": {
            name: {
                "table_frames": ARMS[name][0],
                "table_is_buffer": ARMS[name][1],
                "bytes_broadcast_per_step": arm["bytes_broadcast_per_step"],
                "median_step_seconds": round(statistics.median(arm["step_seconds"]), 5),
                "ratio_to_table_10k": round(statistics.median(arm["step_seconds"]) / baseline, 3),
            }
            for name, arm in measured.items()
        },
    }
    print(
        f"DDP step, 2 processes (gloo, CPU), {args.threads} thread(s) each, batch {args.batch_size} per process"
    )
    print(f"{'arm':<12}{'table frames':>14}{'buffer bytes/step':>20}{'median step s':>16}{'ratio':>8}")
    for name, arm in results["arms"].items():
        print(
            f"{name:<12}{arm['table_frames']:>14,}{arm['bytes_broadcast_per_step']:>20,}"
            f"{arm['median_step_seconds']:>16.4f}{arm['ratio_to_table_10k']:>8.3f}"
        )
    if args.output is not None:
        write_json(args.output, results)
        print(f"results: {args.output}")


if __name__ == "__main__":
    main()
