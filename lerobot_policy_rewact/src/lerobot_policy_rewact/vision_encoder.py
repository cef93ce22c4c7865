"""Vision encoders of ACT-based policies: LeRobot's torchvision ResNet or any timm model (SPEC §2.4).

`ACT.forward` reads every camera through three modules: `backbone(image)["feature_map"]` (B, C, h, w),
`encoder_cam_feat_pos_embed` (2-D sinusoidal positions of that map) and `encoder_img_feat_input_proj`
(a 1x1 convolution to `dim_model`). A timm encoder provides the same three, so ACT's forward runs
unchanged for both encoder types: a ViT's patch tokens come back as their (h, w) grid, a CNN's last
stage as it is, and each camera (of any size the model accepts) gets its own grid of positions.

Used by RewACT and ACTvantage alike (ACTvantage depends on this package for it).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.configs.types import FeatureType
from lerobot.policies.act.modeling_act import ACT, ACTSinusoidalPositionEmbedding2d
from torch import Tensor, nn

from lerobot_policy_rewact.backbone_norm import replace_frozen_batch_norm
from lerobot_policy_rewact.configuration_vision import TIMM_INSTALL_HINT, ACTVisionConfig

logger = logging.getLogger(__name__)

LOCAL_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# Keyword arguments that let timm ViT-style models take any input size (positions interpolated, the
# image padded to whole patches); models that do not know them are built without.
_DYNAMIC_SIZE_KWARGS = {"dynamic_img_size": True, "dynamic_img_pad": True}

_weights_from_checkpoint: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "weights_from_checkpoint", default=False
)


@contextlib.contextmanager
def weights_from_checkpoint() -> Iterator[None]:
    """Build policies without reading `pretrained_backbone_weights`: a checkpoint holds the trunk's
    weights, so reloading it must not need (or re-read) the original weight file."""
    token = _weights_from_checkpoint.set(True)
    try:
        yield
    finally:
        _weights_from_checkpoint.reset(token)


def import_timm() -> Any:
    try:
        import timm
    except ImportError as error:
        raise ImportError(
            f"vision_encoder_type='timm' needs the timm package: {TIMM_INSTALL_HINT}."
        ) from error
    return timm


# ------------------------------------------------------------------------------------------------
# Weights


def is_local_weights(source: str) -> bool:
    """A path (by its suffix, or because it exists) rather than a Hugging Face Hub repo id."""
    return source.endswith(LOCAL_WEIGHT_SUFFIXES) or Path(source).expanduser().exists()


def read_weights(source: str) -> dict[str, Tensor]:
    """The state dict in a local `.safetensors`/`.pth` file or a Hub repo of timm weights."""
    timm = import_timm()
    if is_local_weights(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained_backbone_weights={source!r}: no such file ({path.resolve()})."
            )
        try:
            return timm.models.load_state_dict(str(path), weights_only=True)
        except Exception as error:
            raise ValueError(
                f"pretrained_backbone_weights={source!r} is not a readable state dict "
                f"({type(error).__name__}: {error})."
            ) from error
    try:
        return timm.models.load_state_dict_from_hf(source.removeprefix("hf-hub:"), weights_only=True)
    except Exception as error:
        raise OSError(
            f"pretrained_backbone_weights={source!r}: could not fetch timm weights from the Hugging Face "
            f"Hub ({type(error).__name__}: {error}). Where the Hub is unreachable, download the repo's "
            "model.safetensors elsewhere and pass its local path."
        ) from error


def _without_classifier(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Drop the classifier a full-model file carries: the encoder is built without one."""
    classifier = model.pretrained_cfg.get("classifier") or ()
    prefixes = tuple(f"{name}." for name in ((classifier,) if isinstance(classifier, str) else classifier))
    return {key: value for key, value in state_dict.items() if not (prefixes and key.startswith(prefixes))}


