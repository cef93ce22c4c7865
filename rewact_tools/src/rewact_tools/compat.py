"""The one place `rewact_tools` imports robocandywrapper from.

robocandywrapper 0.2.18 pins `lerobot<0.5` yet imports `lerobot.datasets.feature_utils` and
`lerobot.datasets.io_utils`, module paths that only exist from LeRobot 0.5 on; in 0.4.4 every name
it takes from them lives in `lerobot.datasets.utils`. Registering that module under the two missing
names before the first import makes the package importable, and does nothing on LeRobot versions
that have the real modules.

Every `rewact_tools` module takes robocandywrapper's names from here, never from robocandywrapper
directly, so the alias is always in place first.
"""

from __future__ import annotations

import importlib.util
import sys

import lerobot.datasets.utils as _lerobot_dataset_utils

MOVED_LEROBOT_MODULES = ("lerobot.datasets.feature_utils", "lerobot.datasets.io_utils")


def alias_moved_lerobot_modules() -> list[str]:
    """Point each of `MOVED_LEROBOT_MODULES` that LeRobot lacks at `lerobot.datasets.utils`.

    Returns the names it aliased (empty when LeRobot has them or they were aliased before).
    """
    aliased = []
    for name in MOVED_LEROBOT_MODULES:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        sys.modules[name] = _lerobot_dataset_utils
        aliased.append(name)
    return aliased


alias_moved_lerobot_modules()

# robocandywrapper can only be imported once the alias is in place.
from robocandywrapper import DatasetPlugin, PluginInstance, WrappedRobotDataset  # noqa: E402
from robocandywrapper.constants import CANDYWRAPPER_PLUGINS_DIR, CONTROL_MODE_PLUGIN_NAME  # noqa: E402
from robocandywrapper.plugins import ControlModeInstance, EpisodeOutcomePlugin  # noqa: E402

__all__ = [
    "CANDYWRAPPER_PLUGINS_DIR",
    "CONTROL_MODE_PLUGIN_NAME",
    "MOVED_LEROBOT_MODULES",
    "ControlModeInstance",
    "DatasetPlugin",
    "EpisodeOutcomePlugin",
    "PluginInstance",
    "WrappedRobotDataset",
    "alias_moved_lerobot_modules",
]
