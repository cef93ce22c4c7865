"""ACTvantage: LeRobot's ACT conditioned on a binary advantage indicator (`--policy.type actvantage`).

Importing the package registers the config with LeRobot; LeRobot finds the policy class and the
processor factory by their module and class names.
"""

from lerobot_policy_actvantage.configuration_actvantage import ACTvantageConfig
from lerobot_policy_actvantage.modeling_actvantage import ACTvantagePolicy
from lerobot_policy_actvantage.processor_actvantage import make_actvantage_pre_post_processors

__all__ = ["ACTvantageConfig", "ACTvantagePolicy", "make_actvantage_pre_post_processors"]
