"""RewACT as a LeRobot reward model: `compute_reward(batch)` is the policy's predicted progress.

The reward model wraps a `RewACTPolicy` rather than re-implementing anything: the value head, the
target tables derived from `dataset_meta`, the loss and the checkpoint format are the policy's.
Saving writes exactly a RewACT policy checkpoint and loading reads one, so a policy trained with
`lerobot-train --policy.type=rewact` serves as a reward model through
`lerobot.rewards.make_reward_model`, and a reward model trained with
`lerobot-train --reward_model.type=rewact` runs as a policy (`lerobot-eval`, `from_pretrained`).
"""

# No `from __future__ import annotations`: LeRobot reads the real class of `config`'s annotation.

import builtins
from pathlib import Path
from typing import Any

import draccus
from lerobot.configs.rewards import RewardModelConfig
from lerobot.configs.types import FeatureType
from lerobot.rewards.pretrained import PreTrainedRewardModel
from torch import Tensor

from lerobot_policy_rewact.configuration_rewact_reward import RewACTProgressConfig
from lerobot_policy_rewact.lerobot_compat import find_lerobot_name
from lerobot_policy_rewact.modeling_rewact import RewACTPolicy

dataset_to_policy_features = find_lerobot_name(
    "dataset_to_policy_features", "lerobot.utils.feature_utils", "lerobot.datasets.utils"
)


def fill_features_from_dataset(config: RewACTProgressConfig, dataset_meta: Any) -> None:
    """Give `config` the dataset's features when it has none, as `make_policy` does for policies.

    LeRobot's reward-model factory builds the model from the config alone; the processors it builds
    next read the features from the same config object, so they see what is filled in here.
    """
    if config.input_features or dataset_meta is None:
        return
    features = dataset_to_policy_features(dataset_meta.features)
    config.output_features = {key: ft for key, ft in features.items() if ft.type is FeatureType.ACTION}
    config.input_features = {key: ft for key, ft in features.items() if key not in config.output_features}


class RewACTProgressRewardModel(PreTrainedRewardModel):
    """Predicted task progress in [value_min, value_max] as the reward of each observation."""

    config_class = RewACTProgressConfig
    name = "rewact"

    def __init__(
        self,
        config: RewACTProgressConfig,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        dataset_meta: Any = None,
        policy: RewACTPolicy | None = None,
        **kwargs: Any,
    ):
        super().__init__(config)
        if policy is None:
            fill_features_from_dataset(config, dataset_meta)
            policy = RewACTPolicy(config, dataset_stats=dataset_stats, dataset_meta=dataset_meta)
        self.policy = policy

    def compute_reward(self, batch: dict[str, Tensor]) -> Tensor:
        """Expected progress [B] of each (pre-processed) observation in the batch."""
        return self.policy.predict_value(batch)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """RewACT's training loss (action L1, optional KL, value cross-entropy)."""
        return self.policy.forward(batch)

    def get_optim_params(self) -> list[dict]:
        return self.policy.get_optim_params()

    def reset(self) -> None:
        self.policy.reset()

    def _save_pretrained(self, save_directory: Path) -> None:
        self.policy._save_pretrained(save_directory)

    @classmethod
    def from_pretrained(
        cls: builtins.type["RewACTProgressRewardModel"],
        pretrained_name_or_path: str | Path,
        *,
        config: RewardModelConfig | None = None,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        dataset_meta: Any = None,
        strict: bool = True,
        **hub_kwargs: Any,
    ) -> "RewACTProgressRewardModel":
        """Load a RewACT checkpoint (policy or reward model: the files are the same) as a reward model."""
        if config is None:
            try:
                config = RewardModelConfig.from_pretrained(pretrained_name_or_path, **hub_kwargs)
            except draccus.utils.DecodingError as error:
                raise TypeError(
                    f"{pretrained_name_or_path} cannot be read as a RewACT reward model: {error}"
                ) from error
        if not isinstance(config, RewACTProgressConfig):
            raise TypeError(
                f"{pretrained_name_or_path} holds a {config.type!r} model, not a RewACT checkpoint "
                f"(config.json 'type' must be 'rewact')."
            )
        policy = RewACTPolicy.from_pretrained(
            pretrained_name_or_path,
            config=config,
            dataset_stats=dataset_stats,
            dataset_meta=dataset_meta,
            strict=strict,
            **hub_kwargs,
        )
        return cls(config, policy=policy)
