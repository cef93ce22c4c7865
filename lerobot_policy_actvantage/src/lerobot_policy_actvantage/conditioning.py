"""Wrappers that condition ACT's transformer on the advantage indicator without forking ACT.forward.

The indicator embedding is added to the encoder's first token (ACT's latent token). For guidance the
encoder wrapper receives one indicator per *output* sample: when there are k times more indicators
than samples, it tiles the token sequence k times, so the image backbone and input projections run
once for B observations while the transformer sees k·B conditioned copies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lerobot_policy_actvantage.advantage import NUM_INDICATORS


def _copies(target_batch: int, batch: int) -> int:
    if target_batch % batch:
        raise ValueError(f"Cannot tile a batch of {batch} to {target_batch} samples.")
    return target_batch // batch


class IndicatorConditionedEncoder(nn.Module):
    """ACT's transformer encoder with the indicator embedding added to token 0.

    The indicator is set only for the duration of one model call (`conditioned`), so a stale
    indicator can never leak into a later call.
    """

    def __init__(self, encoder: nn.Module, dim_model: int):
        super().__init__()
        self.inner = encoder
        self.indicator_embed = nn.Embedding(NUM_INDICATORS, dim_model)
        self._indicator: Tensor | None = None

    @contextmanager
    def conditioned(self, indicator: Tensor) -> Iterator[None]:
        """Condition the calls made inside the block on `indicator` (long, one row id per sample)."""
        if self._indicator is not None:
            raise RuntimeError("IndicatorConditionedEncoder.conditioned() does not nest.")
        self._indicator = indicator
        try:
            yield
        finally:
            self._indicator = None

    def forward(
        self, x: Tensor, pos_embed: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """x: (S, B, D) sequence-first tokens; returns (S, B', D) with B' = number of indicators."""
        if self._indicator is None:
            raise RuntimeError("The ACTvantage encoder was called without an indicator (use `conditioned`).")
        copies = _copies(self._indicator.shape[0], x.shape[1])
        if copies > 1:
            x = x.repeat(1, copies, 1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.repeat(copies, 1)
        first = x[:1] + self.indicator_embed(self._indicator).unsqueeze(0).to(x.dtype)
        x = torch.cat([first, x[1:]], dim=0)
        return self.inner(x, pos_embed=pos_embed, key_padding_mask=key_padding_mask)


class BatchMatchingDecoder(nn.Module):
    """ACT's transformer decoder, tiling its (all-zero) query input to the encoder output's batch."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.inner = decoder

    def forward(
        self,
        x: Tensor,
        encoder_out: Tensor,
        decoder_pos_embed: Tensor | None = None,
        encoder_pos_embed: Tensor | None = None,
    ) -> Tensor:
        copies = _copies(encoder_out.shape[1], x.shape[1])
        if copies > 1:
            x = x.repeat(1, copies, 1)
        return self.inner(
            x, encoder_out, decoder_pos_embed=decoder_pos_embed, encoder_pos_embed=encoder_pos_embed
        )
