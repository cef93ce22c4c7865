"""Configuration of ACTvantage: LeRobot's ACT conditioned on a binary advantage indicator."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lerobot.configs.policies import PreTrainedConfig

from lerobot_policy_rewact.configuration_vision import ACTVisionConfig

# Where the indicator embedding enters ACT's transformer (`ACTvantageConfig.advantage_injection`).
ADVANTAGE_INJECTIONS = ("encoder_token", "decoder_queries", "encoder_and_decoder")
# What guidance extrapolates away from (`ACTvantageConfig.guidance_reference`).
GUIDANCE_REFERENCES = ("null", "negative")


def check_choice(field: str, value: str, choices: tuple[str, ...]) -> str:
    """`value` of the config field `field` if it is one of `choices`, else a ValueError naming them."""
    if value not in choices:
        raise ValueError(
            f"ACTvantageConfig.{field} must be one of {', '.join(map(repr, choices))}; got {value!r}."
        )
    return value


def check_advantage_injection(injection: str) -> str:
    return check_choice("advantage_injection", injection, ADVANTAGE_INJECTIONS)


def check_guidance_scale(guidance_scale: float, advantage_dropout: float, reference: str = "null") -> float:
    """Validate β together with its `reference` (one of GUIDANCE_REFERENCES); guidance against the null
    indicator reads it, which only training with dropout teaches (the negative indicator is trained
    on every negative frame)."""
    check_choice("guidance_reference", reference, GUIDANCE_REFERENCES)
    beta = float(guidance_scale)
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"ACTvantage guidance_scale must be a finite number >= 0, got {guidance_scale!r}.")
    if beta != 1.0 and reference == "null" and advantage_dropout == 0.0:
        raise ValueError(
            f"ACTvantage guidance_scale={beta} needs the null indicator, which is never trained with "
            "advantage_dropout=0.0; use guidance_scale=1.0 or train with advantage_dropout > 0."
        )
    return beta


@PreTrainedConfig.register_subclass("actvantage")
@dataclass
class ACTvantageConfig(ACTVisionConfig):
    """ACT's configuration plus the advantage-conditioning fields (SPEC §3.1).

    Every ACT field keeps its meaning; the vision-encoder fields (`vision_encoder_type`,
    `freeze_vision_encoder`, `backbone_norm`, ...) are RewACT's (`ACTVisionConfig`). A training frame is "positive" when its advantage is above
    `advantage_threshold` (or given as a bool / ±1 label); with probability `advantage_dropout` the
    indicator is replaced by a learned null token, so the same network also learns the
    unconditional policy that classifier-free guidance (`guidance_scale` β ≠ 1) contrasts against.
    """

    advantage_key: str = "advantage"
    advantage_threshold: float = 0.0
    advantage_dropout: float = 0.3
    guidance_scale: float = 1.0
    # Where the indicator embedding is added: "encoder_token" (ACT's latent token, the default and
    # the original design) is one token among the image tokens, so its effect may be diluted before
    # it reaches the actions; "decoder_queries" adds it to every decoder query, so it reaches each
    # predicted action directly; "encoder_and_decoder" does both, with separate embeddings. Only the
    # configured embeddings exist, so "encoder_token" checkpoints keep their parameter names.
    advantage_injection: str = "encoder_token"
    # What guidance (β ≠ 1) contrasts "positive" with: the null indicator, a_null + β·(a_pos − a_null)
    # (classifier-free guidance, pi*0.6's; the default, so checkpoints keep their behaviour), or the
    # negative one, a_neg + β·(a_pos − a_neg), which steers away from what the negative frames did
    # (stalls, wandering) rather than from the average policy. Either is one batched pass.
    guidance_reference: str = "null"
    # Loss weight of a frame labelled negative against a positive frame's 1 (the weighted mean is
    # normalised by the weights). At 0.25 the step budget goes mostly to what "positive" asks for
    # while the negatives still teach the (-) condition and the null one: every ACTvantage recipe
    # that tied filtered BC on the RECAP benchmark trained so (benchmarks/README.md, "Fourth run"
    # to "Ninth run"). 1.0 is pi*0.6's uniform training.
    negative_weight: float = 0.25
    # Parquet written by precompute_advantage (columns `index`, `advantage`, optional `positive`);
    # lets stock `lerobot-train` train without a dataset plugin.
    advantage_file: str | None = None
    # Declared so that checkpoints written by newer LeRobot releases (which save it) still load.
    pretrained_revision: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.advantage_key, str) or not self.advantage_key:
            raise ValueError(
                f"ACTvantageConfig.advantage_key must be a non-empty string, got {self.advantage_key!r}."
            )
        if not math.isfinite(self.advantage_threshold):
            raise ValueError(
                f"ACTvantageConfig.advantage_threshold must be finite, got {self.advantage_threshold!r}."
            )
        if not 0.0 <= self.advantage_dropout < 1.0:
            raise ValueError(
                f"ACTvantageConfig.advantage_dropout must be in [0, 1), got {self.advantage_dropout!r}."
            )
        if not 0.0 < self.negative_weight <= 1.0:
            raise ValueError(
                f"ACTvantageConfig.negative_weight must be in (0, 1], got {self.negative_weight!r}."
            )
        if self.guidance_reference in (None, "None"):
            # `--policy.guidance_reference=null` on the command line: draccus reads `null` as None
            # (LeRobot 0.6.1) or as the text "None" (LeRobot 0.4.4).
            self.guidance_reference = "null"
        check_guidance_scale(self.guidance_scale, self.advantage_dropout, self.guidance_reference)
        check_advantage_injection(self.advantage_injection)
        if self.advantage_file is not None and not str(self.advantage_file).strip():
            raise ValueError(
                "ACTvantageConfig.advantage_file must be a path to a parquet file or None, got ''."
            )