def load_trunk_weights(model: nn.Module, state_dict: dict[str, Tensor], source: str, name: str) -> None:
    """Load every trunk tensor strictly: a file for another architecture fails here, naming the keys."""
    try:
        missing, unexpected = model.load_state_dict(_without_classifier(state_dict, model), strict=False)
    except RuntimeError as error:  # shape mismatches, one line each after a heading
        mismatches = [line.strip() for line in str(error).splitlines()[1:]]
        more = f" (and {len(mismatches) - 3} more)" if len(mismatches) > 3 else ""
        raise ValueError(
            f"pretrained_backbone_weights={source!r} does not fit timm model {name!r}: "
            f"{' '.join(mismatches[:3]) or error}{more}"
        ) from error
    if missing or unexpected:
        raise ValueError(
            f"pretrained_backbone_weights={source!r} does not fit timm model {name!r}: "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}."
        )


# ------------------------------------------------------------------------------------------------
# timm trunk


def create_timm_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """A randomly initialised timm model without classifier, taking any input size when it can."""
    timm = import_timm()
    if not timm.is_model(name):
        raise ValueError(
            f"vision_backbone={name!r} is not a timm model name (see timm.list_models(); a pretrained tag "
            "such as '.lvd142m' may follow the architecture)."
        )
    failure: TypeError | None = None
    for size_kwargs in (_DYNAMIC_SIZE_KWARGS, {}):  # the first fails for fixed-size architectures
        try:
            return timm.create_model(name, pretrained=False, num_classes=0, **{**size_kwargs, **kwargs})
        except TypeError as error:
            failure = error
    raise ValueError(
        f"timm model {name!r} does not take vision_encoder_kwargs={kwargs!r}: {failure}"
    ) from failure


def final_feature_map(model: nn.Module, images: Tensor) -> Tensor:
    """The model's last feature map as (B, C, h, w): a ViT's normed patch tokens on their grid."""
    return model.forward_intermediates(
        images, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
    )[-1]


class TimmFeatureMap(nn.Module):
    """A timm model as ACT's backbone: images in [0, 1] -> {"feature_map": (B, C, h, w)}.

    Images are normalised with the model's own pretrained mean/std, and resized to `resize` (the
    model's native input size) when the model cannot take the cameras' sizes.
    """

    def __init__(self, model: nn.Module, resize: tuple[int, int] | None):
        super().__init__()
        self.model = model
        self.resize = resize
        data_config = import_timm().data.resolve_model_data_config(model)
        self.register_buffer("mean", torch.tensor(data_config["mean"]).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(data_config["std"]).reshape(1, -1, 1, 1))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if self.resize is not None and tuple(images.shape[-2:]) != self.resize:
            images = F.interpolate(
                images, size=self.resize, mode="bilinear", align_corners=False, antialias=True
            )
        images = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return {"feature_map": final_feature_map(self.model, images)}


def _probe(model: nn.Module, shape: tuple[int, ...]) -> Tensor:
    """Feature map of one blank image of `shape` (C, H, W), in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return final_feature_map(model, torch.zeros(1, *shape))
    finally:
        model.train(was_training)


def input_size_and_channels(
    model: nn.Module, name: str, camera_shapes: dict[str, tuple[int, ...]]
) -> tuple[tuple[int, int] | None, int]:
    """(resize, feature channels): None when the model takes every camera's size as it is, else the
    model's native input size, used when some camera is rejected; a clear error when both fail."""
    if not hasattr(model, "forward_intermediates"):
        raise ValueError(
            f"timm model {name!r} has no forward_intermediates, which the encoder reads its 2-D feature "
            "map from; choose another architecture."
        )
    try:
        maps = [_probe(model, tuple(shape)) for shape in camera_shapes.values()]
        return None, maps[0].shape[1]
    except Exception as camera_error:
        native = tuple(model.pretrained_cfg.get("input_size") or ())
        if len(native) != 3:
            raise ValueError(
                f"timm model {name!r} rejects the camera shapes {camera_shapes} ({camera_error}) and "
                "declares no native input size to resize to."
            ) from camera_error
        try:
            channels = _probe(model, native).shape[1]
        except Exception as native_error:
            raise ValueError(
                f"timm model {name!r} rejects the camera shapes {camera_shapes} ({camera_error}) and "
                f"its native input size {native} ({native_error})."
            ) from native_error
        logger.warning(
            "timm model %r does not take the camera shapes %s (%s); images are resized to %s.",
            name,
            camera_shapes,
            camera_error,
            native[1:],
        )
        return (native[1], native[2]), channels


