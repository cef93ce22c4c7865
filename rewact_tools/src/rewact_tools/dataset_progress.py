"""Quiet the `datasets` library while a LeRobot dataset is being written.

`LeRobotDataset.save_episode` makes `datasets` show a progress bar per saved episode; a writer that
shows one bar over its episodes turns them off for its duration and restores the caller's setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import datasets


@contextlib.contextmanager
def datasets_progress_bars_disabled() -> Iterator[None]:
    """Disable `datasets` progress bars inside the block, re-enabling them after if they were on."""
    were_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if were_enabled:
            datasets.enable_progress_bars()
