"""The one place the RewACT package meets the differences between LeRobot 0.4.x and 0.5/0.6.

The policy itself runs unchanged on both; what differs is where a few helper names live and whether
LeRobot has first-class reward models (0.6: `lerobot.rewards`, `--reward_model.type`), which decides
whether the `rewact` reward-model type is registered. Every difference is a feature test (does the
module or name exist?), not a version comparison, so 0.5.x resolves by the same tests.
`rewact_tools.lerobot_compat` builds on the two helpers here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any


def module_exists(name: str) -> bool:
    """Whether module `name` can be imported, without raising for a missing parent package."""
    parent = name.rpartition(".")[0]
    if parent and not module_exists(parent):
        return False
    return name in sys.modules or importlib.util.find_spec(name) is not None


def find_lerobot_name(name: str, *modules: str) -> Any:
    """Attribute `name` of the first of `modules` that exists and has it (newest layout first)."""
    for module_name in modules:
        if module_exists(module_name):
            module = importlib.import_module(module_name)
            if hasattr(module, name):
                return getattr(module, name)
    raise ImportError(
        f"none of the LeRobot modules {list(modules)} has {name!r} in this LeRobot installation"
    )


HAS_REWARD_MODELS = module_exists("lerobot.rewards")
"""LeRobot 0.6 has first-class reward models; the `rewact` reward-model type exists only there."""
