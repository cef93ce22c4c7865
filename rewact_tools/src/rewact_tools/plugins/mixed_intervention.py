"""LeRobot's `intervention` column kept in a mix of datasets of which only some record it.

robocandywrapper keeps only the features every dataset of a mix has, so demonstrations (no
`intervention`) mixed with rollouts (`lerobot-rollout`'s DAgger strategy, `collect_rollouts.py`)
would lose the rollouts' column, and RewACT would learn actions from the policy's own frames.
"""

from __future__ import annotations

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact.control_mode import INTERVENTION, INTERVENTION_PAD
from rewact_tools.candywrapper import DatasetPlugin
from rewact_tools.control_modes import frame_control_modes
from rewact_tools.plugins.frames import FrameLabels, FrameLabelsInstance, loaded_frames


class MixedInterventionPlugin(DatasetPlugin):
    """Adds `intervention` (bool scalar) and `intervention_is_pad` (bool scalar) to every frame.

    Where the dataset records `intervention`, its value and `intervention_is_pad` False; elsewhere
    the fill False with `intervention_is_pad` True, which the policies read as "nobody said who
    drove" (a demonstration is neither a correction nor the policy's own frame), not as autonomous.
    """

    def attach(self, dataset: LeRobotDataset) -> FrameLabelsInstance:
        if INTERVENTION in dataset.meta.features:
            index, modes = frame_control_modes(dataset)
            intervention, padded = modes == "human", False
        else:
            index = loaded_frames(dataset)["index"].to_numpy()
            intervention, padded = False, True
        values = {
            INTERVENTION: np.full(len(index), intervention),
            INTERVENTION_PAD: np.full(len(index), padded),
        }
        return FrameLabelsInstance(dataset, FrameLabels(index, values))
