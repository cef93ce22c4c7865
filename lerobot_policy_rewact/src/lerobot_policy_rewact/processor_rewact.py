"""Pre/post-processors for RewACT: LeRobot's ACT pipeline, carrying value-training keys through.

LeRobot 0.4.4 never calls this factory for an `ACTConfig` subclass (it matches ACT's branch first),
so the policy computes its own targets from `dataset_meta`; LeRobot 0.6 resolves factories by name and
will call it. The pre-processor keeps `reward` and the mask keys that LeRobot's default batch
converter would drop, so a batch that carries them reaches `RewACTPolicy.forward` intact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from lerobot.policies.act.processor_act import make_act_pre_post_processors
from lerobot.processor import PolicyAction, PolicyProcessorPipeline, TransitionKey
from lerobot.processor.converters import batch_to_transition

from lerobot_policy_rewact.configuration_rewact import RewACTConfig
from lerobot_policy_rewact.control_mode import CONTROL_KEYS

# Keys a RewACT batch may carry beyond LeRobot's own (see `RewACTPolicy.action_mask`), LeRobot's
# `intervention` feature among them: LeRobot 0.6 calls this factory, so a dataset recorded by
# `lerobot-rollout --strategy.type=dagger` masks the policy's own actions with no plugin at all.
MASK_KEYS = ("use_action_mask", "episode_outcome", "episode_outcome_mask", *CONTROL_KEYS)


def batch_to_transition_keeping(keys: Iterable[str]) -> Callable[[dict[str, Any]], dict]:
    """LeRobot's `batch_to_transition` that also keeps `keys` in the complementary data."""
    keys = tuple(keys)

    def convert(batch: dict[str, Any]) -> dict:
        transition = batch_to_transition(batch)
        extra = {key: batch[key] for key in keys if key in batch}
        if extra:
            complementary = dict(transition.get(TransitionKey.COMPLEMENTARY_DATA) or {})
            complementary.update(extra)
            transition[TransitionKey.COMPLEMENTARY_DATA] = complementary
        return transition

    return convert


def make_rewact_pre_post_processors(
    config: RewACTConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """ACT's steps (same registry names, so checkpoints and `lerobot-eval` interoperate) plus key carrying."""
    preprocessor, postprocessor = make_act_pre_post_processors(config, dataset_stats)
    preprocessor.to_transition = batch_to_transition_keeping((config.reward_key, *MASK_KEYS))
    return preprocessor, postprocessor
