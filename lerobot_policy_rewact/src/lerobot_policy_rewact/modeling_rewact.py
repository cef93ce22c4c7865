"""RewACT: ACT that also predicts task progress as a categorical value distribution (SPEC §2).

The network is LeRobot's `ACT` unchanged except for three additions, so every ACT setting keeps its
behaviour and cost:
- a value head reading one transformer token (the first decoder token, or the encoder mean),
- a learned "missing state" embedding that replaces the state token with probability
  `proprio_dropout` in training, so the value cannot be read off proprioception alone,
- the vision encoder of `vision_encoder.py` (ACT's ResNet with `backbone_norm`, or a timm model).
"""

# No `from __future__ import annotations`: LeRobot reads the real class of `config`'s annotation.

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.configs.types import FeatureType
from lerobot.policies.act.modeling_act import ACTTemporalEnsembler
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from torch import Tensor, nn

from lerobot_policy_rewact.configuration_rewact import RewACTConfig
from lerobot_policy_rewact.control_mode import control_flags
from lerobot_policy_rewact.targets import TargetTable, build_target_table, has_keypoint_sidecar
from lerobot_policy_rewact.value_distribution import ValueSupport
from lerobot_policy_rewact.vision_encoder import ACTWithVisionEncoder, VisionEncoderPolicyMixin


class StateTokenDropout(nn.Module):
    """ACT's state projection, whose output is swapped per sample for a learned embedding in training."""

    def __init__(self, projection: nn.Linear, probability: float):
        super().__init__()
        self.projection = projection
        self.probability = probability
        self.missing_state = nn.Parameter(torch.randn(projection.out_features) * 0.02)

    def forward(self, state: Tensor) -> Tensor:
        tokens = self.projection(state)
        if not self.training or self.probability == 0:
            return tokens
        dropped = torch.rand(tokens.shape[0], 1, device=tokens.device) < self.probability
        return torch.where(dropped, self.missing_state.to(tokens.dtype), tokens)


class RewACTModel(ACTWithVisionEncoder):
    """ACT plus a value head; `forward` returns `(actions, (mu, log_sigma_x2), value_logits)`."""

    def __init__(self, config: RewACTConfig):
        super().__init__(config)
        if config.robot_state_feature:
            self.encoder_robot_state_input_proj = StateTokenDropout(
                self.encoder_robot_state_input_proj, config.proprio_dropout
            )
        dim = config.dim_model
        self.value_head = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, config.num_value_bins)
        )

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, tuple, Tensor]:
        # The value reads a token ACT computes internally; a forward hook captures it for this call
        # only, which keeps ACT's forward reused as is rather than forked.
        source = self.decoder if self.config.value_from == "decoder_first" else self.encoder
        captured: list[Tensor] = []
        handle = source.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
        try:
            actions, latent_params = super().forward(batch)
        finally:
            handle.remove()
        tokens = captured[-1]  # (sequence, batch, dim)
        pooled = tokens[0] if self.config.value_from == "decoder_first" else tokens.mean(0)
        return actions, latent_params, self.value_head(pooled)


def _per_sample_flag(batch: dict[str, Any], key: str, batch_size: int) -> Tensor | None:
    """A boolean plugin key as [B, 1] or [B, chunk], or None when the batch does not carry it."""
    if key not in batch:
        return None
    value = torch.as_tensor(batch[key])
    if value.numel() == batch_size:
        return value.reshape(batch_size, 1).bool()
    return value.reshape(batch_size, -1).bool()


def restore_squeezed_dims(batch: dict[str, Any], config: RewACTConfig) -> None:
    """Give one-dimensional features their axis back, in place.

    LeRobot datasets return a feature of shape (1,) as a scalar, so a 1-D state arrives as [B] and a
    1-D action chunk as [B, chunk]; ACT's linear projections need the trailing axis.
    """
    for key, feature in config.input_features.items():
        if key in batch and feature.type in (FeatureType.STATE, FeatureType.ENV):
            batch[key] = batch[key].reshape(batch[key].shape[0], *feature.shape)
    if batch.get(ACTION) is not None:  # LeRobot's processors put None there at inference
        batch[ACTION] = batch[ACTION].reshape(batch[ACTION].shape[0], -1, *config.action_feature.shape)


