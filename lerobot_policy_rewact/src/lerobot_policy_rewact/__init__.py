"""RewACT policy plugin for LeRobot: importing it registers `--policy.type rewact`."""

from lerobot_policy_rewact.configuration_rewact import RewACTConfig
from lerobot_policy_rewact.modeling_rewact import RewACTPolicy
from lerobot_policy_rewact.processor_rewact import make_rewact_pre_post_processors

__all__ = ["RewACTConfig", "RewACTPolicy", "make_rewact_pre_post_processors"]
