"""Configuration of RewACT: LeRobot's ACT plus a distributional task-progress (value) head."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs.policies import PreTrainedConfig

from lerobot_policy_rewact.configuration_vision import ACTVisionConfig, check_choice

VALUE_TARGETS = ("one_hot", "two_hot", "hl_gauss")
REWARD_SOURCES = ("auto", "dataset", "progress", "keypoints")
VALUE_SOURCES = ("decoder_first", "encoder_mean")


@PreTrainedConfig.register_subclass("rewact")
@dataclass
class RewACTConfig(ACTVisionConfig):
    """ACT's configuration with the fields of the value head (SPEC §2.1).

    Every ACT field keeps its meaning; the vision-encoder fields (`vision_encoder_type`,
    `freeze_vision_encoder`, `backbone_norm`, ...) come from `ACTVisionConfig`. The value head
    predicts a categorical distribution over `num_value_bins` support points
    `linspace(value_min, value_max, num_value_bins)`; its expected value is the predicted task progress.
    """

    num_value_bins: int = 101
    value_min: float = 0.0
    value_max: float = 1.0
    value_target: str = "hl_gauss"
    hl_gauss_sigma_ratio: float = 0.75
    reward_loss_weight: float = 0.1
    reward_key: str = "reward"
    reward_source: str = "auto"
    progress_start: float = 0.05
    progress_end: float = 0.95
    proprio_dropout: float = 0.3
    value_from: str = "decoder_first"
    # Final progress at or above which an episode counts as a success, calibrated on episodes with
    # known outcomes (scripts/calibrate_success.py); None: not calibrated, tools use their default.
    success_threshold: float | None = None
    # Declared so that checkpoints written by newer LeRobot releases (which save it) still load.
    pretrained_revision: str | None = None

    def __post_init__(self):
        super().__post_init__()
        check_choice("RewACTConfig", "value_target", self.value_target, VALUE_TARGETS)
        check_choice("RewACTConfig", "reward_source", self.reward_source, REWARD_SOURCES)
        check_choice("RewACTConfig", "value_from", self.value_from, VALUE_SOURCES)
        if self.num_value_bins < 2:
            raise ValueError(f"RewACTConfig.num_value_bins must be at least 2, got {self.num_value_bins}.")
        if not self.value_max > self.value_min:
            raise ValueError(
                f"RewACTConfig.value_max ({self.value_max}) must be greater than value_min ({self.value_min})."
            )
        if self.hl_gauss_sigma_ratio <= 0:
            raise ValueError(
                f"RewACTConfig.hl_gauss_sigma_ratio must be positive, got {self.hl_gauss_sigma_ratio}."
            )
        if self.reward_loss_weight < 0:
            raise ValueError(
                f"RewACTConfig.reward_loss_weight must be non-negative, got {self.reward_loss_weight}."
            )
        if not 0.0 <= self.proprio_dropout < 1.0:
            raise ValueError(f"RewACTConfig.proprio_dropout must be in [0, 1), got {self.proprio_dropout}.")
        if (
            self.success_threshold is not None
            and not self.value_min < self.success_threshold <= self.value_max
        ):
            raise ValueError(
                f"RewACTConfig.success_threshold must lie in ({self.value_min}, {self.value_max}] or be None, "
                f"got {self.success_threshold}."
            )
        if not 0.0 <= self.progress_start < self.progress_end <= 1.0:
            raise ValueError(
                "RewACTConfig needs 0 <= progress_start < progress_end <= 1, got "
                f"progress_start={self.progress_start}, progress_end={self.progress_end}."
            )
