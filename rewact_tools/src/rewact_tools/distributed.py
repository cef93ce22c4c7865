"""Scripts under a multi-process launch (`torchrun`, `accelerate launch`): who this process is, how the
frames of a dataset pass are split, and how the pieces come back together.

A launch sets `WORLD_SIZE`, `RANK` and `LOCAL_RANK` in every process. Dataset passes (`compute_values`
and the scripts on it) split their batches across the processes and gather the result in every
process; only the main process (rank 0) prints and writes. Without a launch nothing changes.
Standard library only at import time; torch loads when a process group is joined.
"""

from __future__ import annotations

import os
import time
from typing import Any

OTHER_PROCESSES_EXIT_DELAY_S = 5.0
"""How long a launched process other than the main one waits before it exits on an expected error:
the launcher stops every process once one exits, and only the main process prints the reason."""


def launched_processes() -> int:
    """How many processes the launch started (1 without a launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def single_process_refusal(script: str) -> str | None:
    """Why `script`, which does not split its work, will not run under this launch (None when no
    multi-process launch started it): its processes would each write the same output."""
    if launched_processes() == 1:
        return None
    return (
        f"{script} runs as one process and writes its output from it; start it without torchrun or "
        f"accelerate launch (this launch started {launched_processes()})"
    )


def leave_the_reason_to_the_main_process() -> None:
    """On any other process than the main one, wait before exiting on an error, so that the main
    process prints why the launch stops before the launcher ends it."""
    if not is_main_process():
        time.sleep(OTHER_PROCESSES_EXIT_DELAY_S)


def exit_if_launched(script: str) -> None:
    """For scripts outside `cli.run_cli`: exit with `single_process_refusal` under a launch."""
    refusal = single_process_refusal(script)
    if refusal is not None:
        leave_the_reason_to_the_main_process()
        raise SystemExit(f"{script}: error: {refusal}" if is_main_process() else 2)


def join_launch(device: str) -> str:
    """Join the launch's process group (NCCL for CUDA, gloo otherwise) when there is one; returns the
    device this process computes on (`cuda` becomes `cuda:<LOCAL_RANK>`: one GPU per process)."""
    if launched_processes() == 1:
        return device
    import torch.distributed as dist

    cuda = str(device).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if str(device) == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def in_process_group() -> bool:
    """Whether this process joined a process group of several processes."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def my_share(count: int) -> range:
    """The positions out of `count` (batches, frames) this process handles: every world-size-th."""
    if not in_process_group():
        return range(count)
    import torch.distributed as dist

    return range(dist.get_rank(), count, dist.get_world_size())


def gather_pieces(piece: Any) -> list[Any]:
    """Every process's `piece`, in rank order, in every process (a picklable object each)."""
    if not in_process_group():
        return [piece]
    import torch.distributed as dist

    pieces: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(pieces, piece)
    return pieces
