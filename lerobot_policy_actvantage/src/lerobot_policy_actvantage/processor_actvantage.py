"""Pre/post-processors for ACTvantage: LeRobot's ACT steps plus a converter that keeps label keys.

LeRobot's default `batch_to_transition` drops every batch key it does not know, so the advantage
and the other per-frame plugin keys would never reach `ACTvantagePolicy.forward`. The steps
themselves are ACT's, with their registry names, so checkpoints stay loadable by `lerobot-eval`; the
converter is RewACT's (this package depends on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lerobot.policies.act.processor_act import make_act_pre_post_processors
from lerobot.processor import PolicyAction, PolicyProcessorPipeline
from lerobot.processor.converters import transition_to_batch

from lerobot_policy_actvantage.configuration_actvantage import ACTvantageConfig
from lerobot_policy_rewact.control_mode import CONTROL_KEYS
from lerobot_policy_rewact.processor_rewact import batch_to_transition_keeping

# Per-frame keys written by dataset plugins that ACTvantage reads or that are worth keeping for logging.
# `CONTROL_KEYS` include LeRobot's `intervention` feature, so on LeRobot 0.6 (which calls this
# factory) a DAgger rollout dataset's correction frames count as human with no plugin at all.
PLUGIN_KEYS = (
    "advantage",
    "advantage_positive",
    *CONTROL_KEYS,
    "use_action_mask",
    "episode_outcome",
    "episode_outcome_mask",
    "reward",
)


def make_actvantage_pre_post_processors(
    config: ACTvantageConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
    extra_keys: Sequence[str] = (),
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """ACT's pipelines; the pre-processor keeps `config.advantage_key`, PLUGIN_KEYS and `extra_keys`."""
    act_preprocessor, postprocessor = make_act_pre_post_processors(config, dataset_stats=dataset_stats)
    preprocessor = PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](
        steps=act_preprocessor.steps,
        name=act_preprocessor.name,
        to_transition=batch_to_transition_keeping(
            dict.fromkeys((config.advantage_key, *PLUGIN_KEYS, *extra_keys))
        ),
        to_output=transition_to_batch,
    )
    return preprocessor, postprocessor
