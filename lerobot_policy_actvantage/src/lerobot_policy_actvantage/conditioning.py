"""Wrappers that condition ACT's transformer on the advantage indicator without forking ACT.forward.

Each wrapper may own a learned indicator embedding (`config.advantage_injection` decides which do):
the encoder's is added to its first token (ACT's latent token), the decoder's to every decoder
query. For guidance the encoder wrapper receives one indicator per *output* sample: when there are
k times more indicators than samples, it tiles the token sequence k times, so the image backbone and
input projections run once for B observations while the transformer sees k·B conditioned copies;
the decoder wrapper tiles its (all-zero) queries to match.
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


class _IndicatorConditioned(nn.Module):
    """One of ACT's transformer stacks (`inner`) and, when `embed`, its own indicator embedding.

    The indicator is set only for the duration of one model call (`conditioned`), so a stale
    indicator can never leak into a later call.
    """

    stack = ""  # "encoder" or "decoder", for error messages

    def __init__(self, inner: nn.Module, dim_model: int, embed: bool):
        super().__init__()
        self.inner = inner
        self.indicator_embed = nn.Embedding(NUM_INDICATORS, dim_model) if embed else None
        self._indicator: Tensor | None = None

    @contextmanager
    def conditioned(self, indicator: Tensor) -> Iterator[None]:
        """Condition the calls made inside the block on `indicator` (long, one row id per sample)."""
        if self._indicator is not None:
            raise RuntimeError(f"{type(self).__name__}.conditioned() does not nest.")
        self._indicator = indicator
        try:
            yield
        finally:
            self._indicator = None

    def _require_indicator(self) -> Tensor:
        if self._indicator is None:
            raise RuntimeError(
                f"The ACTvantage {self.stack} was called without an indicator (use `conditioned`)."
            )
        return self._indicator

    def _embedding(self, x: Tensor) -> Tensor:
        """(1, B', D) indicator embedding for the sequence-first input x: (S, B', D)."""
        indicator = self._require_indicator()
        if indicator.shape[0] != x.shape[1]:
            raise ValueError(
                f"The ACTvantage {self.stack} got {indicator.shape[0]} indicators for {x.shape[1]} samples."
            )
        return self.indicator_embed(indicator).unsqueeze(0).to(x.dtype)


class IndicatorConditionedEncoder(_IndicatorConditioned):
    """ACT's transformer encoder, tiled to the indicator's batch, with the embedding added to token 0."""

    stack = "encoder"

    def forward(
        self, x: Tensor, pos_embed: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """x: (S, B, D) sequence-first tokens; returns (S, B', D) with B' = number of indicators."""
        copies = _copies(self._require_indicator().shape[0], x.shape[1])
        if copies > 1:
            x = x.repeat(1, copies, 1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.repeat(copies, 1)
        if self.indicator_embed is not None:
            x = torch.cat([x[:1] + self._embedding(x), x[1:]], dim=0)
        return self.inner(x, pos_embed=pos_embed, key_padding_mask=key_padding_mask)


class IndicatorConditionedDecoder(_IndicatorConditioned):
    """ACT's transformer decoder, its (all-zero) queries tiled to the encoder output's batch and,
    with an embedding, each query given the indicator embedding before the first layer."""

    stack = "decoder"

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
        if self.indicator_embed is not None:
            x = x + self._embedding(x)
        return self.inner(
            x, encoder_out, decoder_pos_embed=decoder_pos_embed, encoder_pos_embed=encoder_pos_embed
        )
