"""`compute_values` split across processes: frames per second with one process and with two.

Under a multi-process launch (torchrun, accelerate launch) `compute_values` gives each process every
other batch and gathers the table in each (`rewact_tools.distributed`). Here one process, then two
(gloo on CPU, 1 torch thread each, as `torchrun --nproc_per_node 2` runs them), predict the values
of the same synthetic PushT-shaped dataset with the same model (`bench_compute_values.py`'s dim-256
keypoint scenario); each setting runs `--repeats` times, alternating, and the median wall time of
the whole pass (gather included) is reported, with the throughput ratio and a check that both
tables are identical. On N GPUs, one process per GPU, the ratio is bounded by N and by the reading,
which each process does for its own batches.

    python benchmarks/bench_sharded_values.py --output benchmarks/results/sharded_values.json
    python benchmarks/bench_sharded_values.py --quick     # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bench_compute_values import DIM_256, TINY, build_policy, write_dataset
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact import make_rewact_pre_post_processors
from rewact_tools.atomic import write_json
from rewact_tools.values import compute_values


def timed_pass(root: Path, model: dict, batch_size: int) -> tuple[float, pd.DataFrame]:
    dataset = LeRobotDataset("local/bench_values", root=root)
    torch.manual_seed(0)
    policy = build_policy(dataset, model, "cpu")
    preprocessor, _ = make_rewact_pre_post_processors(policy.config, dataset.meta.stats)
    if dist.is_initialized():
        dist.barrier()
    start = time.perf_counter()
    table = compute_values(policy, dataset, batch_size, preprocessor=preprocessor, progress=False)
    return time.perf_counter() - start, table


def worker(rank: int, world: int, port: int, root: Path, model: dict, batch_size: int, queue) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    seconds, table = timed_pass(root, model, batch_size)
    if rank == 0:
        queue.put((seconds, table))
    dist.destroy_process_group()


def two_processes(root: Path, model: dict, batch_size: int) -> tuple[float, pd.DataFrame]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    processes = mp.start_processes(
        worker, args=(2, port, root, model, batch_size, queue), nprocs=2, start_method="spawn", join=False
    )
    result = queue.get()  # before joining: a large result would fill the pipe and block the sender
    while not processes.join():
        pass
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny model on a small dataset (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="passes per setting (default 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, default=None, help="results JSON")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    model, episodes, length = (TINY, 4, 30) if args.quick else (DIM_256, 40, 100)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "dataset"
        write_dataset(root, episodes, length, None)
        seconds: dict[int, list[float]] = {1: [], 2: []}
        tables = {}
        for _ in range(repeats):
            seconds[1].append((one := timed_pass(root, model, args.batch_size))[0])
            seconds[2].append((two := two_processes(root, model, args.batch_size))[0])
            tables = {1: one[1], 2: two[1]}
    pd.testing.assert_frame_equal(tables[1], tables[2])
    frames = episodes * length
    median = {processes: statistics.median(values) for processes, values in seconds.items()}
    results = {
        "benchmark": "sharded_values",
        "quick": args.quick,
        "threads_per_process": 1,
        "frames": frames,
        "batch_size": args.batch_size,
        "model": model,
        "repeats": repeats,
        "median_seconds": {str(k): round(v, 4) for k, v in median.items()},
        "frames_per_second": {str(k): round(frames / v, 1) for k, v in median.items()},
        "speedup_two_over_one": round(median[1] / median[2], 3),
        "tables_identical": True,
    }
    print(f"compute_values over {frames} frames, batch {args.batch_size}, 1 torch thread per process")
    for processes in (1, 2):
        print(
            f"  {processes} process(es): {median[processes]:.3f} s, {frames / median[processes]:.0f} frames/s"
        )
    print(f"  speed-up {results['speedup_two_over_one']:.2f}x; the two tables are identical")
    if args.output is not None:
        write_json(args.output, results)
        print(f"results: {args.output}")


if __name__ == "__main__":
    main()
