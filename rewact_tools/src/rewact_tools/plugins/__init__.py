"""robocandywrapper plugins adding RewACT and ACTvantage training labels to dataset items (SPEC §4.7).

Each plugin computes and validates the labels of every loaded frame when attached (the wrapper
swallows errors raised per item), serves them by the item's dataset `index` (correct on episode
subsets and dataset mixes), and returns every key with a fixed shape and dtype.
"""

from rewact_tools.control_modes import CONTROL_MODES, UNRECORDED_MODE
from rewact_tools.plugins.control_mode import ControlModePlugin
from rewact_tools.plugins.dense_reward import DenseRewardPlugin, dense_reward_labels
from rewact_tools.plugins.frames import FrameLabels, FrameLabelsInstance
from rewact_tools.plugins.labelled_reward import LabelledRewardPlugin
from rewact_tools.plugins.mixed_intervention import MixedInterventionPlugin
from rewact_tools.plugins.pistar import PiStar0_6AdvantagePlugin, PiStar0_6CumulativeRewardPlugin

__all__ = [
    "CONTROL_MODES",
    "UNRECORDED_MODE",
    "ControlModePlugin",
    "DenseRewardPlugin",
    "FrameLabels",
    "FrameLabelsInstance",
    "LabelledRewardPlugin",
    "MixedInterventionPlugin",
    "PiStar0_6AdvantagePlugin",
    "PiStar0_6CumulativeRewardPlugin",
    "dense_reward_labels",
]
