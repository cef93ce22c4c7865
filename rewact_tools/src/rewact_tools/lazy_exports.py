"""Lazy package exports (PEP 562): a package names its public objects by module and imports a module
only when one of its names is first used, so a script's `--help`, argument error or refusal does
not wait seconds for torch, LeRobot or the simulator to import."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package`, which exports `exports[module]` names
    from each module: `__all__, __getattr__, __dir__ = lazy_exports(__name__, EXPORTS)`."""
    module_of = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's name)
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module_of[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *module_of})

    return sorted(module_of), __getattr__, __dir__
