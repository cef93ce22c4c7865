"""The one place `rewact_tools` imports robocandywrapper from.

robocandywrapper 0.2.18 (the newest release) imports LeRobot names from a layout that matches
neither LeRobot 0.4.4 nor 0.6.1; `lerobot_compat.alias_lerobot_for_robocandywrapper` makes them
resolvable before the first import. Its metadata pins `lerobot<0.5`, so on LeRobot 0.5/0.6 it is
installed with `pip install --no-deps robocandywrapper==0.2.18`; when it is missing, importing this
module raises an `ImportError` that says how to install it for the LeRobot at hand.

Every `rewact_tools` module takes robocandywrapper's names from here, never from robocandywrapper
directly, so the aliases are always in place first. Only the plugins and `scripts/train.py` need it:
labels, returns, advantages, value inference and the RA-BC progress file work without it.
"""

from __future__ import annotations

import importlib.util

from rewact_tools.lerobot_compat import alias_lerobot_for_robocandywrapper

ROBOCANDYWRAPPER_VERSION = "0.2.18"

if importlib.util.find_spec("robocandywrapper") is None:
    raise ImportError(
        "robocandywrapper is not installed; the rewact_tools plugins and scripts/train.py need it. "
        f'On LeRobot 0.4.x: pip install "rewact_tools[candywrapper]" (or robocandywrapper=={ROBOCANDYWRAPPER_VERSION}); '
        f"on LeRobot 0.5/0.6, whose versions its metadata excludes: pip install --no-deps "
        f"robocandywrapper=={ROBOCANDYWRAPPER_VERSION}"
    )

alias_lerobot_for_robocandywrapper()

# robocandywrapper can only be imported once the aliases are in place.
from robocandywrapper import DatasetPlugin, PluginInstance, WrappedRobotDataset  # noqa: E402
from robocandywrapper.constants import CANDYWRAPPER_PLUGINS_DIR, CONTROL_MODE_PLUGIN_NAME  # noqa: E402
from robocandywrapper.plugins import ControlModeInstance, EpisodeOutcomePlugin  # noqa: E402

__all__ = [
    "CANDYWRAPPER_PLUGINS_DIR",
    "CONTROL_MODE_PLUGIN_NAME",
    "ROBOCANDYWRAPPER_VERSION",
    "ControlModeInstance",
    "DatasetPlugin",
    "EpisodeOutcomePlugin",
    "PluginInstance",
    "WrappedRobotDataset",
]
