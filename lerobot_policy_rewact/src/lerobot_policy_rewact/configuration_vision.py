"""Vision-encoder fields shared by RewACT and ACTvantage (SPEC §2.4), on top of LeRobot's `ACTConfig`.

`vision_encoder_type="resnet"` is LeRobot's ACT path (a torchvision ResNet; unchanged). `"timm"` takes
any timm model name in `vision_backbone`; its weights come from `pretrained_backbone_weights` (a local
`.safetensors`/`.pth` file, or a Hugging Face Hub repo id such as `timm/vit_small_patch14_dinov2.lvd142m`;
null = random initialisation). A timm encoder normalises images itself with the mean/std of the model's
timm `pretrained_cfg`, so the config marks VISUAL features IDENTITY for LeRobot's normaliser.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from lerobot.configs.types import NormalizationMode
from lerobot.policies.act.configuration_act import ACTConfig

VISION_ENCODER_TYPES = ("resnet", "timm")
BACKBONE_NORMS = ("auto", "frozen_bn", "batch_norm", "group_norm")
TIMM_INSTALL_HINT = (
    'pip install -e "lerobot_policy_rewact[timm]" (or "lerobot_policy_actvantage[timm]", or pip install timm)'
)
# A torchvision weights enum name such as ACT's default "ResNet18_Weights.IMAGENET1K_V1".
_TORCHVISION_WEIGHTS = re.compile(r"^\w+_Weights\.\w+$")


def check_choice(owner: str, field_name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming `owner.field_name` and the allowed values."""
    if value not in choices:
        raise ValueError(f"{owner}.{field_name}={value!r} is not one of {list(choices)}.")


@dataclass
class ACTVisionConfig(ACTConfig):
    """`ACTConfig` plus the choice of vision encoder. Not a policy type itself: RewACT's and
    ACTvantage's configs derive from it, so both policies read cameras the same way.

    - `vision_encoder_type`: `resnet` (LeRobot's torchvision ResNet) or `timm` (any timm model name in
      `vision_backbone`, built with `vision_encoder_kwargs`).
    - `freeze_vision_encoder`: the trunk keeps its weights, stays in eval mode and runs under
      `no_grad`; the projection of its features to `dim_model` still trains. An unfrozen trunk trains
      at `optimizer_lr_backbone`.
    - `backbone_norm`: normalisation of the trunk's BatchNorm layers: `frozen_bn` (LeRobot's ACT; the
      default, because it also trained the most stable image reward model from scratch, 3 seeds in
      benchmarks/README.md), `batch_norm` (trainable), `group_norm` (ResNet path only); `auto` =
      `frozen_bn` with pretrained weights, `batch_norm` from scratch. ViTs have no BatchNorm and are
      unaffected.
    """

    vision_encoder_type: str = "resnet"
    vision_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    freeze_vision_encoder: bool = False
    backbone_norm: str = "frozen_bn"

    def __post_init__(self):
        owner = type(self).__name__
        check_choice(owner, "vision_encoder_type", self.vision_encoder_type, VISION_ENCODER_TYPES)
        if self.vision_encoder_type == "timm":
            self._validate_timm(owner)
            # ACTConfig accepts only torchvision ResNet names; a timm name is checked when the model is built.
            timm_name, self.vision_backbone = self.vision_backbone, "resnet18"
            try:
                super().__post_init__()
            finally:
                self.vision_backbone = timm_name
            self.normalization_mapping = {**self.normalization_mapping, "VISUAL": NormalizationMode.IDENTITY}
        else:
            if self.vision_encoder_kwargs:
                raise ValueError(
                    f"{owner}.vision_encoder_kwargs={self.vision_encoder_kwargs!r} applies to "
                    "vision_encoder_type='timm' only; the resnet path is LeRobot's torchvision ResNet."
                )
            super().__post_init__()
        check_choice(owner, "backbone_norm", self.backbone_norm, BACKBONE_NORMS)

    def _validate_timm(self, owner: str) -> None:
        if importlib.util.find_spec("timm") is None:
            raise ImportError(
                f"{owner}.vision_encoder_type='timm' needs the timm package, which is not installed: "
                f"{TIMM_INSTALL_HINT}."
            )
        weights = self.pretrained_backbone_weights
        if weights is not None and _TORCHVISION_WEIGHTS.match(weights):
            raise ValueError(
                f"{owner}.pretrained_backbone_weights={weights!r} names torchvision weights, which a timm "
                "encoder cannot use: give a local .safetensors/.pth file, a Hugging Face Hub repo id "
                "with timm weights (e.g. timm/vit_small_patch14_dinov2.lvd142m), or null for random "
                "initialisation."
            )
        if self.backbone_norm == "group_norm":
            raise ValueError(
                f"{owner}.backbone_norm='group_norm' converts LeRobot's torchvision ResNet only; a timm "
                "encoder keeps its own normalisation layers (frozen_bn, batch_norm or auto)."
            )
        if self.replace_final_stride_with_dilation:
            raise ValueError(
                f"{owner}.replace_final_stride_with_dilation applies to the torchvision ResNet only; "
                "set it to false with vision_encoder_type='timm'."
            )

    @property
    def resolved_backbone_norm(self) -> str:
        """`auto` keeps frozen BatchNorm for pretrained weights and trains BatchNorm from scratch."""
        if self.backbone_norm != "auto":
            return self.backbone_norm
        return "frozen_bn" if self.pretrained_backbone_weights else "batch_norm"
