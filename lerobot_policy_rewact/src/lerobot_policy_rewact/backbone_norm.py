"""Swap the normalisation layers of ACT's ResNet trunk.

LeRobot's ACT always builds its ResNet with `FrozenBatchNorm2d`. That is right for ImageNet weights
but, from random weights, frozen statistics of mean 0 / variance 1 leave the trunk nearly unable to
learn (measured: VOC 0.49 after 20 CPU minutes against 0.94 with trainable BatchNorm). The swap keeps
each layer's affine parameters and, for BatchNorm, its running statistics.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

MAX_GROUPS = 32


def _group_count(channels: int) -> int:
    """Largest divisor of `channels` not above 32 (ResNet widths give 32)."""
    return next(g for g in range(min(MAX_GROUPS, channels), 0, -1) if channels % g == 0)


def _replacement(frozen: FrozenBatchNorm2d, norm: str) -> nn.Module:
    channels = frozen.weight.shape[0]
    if norm == "batch_norm":
        layer = nn.BatchNorm2d(channels, eps=frozen.eps)
        layer.running_mean.copy_(frozen.running_mean)
        layer.running_var.copy_(frozen.running_var)
    elif norm == "group_norm":
        layer = nn.GroupNorm(_group_count(channels), channels, eps=frozen.eps)
    else:
        raise ValueError(f"Unknown backbone_norm {norm!r}; expected batch_norm or group_norm.")
    layer.weight.data.copy_(frozen.weight)
    layer.bias.data.copy_(frozen.bias)
    return layer


def replace_frozen_batch_norm(module: nn.Module, norm: str) -> None:
    """Replace, in place, every FrozenBatchNorm2d below `module` by a trainable `norm` layer."""
    if norm == "frozen_bn":
        return
    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            setattr(module, name, _replacement(child, norm))
        else:
            replace_frozen_batch_norm(child, norm)
