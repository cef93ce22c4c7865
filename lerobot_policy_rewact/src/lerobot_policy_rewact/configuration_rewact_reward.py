"""RewACT as a LeRobot reward model (`--reward_model.type rewact`, LeRobot 0.6 and newer only).

`RewACTProgressConfig` is `RewACTConfig` registered a second time, under LeRobot's reward-model
registry: the same fields with the same meaning, so `--reward_model.dim_model=...` reads exactly like
`--policy.dim_model=...`, and a checkpoint written by either side loads on the other (the
`config.json` of a RewACT policy parses as a reward-model config and the other way round).

LeRobot finds the model class and processor factory of a third-party reward model by naming
convention from this module's name: `RewACTProgressRewardModel` in `modeling_rewact_reward` and
`make_rewact_pre_post_processors` in `processor_rewact_reward`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs.rewards import RewardModelConfig

from lerobot_policy_rewact.configuration_rewact import RewACTConfig


@RewardModelConfig.register_subclass("rewact")
@dataclass
class RewACTProgressConfig(RewACTConfig, RewardModelConfig):
    """RewACT's configuration as a reward model: predicted task progress is the reward.

    Both parents are draccus choice registries. The class answers to the reward-model registry (its
    `type` and its encoding in `config.json` come from there), while every field, default, check
    and preset (optimiser, delta indices) is RewACT's.
    """

    _choice_registry = RewardModelConfig._choice_registry

    # LeRobot's reward models keep their checkpoints local unless asked (policies push by default).
    push_to_hub: bool = False
