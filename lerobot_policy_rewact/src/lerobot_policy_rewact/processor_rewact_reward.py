"""Processors of the `rewact` reward model: exactly the RewACT policy's.

LeRobot looks the factory up by naming convention (`make_<type>_pre_post_processors` in the
`processor_` module beside the reward-model config), so the policy's factory is re-exported here
under that name; a reward-model config is a `RewACTConfig`, which it takes as is.
"""

from lerobot_policy_rewact.processor_rewact import make_rewact_pre_post_processors

__all__ = ["make_rewact_pre_post_processors"]
