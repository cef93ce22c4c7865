"""ACTvantage: LeRobot's ACT conditioned on a binary advantage indicator (pi*0.6 / RECAP).

Training conditions every frame on "positive"/"negative" (or, with probability `advantage_dropout`,
on a null token). Inference conditions on "positive"; with `guidance_scale` β ≠ 1 it also runs the
reference condition (`guidance_reference`: null, or negative) in the same forward pass and returns
a_ref + β·(a_pos − a_ref).
"""

# No `from __future__ import annotations` here: LeRobot's policy tests read the real class of the
# `config` annotation of `ACTvantagePolicy.__init__`.

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.policies.act.modeling_act import ACTTemporalEnsembler
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from torch import Tensor

from lerobot_policy_actvantage.advantage import (
    MISSING,
    NEGATIVE,
    NULL,
    POSITIVE,
    AdvantageTable,
    advantage_to_positive,
    load_advantage_table,
)
from lerobot_policy_actvantage.conditioning import IndicatorConditionedDecoder, IndicatorConditionedEncoder
from lerobot_policy_actvantage.configuration_actvantage import (
    ACTvantageConfig,
    check_advantage_injection,
    check_guidance_scale,
)
from lerobot_policy_rewact.control_mode import control_flags
from lerobot_policy_rewact.vision_encoder import ACTWithVisionEncoder, VisionEncoderPolicyMixin

USE_ACTION_MASK = "use_action_mask"
INDICATOR_ROWS = {"positive": POSITIVE, "negative": NEGATIVE, "null": NULL}


class ACTvantage(ACTWithVisionEncoder):
    """ACT (with RewACT's choice of vision encoder) whose transformer is conditioned on one indicator
    row per output sample, where `config.advantage_injection` says."""

    def __init__(self, config: ACTvantageConfig):
        super().__init__(config)
        injection = check_advantage_injection(config.advantage_injection)
        self.encoder = IndicatorConditionedEncoder(
            self.encoder, config.dim_model, embed=injection in ("encoder_token", "encoder_and_decoder")
        )
        self.decoder = IndicatorConditionedDecoder(
            self.decoder, config.dim_model, embed=injection in ("decoder_queries", "encoder_and_decoder")
        )

    def forward(
        self, batch: dict[str, Tensor], indicator: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | tuple[None, None]]:
        """`indicator`: (k·B,) rows; returns actions (k·B, chunk, A) and ACT's latent parameters (B, L)."""
        with self.encoder.conditioned(indicator), self.decoder.conditioned(indicator):
            return super().forward(batch)


