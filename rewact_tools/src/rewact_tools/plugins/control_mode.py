"""`ControlModePlugin`: who controlled the robot at each frame (`rewact_tools.control_modes`), as
robocandywrapper item keys."""

from __future__ import annotations

from lerobot.datasets.lerobot_dataset import LeRobotDataset

from rewact_tools.candywrapper import DatasetPlugin
from rewact_tools.control_modes import frame_control_modes
from rewact_tools.plugins.frames import FrameLabels, FrameLabelsInstance


def control_mode_labels(dataset: LeRobotDataset, allow_missing: bool = False) -> FrameLabels:
    """`control_mode` (str), `control_mode_autonomous` and `control_mode_human` (bool) per loaded frame."""
    index, mode = frame_control_modes(dataset, allow_missing)
    values = {
        "control_mode": mode,
        "control_mode_autonomous": mode == "policy",
        "control_mode_human": mode == "human",
    }
    return FrameLabels(index, values)


class ControlModePlugin(DatasetPlugin):
    """Adds `control_mode` (str: "human", "policy" or "unknown"), `control_mode_autonomous` (bool,
    mode is "policy") and `control_mode_human` (bool, mode is "human") to every frame.

    With an `intervention` column every frame is "human" or "policy". From the file alone, frames no
    segment covers, and all frames of episodes the file does not list, are "unknown" with both flags
    false. A dataset with neither raises unless `allow_missing` (then all "unknown").
    """

    def __init__(self, allow_missing: bool = False):
        self.allow_missing = allow_missing

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        return FrameLabelsInstance(dataset, control_mode_labels(dataset, self.allow_missing))
