"""Atomic file writes: readers never see a half-written file, a failed write leaves the old one.
The same for whole folders (`replace_directory`), which is how rollout rounds are committed.

The RewACT policy package keeps its own small writer for the keypoint sidecar (it may not import
`rewact_tools`); every writer in `rewact_tools`, the scripts and the benchmarks uses this one.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

NEW_FILE_MODE = 0o644
"""Permissions of a newly written file: `mkstemp` makes its temporary file private (0o600), but labels,
advantages and results are data to share, as the policy package's keypoint writer also assumes."""


def write_atomically(path: Path | str, write: Callable[[Path], object]) -> None:
    """Call `write(temporary_path)` on a temporary file next to `path`, then rename it onto `path`.
    The file keeps the permissions of the one it replaces (NEW_FILE_MODE when there was none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, data: Any) -> None:
    """Write `data` as indented JSON, atomically (the folder is created)."""
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(data, indent=2) + "\n"))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # from <linux/fs.h>


def exchange_paths(first: Path | str, second: Path | str) -> None:
    """Swap two existing paths on one filesystem in a single atomic step.

    Linux's `renameat2(RENAME_EXCHANGE)`: no moment exists at which either path is missing. Raises
    `OSError` with errno ENOTSUP where this system or filesystem cannot do it.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError) as error:
        raise OSError(errno.ENOTSUP, "renameat2 is not available on this system") from error
    status = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if status != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            code = errno.ENOTSUP
        raise OSError(code, f"cannot exchange {first} and {second}: {os.strerror(code)}")


def replace_directory(new: Path | str, target: Path | str, previous: Path | str) -> None:
    """Make the folder `new` the folder `target`, in one atomic step wherever the system allows.

    When `target` does not exist this is one rename. Otherwise the two folders are exchanged
    atomically (`exchange_paths`) and the old contents, now at `new`, are deleted. Where the
    filesystem cannot exchange, it warns and uses two renames: `target` to `previous`, then `new` to
    `target`; a crash between them leaves the old folder at `previous` and no `target`.
    """
    new, target, previous = Path(new), Path(target), Path(previous)
    if not target.exists():
        os.rename(new, target)
        return
    try:
        exchange_paths(new, target)
    except OSError as error:
        if error.errno != errno.ENOTSUP:
            raise
        warnings.warn(
            f"{target.parent} cannot exchange folders atomically; replacing {target} with two renames "
            f"(a crash between them would leave it at {previous})",
            RuntimeWarning,
            stacklevel=2,
        )
        os.rename(target, previous)
        os.rename(new, target)
        shutil.rmtree(previous)
        return
    shutil.rmtree(new)
