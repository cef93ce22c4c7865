"""RewACT plugin for LeRobot: importing it registers `--policy.type rewact` and, on LeRobot versions
with first-class reward models (0.6+), `--reward_model.type rewact`."""

from lerobot_policy_rewact.configuration_rewact import RewACTConfig
from lerobot_policy_rewact.lerobot_compat import HAS_REWARD_MODELS
from lerobot_policy_rewact.modeling_rewact import RewACTPolicy
from lerobot_policy_rewact.processor_rewact import make_rewact_pre_post_processors

__all__ = ["HAS_REWARD_MODELS", "RewACTConfig", "RewACTPolicy", "make_rewact_pre_post_processors"]

if HAS_REWARD_MODELS:
    from lerobot_policy_rewact.configuration_rewact_reward import RewACTProgressConfig
    from lerobot_policy_rewact.modeling_rewact_reward import RewACTProgressRewardModel

    __all__ += ["RewACTProgressConfig", "RewACTProgressRewardModel"]
