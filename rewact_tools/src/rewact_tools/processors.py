"""Pre/post-processors for RewACT and ACTvantage that carry plugin keys to the policy (SPEC §4.6).

The steps are LeRobot's ACT steps with their registry names (`rename_observations_processor`,
`device_processor`, `normalizer_processor`, `unnormalizer_processor`), so pipelines saved with a
checkpoint load in `lerobot-eval` and in fine-tuning. LeRobot's default batch converter drops every
key it does not know; the pre-processor here uses the RewACT package's `batch_to_transition_keeping`
instead, so per-frame labels from robocandywrapper plugins (reward, advantage, outcomes, control
mode, action masks) reach `forward`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.processor import PolicyAction, PolicyProcessorPipeline
from lerobot.processor.converters import (
    policy_action_to_transition,
    transition_to_batch,
    transition_to_policy_action,
)
from lerobot.utils.constants import POLICY_POSTPROCESSOR_DEFAULT_NAME, POLICY_PREPROCESSOR_DEFAULT_NAME

from lerobot_policy_actvantage import ACTvantageConfig, make_actvantage_pre_post_processors
from lerobot_policy_rewact import RewACTConfig, make_rewact_pre_post_processors
from lerobot_policy_rewact.control_mode import CONTROL_KEYS
from lerobot_policy_rewact.processor_rewact import batch_to_transition_keeping

# Keys the rewact_tools plugins (and robocandywrapper's EpisodeOutcomePlugin) add to items, LeRobot's
# `intervention` feature (human control, read by both policies), plus the frame position and source
# dataset, which LeRobot's converter drops too.
DEFAULT_EXTRA_KEYS = (
    "reward",
    "advantage",
    "advantage_positive",
    "episode_outcome",
    "episode_outcome_mask",
    "control_mode",
    *CONTROL_KEYS,
    "use_action_mask",
    "frame_index",
    "dataset_index",
)

Pipelines = tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]


def _config_label_key(config: PreTrainedConfig) -> str:
    """The batch key the policy trains on (`reward_key` / `advantage_key`); rejects other policies."""
    if isinstance(config, RewACTConfig):
        return config.reward_key
    if isinstance(config, ACTvantageConfig):
        return config.advantage_key
    raise TypeError(
        f"make_pre_post_processors supports RewACTConfig and ACTvantageConfig, got {type(config).__name__}."
    )


def _load_pipelines(
    config: PreTrainedConfig, pretrained_path: str | Path, dataset_stats: dict[str, dict[str, Any]] | None
) -> Pipelines:
    """The pipelines saved with a checkpoint, on `config.device`; with `dataset_stats`, normalising with
    those instead of the saved ones (as `lerobot-train` does when fine-tuning on another dataset)."""
    path = Path(pretrained_path)
    files = [
        path / f"{name}.json"
        for name in (POLICY_PREPROCESSOR_DEFAULT_NAME, POLICY_POSTPROCESSOR_DEFAULT_NAME)
    ]
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        raise FileNotFoundError(
            f"No saved processor pipeline at {path}: missing {missing} (expected a LeRobot "
            "checkpoint's pretrained_model folder)."
        )
    preprocessor_overrides: dict[str, Any] = {"device_processor": {"device": str(config.device)}}
    postprocessor_overrides: dict[str, Any] = {}
    if dataset_stats is not None:
        preprocessor_overrides["normalizer_processor"] = {
            "stats": dataset_stats,
            "features": {**config.input_features, **config.output_features},
            "norm_map": config.normalization_mapping,
        }
        postprocessor_overrides["unnormalizer_processor"] = {
            "stats": dataset_stats,
            "features": config.output_features,
            "norm_map": config.normalization_mapping,
        }
    preprocessor = PolicyProcessorPipeline.from_pretrained(
        path,
        config_filename=files[0].name,
        overrides=preprocessor_overrides,
        to_output=transition_to_batch,
    )
    postprocessor = PolicyProcessorPipeline.from_pretrained(
        path,
        config_filename=files[1].name,
        overrides=postprocessor_overrides,
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return preprocessor, postprocessor


def make_pre_post_processors(
    config: RewACTConfig | ACTvantageConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
    pretrained_path: str | Path | None = None,
    extra_keys: Iterable[str] = DEFAULT_EXTRA_KEYS,
) -> Pipelines:
    """Pre- and post-processor for a RewACT or ACTvantage policy.

    Without `pretrained_path`, the policy package's own factory builds them from `dataset_stats`.
    With it, the pipelines saved in that checkpoint folder are loaded (see `_load_pipelines`). Either
    way the pre-processor carries `extra_keys` and the config's label key (`reward_key` or
    `advantage_key`) through to the policy whenever a batch has them.
    """
    keys = (_config_label_key(config), *extra_keys)
    if pretrained_path is not None:
        preprocessor, postprocessor = _load_pipelines(config, pretrained_path, dataset_stats)
    elif isinstance(config, RewACTConfig):
        preprocessor, postprocessor = make_rewact_pre_post_processors(config, dataset_stats)
    else:
        preprocessor, postprocessor = make_actvantage_pre_post_processors(config, dataset_stats)
    preprocessor.to_transition = batch_to_transition_keeping(dict.fromkeys(keys))
    return preprocessor, postprocessor