def build_timm_backbone(config: ACTVisionConfig) -> tuple[TimmFeatureMap, int]:
    """The timm backbone of `config` and its feature channels; weights loaded unless reloading a checkpoint."""
    name = config.vision_backbone
    model = create_timm_model(name, config.vision_encoder_kwargs)
    weights = config.pretrained_backbone_weights
    if weights is not None and not _weights_from_checkpoint.get():
        load_trunk_weights(model, read_weights(weights), weights, name)
    model.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    if config.resolved_backbone_norm == "frozen_bn":
        model = import_timm().layers.freeze_batch_norm_2d(model)
    camera_shapes = {key: tuple(feature.shape) for key, feature in config.image_features.items()}
    resize, channels = input_size_and_channels(model, name, camera_shapes)
    return TimmFeatureMap(model, resize), channels


# ------------------------------------------------------------------------------------------------
# ACT with a choice of encoder


class FrozenTrunk(nn.Module):
    """A backbone that never trains: no gradients, always eval mode, run under `no_grad` (cheaper)."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenTrunk:
        super().train(mode)
        self.trunk.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            return self.trunk(images)


def _without_cameras(config: ACTVisionConfig) -> ACTVisionConfig:
    """A shallow copy without VISUAL inputs, so that ACT's constructor builds no torchvision backbone."""
    copied = copy.copy(config)
    copied.input_features = {
        key: feature
        for key, feature in config.input_features.items()
        if feature.type is not FeatureType.VISUAL
    }
    return copied


class ACTWithVisionEncoder(ACT):
    """LeRobot's ACT whose cameras go through the configured encoder; `forward` is ACT's own.

    The resnet path is ACT's constructor unchanged plus `backbone_norm`; the timm path builds the
    same three camera modules around a timm model.
    """

    def __init__(self, config: ACTVisionConfig):
        if config.vision_encoder_type == "timm" and config.image_features:
            super().__init__(_without_cameras(config))
            self.config = config
            self.backbone, channels = build_timm_backbone(config)
            self.encoder_img_feat_input_proj = nn.Conv2d(channels, config.dim_model, kernel_size=1)
            self.encoder_cam_feat_pos_embed = ACTSinusoidalPositionEmbedding2d(config.dim_model // 2)
        else:
            super().__init__(config)
            if config.image_features:
                replace_frozen_batch_norm(self.backbone, config.resolved_backbone_norm)
        if config.image_features and config.freeze_vision_encoder:
            self.backbone = FrozenTrunk(self.backbone)


# ------------------------------------------------------------------------------------------------
# Policy side


class VisionEncoderPolicyMixin:
    """What both policies need around the encoder: the trunk's learning rate, and checkpoints that
    reload without the original weight file. Put it before `PreTrainedPolicy` in the bases."""

    def get_optim_params(self) -> list[dict]:
        """Two groups: the (unfrozen) trunk at `optimizer_lr_backbone`, everything else at the main rate."""
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        backbone = [p for name, p in trainable if name.startswith("model.backbone")]
        rest = [p for name, p in trainable if not name.startswith("model.backbone")]
        return [{"params": rest}, {"params": backbone, "lr": self.config.optimizer_lr_backbone}]

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        """LeRobot's `from_pretrained`; the trunk's weights come from the checkpoint alone."""
        with weights_from_checkpoint():
            return super().from_pretrained(*args, **kwargs)
