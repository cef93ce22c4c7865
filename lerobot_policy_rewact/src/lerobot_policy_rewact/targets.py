"""Per-frame value targets derived from a dataset's metadata.

Stock `lerobot-train` hands the policy neither `frame_index` nor custom keys, only the global
`index`. So the policy builds, once, a table of targets indexed by the global frame index from
`dataset_meta` (episode boundaries, fps, and the keypoint sidecar under the dataset root), and looks
the batch's `index` up in it. The table is a non-persistent buffer: a checkpoint loads on any dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lerobot_policy_rewact.reward_labels import KEYPOINTS_RELATIVE_PATH, dense_reward_table, progress


def episode_lengths_from_meta(dataset_meta: Any) -> tuple[dict[int, int], dict[int, int]]:
    """Episode lengths and first global index per episode, read from LeRobot dataset metadata."""
    episodes = dataset_meta.episodes
    indices = [int(e) for e in episodes["episode_index"]]
    lengths = dict(zip(indices, (int(n) for n in episodes["length"]), strict=True))
    starts = dict(zip(indices, (int(s) for s in episodes["dataset_from_index"]), strict=True))
    return lengths, starts


def has_keypoint_sidecar(dataset_meta: Any) -> bool:
    return dataset_meta is not None and (Path(dataset_meta.root) / KEYPOINTS_RELATIVE_PATH).is_file()


def build_target_table(dataset_meta: Any, source: str, config: Any) -> Tensor:
    """Targets for every frame of the dataset, indexed by global frame index.

    `source` is `progress` (linear labels everywhere) or `keypoints` (sidecar labels, linear for
    episodes the sidecar does not cover). Frames of no episode hold NaN, so a lookup of them fails.
    """
    lengths, starts = episode_lengths_from_meta(dataset_meta)
    total = max(starts[e] + lengths[e] for e in lengths)
    table = np.full(total, np.nan, dtype=np.float32)
    if source == "keypoints":
        dense = dense_reward_table(
            dataset_meta.root,
            lengths,
            dataset_meta.fps,
            value_min=config.value_min,
            value_max=config.value_max,
            start=config.progress_start,
            end=config.progress_end,
        )
    elif source == "progress":
        span = config.value_max - config.value_min
        dense = {
            e: config.value_min + span * progress(np.arange(n), n, config.progress_start, config.progress_end)
            for e, n in lengths.items()
        }
    else:
        raise ValueError(f"Cannot build a target table for reward_source={source!r}.")
    for episode, values in dense.items():
        table[starts[episode] : starts[episode] + lengths[episode]] = values
    return torch.from_numpy(table)


class TargetTable:
    """Looks value targets up by global frame index (`batch["index"]`).

    The table has one entry per dataset frame, so it stays a plain CPU tensor, not a module buffer:
    DDP broadcasts every buffer from the main process at each forward, which would send the whole
    dataset's targets every step. Checkpoints never held it (it was a non-persistent buffer)."""

    def __init__(self, table: Tensor, source: str):
        self.source = source
        self.table = table.cpu()

    def lookup(self, index: Tensor) -> Tensor:
        """Targets of `index` (any shape), flattened, on `index`'s device."""
        device = index.device
        index = index.reshape(-1).long().cpu()
        out_of_range = (index < 0) | (index >= self.table.numel())
        if out_of_range.any():
            raise KeyError(
                f"batch['index'] has frames {index[out_of_range][:5].tolist()} outside the dataset the "
                f"policy was built with ({self.table.numel()} frames); rebuild the policy with this "
                "dataset's metadata or supply per-frame rewards in the batch."
            )
        targets = self.table[index]
        if torch.isnan(targets).any():
            raise KeyError(f"No {self.source} target for frames {index[torch.isnan(targets)][:5].tolist()}.")
        return targets.to(device)
