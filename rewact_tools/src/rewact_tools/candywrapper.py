"""The one place `rewact_tools` imports robocandywrapper from.

robocandywrapper 0.2.18 (the newest release) imports LeRobot names from a layout that matches
neither LeRobot 0.4.4 nor 0.6.1; `lerobot_compat.alias_lerobot_for_robocandywrapper` makes them
resolvable before the first import. Its metadata pins `lerobot<0.5`, so `rewact_tools` depends on
it only below Python 3.12 (LeRobot 0.4.x); on LeRobot 0.5/0.6 it is installed with
`pip install --no-deps robocandywrapper==0.2.18`. When it is missing, importing this module raises an
`ImportError` that names the install command for the LeRobot at hand.

Every `rewact_tools` module takes robocandywrapper's names from here, never from robocandywrapper
directly, so the aliases are always in place first. Only the plugins and `scripts/train.py` need it:
labels, returns, advantages, value inference and the RA-BC progress file work without it.
"""

from __future__ import annotations

import importlib.metadata

from packaging.version import Version

from rewact_tools.lerobot_compat import alias_lerobot_for_robocandywrapper

ROBOCANDYWRAPPER_VERSION = "0.2.18"


def install_command() -> str:
    """The pip command that installs robocandywrapper beside the LeRobot installed here.

    Its metadata pins `lerobot<0.5`: a plain install works on LeRobot 0.4.x and would downgrade a
    newer LeRobot, so there it goes in without its dependencies. A version comparison, because the
    pin it answers is one.
    """
    if Version(importlib.metadata.version("lerobot")) < Version("0.5"):
        return f"pip install robocandywrapper=={ROBOCANDYWRAPPER_VERSION}"
    return f"pip install --no-deps robocandywrapper=={ROBOCANDYWRAPPER_VERSION}"


alias_lerobot_for_robocandywrapper()

# robocandywrapper can only be imported once the aliases are in place.
try:
    from robocandywrapper import DatasetPlugin, PluginInstance, WrappedRobotDataset
    from robocandywrapper.constants import CANDYWRAPPER_PLUGINS_DIR, CONTROL_MODE_PLUGIN_NAME
    from robocandywrapper.plugins import ControlModeInstance, EpisodeOutcomePlugin
except ModuleNotFoundError as error:
    if error.name != "robocandywrapper":
        raise
    raise ImportError(
        "robocandywrapper is not installed; the rewact_tools plugins, and scripts/train.py with plugin "
        f"flags or several datasets, need it. Install it with: {install_command()}"
    ) from None

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