class ACTvantagePolicy(VisionEncoderPolicyMixin, PreTrainedPolicy):
    """ACT conditioned on a binarised advantage, with classifier-free guidance at inference."""

    config_class = ACTvantageConfig
    name = "actvantage"

    def __init__(
        self,
        config: ACTvantageConfig,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        dataset_meta=None,
        **kwargs,
    ):
        """`dataset_stats` is unused (normalisation lives in the processors). `dataset_meta` is given
        when building for a dataset (training): then a missing `advantage_file` is an error at once;
        without it (evaluation) the file is optional, as inference needs no advantages."""
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.model = ACTvantage(config)
        if config.temporal_ensemble_coeff is not None:
            self.temporal_ensembler = ACTTemporalEnsembler(config.temporal_ensemble_coeff, config.chunk_size)
        self._register_advantage_lookup(config, building_for_dataset=dataset_meta is not None)
        self.reset()

    def _register_advantage_lookup(self, config: ACTvantageConfig, building_for_dataset: bool) -> None:
        """Per-frame lookups as plain CPU tensors: outside the state dict, so checkpoints load on any
        dataset and without the file, and not module buffers, which DDP would broadcast from the main
        process at every forward (one entry per dataset frame, each step)."""
        table: AdvantageTable | None = None
        if config.advantage_file is not None and (
            building_for_dataset or Path(config.advantage_file).is_file()
        ):
            table = load_advantage_table(config.advantage_file, config.advantage_threshold)
        self.advantage_positive_lookup = table.positive if table else None
        self.advantage_episode_lookup = table.episode_index if table else None

    def reset(self):
        """Call whenever the environment is reset."""
        if self.config.temporal_ensemble_coeff is not None:
            self.temporal_ensembler.reset()
        else:
            self._action_queue = deque([], maxlen=self.config.n_action_steps)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], *, guidance_scale: float | None = None) -> Tensor:
        """One action per sample, [B, action_dim]; a new chunk is predicted when the queue is empty.

        `guidance_scale` overrides the configured β for the chunk predicted by this call.
        """
        self.eval()
        if self.config.temporal_ensemble_coeff is not None:
            actions = self.predict_action_chunk(batch, guidance_scale=guidance_scale)
            return self.temporal_ensembler.update(actions)
        if len(self._action_queue) == 0:
            actions = self.predict_action_chunk(batch, guidance_scale=guidance_scale)
            # (B, n_action_steps, A) -> queue of n_action_steps tensors of shape (B, A).
            self._action_queue.extend(actions[:, : self.config.n_action_steps].transpose(0, 1))
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(
        self, batch: dict[str, Tensor], *, guidance_scale: float | None = None
    ) -> Tensor:
        """(B, chunk_size, action_dim) normalised actions conditioned on "positive".

        With β ≠ 1, one forward pass over a doubled batch yields a_pos and the reference a_ref
        (`config.guidance_reference`: null or negative), combined as a_ref + β·(a_pos − a_ref).
        """
        reference = self.config.guidance_reference
        beta = check_guidance_scale(
            self.config.guidance_scale if guidance_scale is None else guidance_scale,
            self.config.advantage_dropout,
            reference,
        )
        if beta == 1.0:
            return self.predict_conditioned_chunks(batch, ("positive",))["positive"]
        chunks = self.predict_conditioned_chunks(batch, ("positive", reference))
        return chunks[reference] + beta * (chunks["positive"] - chunks[reference])

    @torch.no_grad()
    def predict_conditioned_chunks(
        self, batch: dict[str, Tensor], conditions: Sequence[str]
    ) -> dict[str, Tensor]:
        """Normalised action chunks (B, chunk_size, action_dim) under each of `conditions`
        ("positive", "negative", "null"), in one forward pass over the stacked batch: guidance
        combines two of them, and comparing them shows how much the indicator changes the policy."""
        self.eval()
        unknown = [condition for condition in conditions if condition not in INDICATOR_ROWS]
        if unknown or not conditions:
            raise ValueError(f"conditions must be some of {list(INDICATOR_ROWS)}, got {list(conditions)}.")
        batch = self._model_inputs(batch)
        batch_size = _batch_size(batch)
        device = batch[OBS_STATE].device
        indicator = torch.cat(
            [
                torch.full((batch_size,), INDICATOR_ROWS[condition], dtype=torch.long, device=device)
                for condition in conditions
            ]
        )
        actions = self.model(batch, indicator)[0]
        return dict(zip(conditions, actions.split(batch_size), strict=True))

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict[str, float]]:
        """Masked L1 (+ KL with the VAE) under the advantage condition; works in train and eval mode.

        `reduction="none"` returns one loss per sample (for LeRobot's sample weighting).
        """
        if reduction not in ("mean", "none"):
            raise ValueError(
                f"ACTvantagePolicy.forward: reduction must be 'mean' or 'none', got {reduction!r}."
            )
        batch = self._model_inputs(batch)
        batch_size = _batch_size(batch)
        positive = self._positive_labels(batch, batch_size)
        indicator = positive.long()
        dropped = torch.zeros_like(positive)
        if self.training and self.config.advantage_dropout > 0:
            dropped = torch.rand(batch_size, device=indicator.device) < self.config.advantage_dropout
            indicator = torch.where(dropped, torch.full_like(indicator, NULL), indicator)

        actions_hat, (mu, log_sigma_x2) = self.model(batch, indicator)

        valid = self._valid_actions(batch, batch_size).unsqueeze(-1).to(actions_hat.dtype)  # (B, S, 1)
        l1 = F.l1_loss(actions_hat, batch[ACTION], reduction="none") * valid
        elements = valid.sum(dim=(1, 2)) * actions_hat.shape[-1]  # valid elements per sample
        if mu is None:  # no latent was inferred (eval mode or no VAE): nothing to regularise
            kld = actions_hat.new_zeros(batch_size)
        else:
            kld = (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1)
        # The label, not the (possibly dropped) indicator, sets the weight: a negative frame counts
        # `negative_weight` in every condition it is trained under.
        weight = torch.where(positive, 1.0, self.config.negative_weight).to(l1.dtype)

        l1_mean = (l1 * weight[:, None, None]).sum() / (elements * weight).sum().clamp_min(1e-12)
        info = {
            "l1_loss": l1_mean.item(),
            "kld_loss": kld.mean().item(),
            "positive_fraction": positive.float().mean().item(),
            "null_fraction": dropped.float().mean().item(),
        }
        if reduction == "none":
            per_sample = l1.sum(dim=(1, 2)) / elements.clamp_min(1) + self.config.kl_weight * kld
            return per_sample * weight, info
        kld_mean = (kld * weight).sum() / weight.sum()
        return l1_mean + self.config.kl_weight * kld_mean, info

    def _model_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """ACT's batch layout: a list of camera images, and an `observation.state` ACT reads the device of."""
        batch = dict(batch)  # shallow copy: the caller's batch is left untouched
        for key in (*self.config.image_features, *([OBS_ENV_STATE] if self.config.env_state_feature else [])):
            if key not in batch:
                raise KeyError(f"ACTvantage needs batch[{key!r}]; the batch has {sorted(batch)}.")
        if self.config.image_features:
            batch[OBS_IMAGES] = [batch[key] for key in self.config.image_features]
        if OBS_STATE not in batch:
            if self.config.robot_state_feature:
                raise KeyError(f"ACTvantage needs batch[{OBS_STATE!r}]; the batch has {sorted(batch)}.")
            reference = batch[OBS_IMAGES][0] if self.config.image_features else batch[OBS_ENV_STATE]
            batch[OBS_STATE] = reference.new_zeros((reference.shape[0], 0))
        return batch

    def _positive_labels(self, batch: dict[str, Tensor], batch_size: int) -> Tensor:
        """(B,) bool: the batch's advantage key, else the advantage file; human control forces positive."""
        key = self.config.advantage_key
        if key in batch:
            positive = advantage_to_positive(batch[key], self.config.advantage_threshold, key, batch_size)
        else:
            positive = self._lookup_positive(batch)
        positive = positive.to(batch[OBS_STATE].device)
        # Frames under human control (plugin key or LeRobot's `intervention`) are corrections or
        # demonstrations, hence positive; policy-driven and unlabelled frames keep their advantage.
        human, _ = control_flags(batch, batch_size)
        if human is not None:
            positive = positive | human.to(positive.device)
        return positive

    def _lookup_positive(self, batch: dict[str, Tensor]) -> Tensor:
        key = self.config.advantage_key
        if self.config.advantage_file is None:
            raise KeyError(
                f"ACTvantage training needs advantages, but the batch has no {key!r} key and "
                "policy.advantage_file is not set. Either add a per-frame advantage to the batch under "
                f"{key!r} (e.g. robocandywrapper's advantage plugin through scripts/train.py), or pass "
                "--policy.advantage_file=PATH to an advantages parquet written by precompute_advantage."
            )
        if self.advantage_positive_lookup is None:
            raise FileNotFoundError(
                f"Advantage file {self.config.advantage_file} did not exist when the policy was built; "
                f"training without batch[{key!r}] needs it."
            )
        if "index" not in batch:
            raise KeyError(
                f"Looking advantages up in {self.config.advantage_file} needs batch['index'] (the dataset "
                f"index); the batch has {sorted(batch)}."
            )
        index = batch["index"].reshape(-1).long().cpu()
        lookup = self.advantage_positive_lookup
        labels = lookup[index.clamp(0, lookup.shape[0] - 1)]
        missing = (index < 0) | (index >= lookup.shape[0]) | (labels == MISSING)
        if missing.any():
            raise KeyError(
                f"Dataset index {int(index[missing][0])} has no advantage in {self.config.advantage_file}."
            )
        self._check_episodes(batch, index)
        return labels == 1

    def _check_episodes(self, batch: dict[str, Tensor], index: Tensor) -> None:
        """Catch an advantage file written for another dataset, when both sides know the episode."""
        if self.advantage_episode_lookup is None or "episode_index" not in batch:
            return
        expected = self.advantage_episode_lookup[index]
        actual = batch["episode_index"].reshape(-1).to(expected.device)
        mismatch = expected != actual
        if mismatch.any():
            position = int(mismatch.nonzero()[0, 0])
            raise ValueError(
                f"Advantage file {self.config.advantage_file} puts dataset index {int(index[position])} in "
                f"episode {int(expected[position])}, but the dataset has it in episode "
                f"{int(actual[position])}: the file was written for another dataset."
            )

    @staticmethod
    def _valid_actions(batch: dict[str, Tensor], batch_size: int) -> Tensor:
        """(B, S) bool: not padding and, when the batch carries `use_action_mask`, not masked out."""
        if "action_is_pad" not in batch:
            raise KeyError(
                f"ACTvantage training needs batch['action_is_pad']; the batch has {sorted(batch)}."
            )
        valid = ~batch["action_is_pad"].bool()
        if USE_ACTION_MASK in batch:
            mask = batch[USE_ACTION_MASK].bool().to(valid.device)
            if mask.numel() == batch_size:
                mask = mask.reshape(batch_size, 1)
            elif mask.shape != valid.shape:
                raise ValueError(
                    f"batch[{USE_ACTION_MASK!r}] has shape {tuple(mask.shape)}; expected ({batch_size},) "
                    f"or {tuple(valid.shape)}."
                )
            valid = valid & mask
        return valid


def _batch_size(batch: dict[str, Tensor]) -> int:
    return batch[OBS_IMAGES][0].shape[0] if OBS_IMAGES in batch else batch[OBS_ENV_STATE].shape[0]
