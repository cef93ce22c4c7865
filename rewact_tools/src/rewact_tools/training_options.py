"""The plugin options of a training run (`scripts/train.py`'s own flags), saved with checkpoints.

Standard library only, so the script can build its parser before importing LeRobot.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewact_tools.atomic import write_json

# Saved next to train_config.json in every checkpoint, so a resumed run uses the same plugins.
PLUGIN_OPTIONS_FILE = "rewact_plugins.json"
REWARD_SOURCES = ("policy", "dense", "labels", "pistar")
ADVANTAGE_LABELS = ("positive", "raw")


@dataclass
class PluginOptions:
    """The robocandywrapper plugins of a training run (see `scripts/train.py --help`)."""

    # Where RewACT's value targets come from: `policy` (the policy derives them from the dataset
    # itself, one dataset only), `dense` (keypoint sidecar else linear progress, as a plugin),
    # `labels` (per-frame parquet files) or `pistar` (pi*0.6 returns from episode outcomes).
    # None: `policy` for one dataset, `dense` for several; ACTvantage ignores rewards.
    reward: str | None = None
    reward_labels: list[str] = field(default_factory=list)
    reward_label_column: str = "reward"
    # How `pistar` counts episodes of unknown outcome: "error", "success" or "failure".
    unknown_outcome: str = "error"
    # `pistar`'s return normaliser L_max (steps of the task's longest success); None: each dataset's
    # own longest successful episode. Several datasets of one task need it (one may have no success).
    max_length: int | None = None
    # `pistar`'s outcome credit: per "episode" (pi*0.6) or per takeover "segment", as the advantages
    # of `precompute_advantage.py --credit` (`rewact_tools.takeovers`).
    credit: str = "episode"
    outcomes: bool = False
    control_mode: bool = False
    # Advantages parquet per dataset; "" means the default <root>/rewact_extensions/advantages.parquet.
    advantages: list[str] = field(default_factory=list)
    # ACTvantage's label: the file's `positive` column (its per-task threshold) or the raw advantage
    # (thresholded at --policy.advantage_threshold).
    advantage_label: str = "positive"

    def save(self, folder: Path) -> None:
        write_json(folder / PLUGIN_OPTIONS_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, folder: Path) -> dict[str, Any]:
        """The options saved in a checkpoint folder, as a dict (empty when the file is absent)."""
        path = folder / PLUGIN_OPTIONS_FILE
        if not path.is_file():
            return {}
        data = json.loads(path.read_text())
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown plugin options {unknown}")
        return data


def split_list(text: str | None) -> list[str]:
    """`a,b` -> ["a", "b"]; None -> []."""
    return [] if text is None else [part.strip() for part in str(text).split(",")]