class RewACTPolicy(VisionEncoderPolicyMixin, PreTrainedPolicy):
    """ACT with a distributional value head predicting task progress in [value_min, value_max]."""

    config_class = RewACTConfig
    name = "rewact"

    def __init__(
        self,
        config: RewACTConfig,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        dataset_meta: Any = None,
        **kwargs: Any,
    ):
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.model = RewACTModel(config)
        self.value_support = ValueSupport(
            config.value_min, config.value_max, config.num_value_bins, config.hl_gauss_sigma_ratio
        )
        self.target_table = self._make_target_table(dataset_meta)
        if config.temporal_ensemble_coeff is not None:
            self.temporal_ensembler = ACTTemporalEnsembler(config.temporal_ensemble_coeff, config.chunk_size)
        self.reset()

    def _make_target_table(self, dataset_meta: Any) -> TargetTable | None:
        """Targets computed from the dataset, for batches that carry no reward (stock lerobot-train)."""
        source = self.config.reward_source
        if dataset_meta is None or source == "dataset":
            return None
        if source == "auto":
            source = "keypoints" if has_keypoint_sidecar(dataset_meta) else "progress"
        elif source == "keypoints" and not has_keypoint_sidecar(dataset_meta):
            raise FileNotFoundError(
                f"reward_source='keypoints' but the dataset at {dataset_meta.root} has no keypoint file "
                "rewact_extensions/reward_keypoints.json; write labels first or use reward_source='progress'."
            )
        return TargetTable(build_target_table(dataset_meta, source, self.config), source)

    def reset(self) -> None:
        """Clear the action queue (or ensembler) and the last predicted value; call on env reset."""
        if self.config.temporal_ensemble_coeff is not None:
            self.temporal_ensembler.reset()
        else:
            self._action_queue: deque[Tensor] = deque([], maxlen=self.config.n_action_steps)
        self.last_value: Tensor | None = None

    def _model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Shallow copy of the batch in the layout ACT reads (image list, a state tensor to read a device from)."""
        missing = [key for key in self.config.input_features if key not in batch]
        if missing:
            raise KeyError(
                f"RewACT batch lacks input features {missing}; the policy was configured with "
                f"{sorted(self.config.input_features)} and the batch has {sorted(batch)}."
            )
        batch = dict(batch)
        restore_squeezed_dims(batch, self.config)
        if self.config.image_features:
            batch[OBS_IMAGES] = [batch[key] for key in self.config.image_features]
        if OBS_STATE not in batch:
            reference = batch[OBS_IMAGES][0] if OBS_IMAGES in batch else batch[OBS_ENV_STATE]
            batch[OBS_STATE] = reference.new_zeros(reference.shape[0], 0)
        return batch

    def _run(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Action chunk and value logits at inference; records `last_value`."""
        self.eval()
        actions, _, value_logits = self.model(self._model_inputs(batch))
        self.last_value = self.value_support.expectation(value_logits.softmax(-1))
        return actions, value_logits

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor]) -> Tensor:
        """Next action [B, action_dim]: from the queue, or from a new chunk when it is empty."""
        if self.config.temporal_ensemble_coeff is not None:
            return self.temporal_ensembler.update(self.predict_action_chunk(batch))
        if len(self._action_queue) == 0:
            actions = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._action_queue.extend(actions.transpose(0, 1))
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """Action chunk [B, chunk_size, action_dim]; also sets `last_value`."""
        return self._run(batch)[0]

    @torch.no_grad()
    def predict_value_distribution(self, batch: dict[str, Tensor]) -> Tensor:
        """Probabilities [B, num_value_bins] over the support points; leaves the action queue alone."""
        self.eval()
        _, _, value_logits = self.model(self._model_inputs(batch))
        return value_logits.softmax(-1)

    @torch.no_grad()
    def predict_value(self, batch: dict[str, Tensor]) -> Tensor:
        """Expected value [B] (predicted task progress), clamped to the value range."""
        return self.value_support.expectation(self.predict_value_distribution(batch))

    def value_targets(self, batch: dict[str, Any]) -> Tensor:
        """Scalar training targets [B] chosen by `reward_source` (SPEC §2.2)."""
        key = self.config.reward_key
        source = self.config.reward_source
        if key in batch and source in ("auto", "dataset"):
            targets = torch.as_tensor(batch[key], dtype=torch.float32)
            return self.value_support.check_range(targets.reshape(-1), key=f"batch[{key!r}]")
        if source == "dataset":
            raise KeyError(
                f"reward_source='dataset' needs per-frame rewards under batch[{key!r}], but the batch has "
                f"only {sorted(batch)}. Add a reward plugin, set reward_key, or use reward_source='auto'."
            )
        if self.target_table is None:
            raise KeyError(
                f"RewACT has no value targets: the batch has no {key!r} and the policy was built without "
                "dataset_meta (pass dataset_meta=dataset.meta, or add rewards to the batch)."
            )
        if "index" not in batch:
            raise KeyError(
                f"RewACT looks value targets up by batch['index'], but the batch has {sorted(batch)}."
            )
        return self.target_table.lookup(batch["index"])

    def action_mask(self, batch: dict[str, Any]) -> Tensor:
        """[B, chunk] mask of action elements that train the policy (SPEC §2.2)."""
        actions = batch[ACTION]
        batch_size, chunk = actions.shape[:2]
        mask = torch.ones(batch_size, chunk, dtype=torch.bool, device=actions.device)
        if "action_is_pad" in batch:
            mask &= ~batch["action_is_pad"].bool()
        use = _per_sample_flag(batch, "use_action_mask", batch_size)
        if use is not None:
            mask &= use.to(mask.device)
        success = _per_sample_flag(batch, "episode_outcome", batch_size)
        if success is not None:
            labelled = _per_sample_flag(batch, "episode_outcome_mask", batch_size)
            failed = ~success if labelled is None else (~success & labelled)
            mask &= ~failed.to(mask.device)
        _, autonomous = control_flags(batch, batch_size)
        if autonomous is not None:
            mask &= ~autonomous.to(mask.device).unsqueeze(1)
        return mask

    def forward(self, batch: dict[str, Any], reduction: str = "mean") -> tuple[Tensor, dict[str, float]]:
        """Training/validation loss: masked L1 + kl_weight·KL (VAE) + reward_loss_weight·value CE."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
        targets = self.value_targets(batch)
        batch = self._model_inputs(batch)
        actions_hat, (mu, log_sigma_x2), value_logits = self.model(batch)

        mask = self.action_mask(batch).unsqueeze(-1).to(actions_hat.dtype)
        abs_error = F.l1_loss(actions_hat, batch[ACTION], reduction="none") * mask
        valid_per_sample = mask.sum((1, 2)) * actions_hat.shape[-1]
        l1_per_sample = abs_error.sum((1, 2)) / valid_per_sample.clamp(min=1)
        l1_mean = abs_error.sum() / valid_per_sample.sum().clamp(min=1)

        if mu is None:
            kld_per_sample = actions_hat.new_zeros(actions_hat.shape[0])
        else:
            kld_per_sample = (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1)

        targets = targets.to(value_logits.device)
        log_probs = value_logits.log_softmax(-1)
        target_probs = self.value_support.encode(targets, self.config.value_target)
        value_ce = -(target_probs * log_probs).sum(-1)
        probs = log_probs.exp()
        predicted = self.value_support.expectation(probs)

        value_weight = self.config.reward_loss_weight
        if reduction == "none":
            loss = l1_per_sample + self.config.kl_weight * kld_per_sample + value_weight * value_ce
        else:
            loss = l1_mean + self.config.kl_weight * kld_per_sample.mean() + value_weight * value_ce.mean()
        info = {
            "l1_loss": l1_mean.item(),
            "kld_loss": kld_per_sample.mean().item(),
            "value_loss": value_ce.mean().item(),
            "value_mae": (predicted - targets).abs().mean().item(),
            "value_entropy": -(probs * log_probs).sum(-1).mean().item(),
        }
        return loss, info
