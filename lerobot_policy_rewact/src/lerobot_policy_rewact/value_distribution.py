"""Categorical value distributions over fixed support points (distributional value learning).

A scalar target y becomes a probability vector over `linspace(value_min, value_max, num_bins)`;
the head is trained by cross-entropy against it and read out as the expected value Σ p_k z_k.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Targets this far outside the range are float noise (e.g. 1.0000001) and are clamped; anything
# further out is a labelling error and raises.
RANGE_TOLERANCE = 1e-5


class ValueSupport(nn.Module):
    """Support points plus the encodings `one_hot`, `two_hot` and `hl_gauss` of scalar targets."""

    def __init__(self, value_min: float, value_max: float, num_bins: int, sigma_ratio: float = 0.75):
        super().__init__()
        self.value_min = float(value_min)
        self.value_max = float(value_max)
        self.num_bins = int(num_bins)
        self.spacing = (self.value_max - self.value_min) / (self.num_bins - 1)
        self.sigma = sigma_ratio * self.spacing
        # Derived from the configuration, so never saved in checkpoints.
        self.register_buffer("points", torch.linspace(value_min, value_max, num_bins), persistent=False)
        edges = torch.cat(
            [
                self.points[:1] - self.spacing / 2,
                (self.points[1:] + self.points[:-1]) / 2,
                self.points[-1:] + self.spacing / 2,
            ]
        )
        self.register_buffer("edges", edges, persistent=False)

    def check_range(self, targets: Tensor, key: str = "target") -> Tensor:
        """Raise on targets outside [value_min, value_max]; clamp float noise at the borders."""
        if not torch.isfinite(targets).all():
            raise ValueError(
                f"{key} holds non-finite values: {targets[~torch.isfinite(targets)][:5].tolist()}"
            )
        low = targets < self.value_min - RANGE_TOLERANCE
        high = targets > self.value_max + RANGE_TOLERANCE
        if (low | high).any():
            bad = targets[low | high][:5].tolist()
            raise ValueError(
                f"{key} has values outside the value range [{self.value_min}, {self.value_max}]: {bad}. "
                "Rescale the labels or change value_min/value_max."
            )
        return targets.clamp(self.value_min, self.value_max)

    def encode(self, targets: Tensor, kind: str) -> Tensor:
        """Distribution [..., num_bins] for scalar targets [...] (each row sums to one)."""
        targets = self.check_range(targets.float())
        if kind == "one_hot":
            nearest = torch.round((targets - self.value_min) / self.spacing).long()
            return nn.functional.one_hot(nearest, self.num_bins).float()
        if kind == "two_hot":
            position = (targets - self.value_min) / self.spacing
            lower = position.floor().long().clamp(max=self.num_bins - 2)
            upper_weight = (position - lower).unsqueeze(-1)
            lower_hot = nn.functional.one_hot(lower, self.num_bins).float()
            upper_hot = nn.functional.one_hot(lower + 1, self.num_bins).float()
            return lower_hot * (1 - upper_weight) + upper_hot * upper_weight
        if kind == "hl_gauss":
            cdf = 0.5 * (1 + torch.erf((self.edges - targets.unsqueeze(-1)) / (self.sigma * math.sqrt(2))))
            mass = cdf[..., 1:] - cdf[..., :-1]
            return mass / mass.sum(-1, keepdim=True)
        raise ValueError(f"Unknown value_target {kind!r}; expected one of one_hot, two_hot, hl_gauss.")

    def expectation(self, probs: Tensor) -> Tensor:
        """Expected value Σ p_k z_k, clamped to the value range."""
        return (probs * self.points).sum(-1).clamp(self.value_min, self.value_max)
