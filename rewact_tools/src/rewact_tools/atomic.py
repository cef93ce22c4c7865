"""Atomic file writes: readers never see a half-written file, a failed write leaves the old one.

The RewACT policy package keeps its own small writer for the keypoint sidecar (it may not import
`rewact_tools`); every writer in `rewact_tools`, the scripts and the benchmarks uses this one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: Path | str, write: Callable[[Path], object]) -> None:
    """Call `write(temporary_path)` on a temporary file next to `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, data: Any) -> None:
    """Write `data` as indented JSON, atomically (the folder is created)."""
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(data, indent=2) + "\n"))
