"""RewACT as a LeRobot reward model (`rewact` type, LeRobot 0.6+): factory, config round trips,
`compute_reward`, and `lerobot-train --reward_model.type=rewact`. Skipped on LeRobot 0.4."""

from __future__ import annotations

import json

import pytest
import torch

from lerobot_policy_rewact import HAS_REWARD_MODELS, RewACTConfig, RewACTPolicy

from local_datasets import make_local_dataset
from policy_helpers import TINY_ACT, policy_features
from subprocess_helpers import last_checkpoint, train_tiny

pytestmark = pytest.mark.skipif(
    not HAS_REWARD_MODELS, reason="first-class reward models (lerobot.rewards) need LeRobot 0.6"
)


def _observation(batch_size: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "observation.image": torch.rand(batch_size, 3, 32, 32, generator=generator),
        "observation.state": torch.randn(batch_size, 2, generator=generator),
    }


def test_reward_config_is_rewacts_config_under_the_reward_registry():
    from lerobot.configs.rewards import RewardModelConfig
    from lerobot.rewards import make_reward_model_config

    from lerobot_policy_rewact import RewACTProgressConfig

    config = make_reward_model_config("rewact", device="cpu", dim_model=64, reward_loss_weight=1.0)
    assert type(config) is RewACTProgressConfig and config.type == "rewact"
    assert isinstance(config, RewACTConfig) and isinstance(config, RewardModelConfig)
    assert config.dim_model == 64 and config.num_value_bins == RewACTConfig().num_value_bins
    assert config.push_to_hub is False
    with pytest.raises(ValueError) as error:  # LeRobot's factory chains the config's own error
        make_reward_model_config("rewact", device="cpu", value_target="gaussian")
    assert "value_target='gaussian'" in str(error.value.__cause__)


def test_a_rewact_policy_checkpoint_loads_through_the_reward_factory(image_dataset, tmp_path):
    from lerobot.configs.rewards import RewardModelConfig
    from lerobot.rewards import make_reward_model

    from lerobot_policy_rewact import RewACTProgressRewardModel

    policy = RewACTPolicy(RewACTConfig(**TINY_ACT, **policy_features(image_dataset)))
    policy.save_pretrained(tmp_path / "policy")

    config = RewardModelConfig.from_pretrained(tmp_path / "policy")
    config.pretrained_path = str(tmp_path / "policy")
    reward_model = make_reward_model(config)
    assert isinstance(reward_model, RewACTProgressRewardModel)
    rewards = reward_model.compute_reward(_observation())
    assert rewards.shape == (3,)
    torch.testing.assert_close(rewards, policy.predict_value(_observation()), rtol=0, atol=0)

    # Saved as a reward model, it is a policy checkpoint again, bit for bit.
    reward_model.save_pretrained(tmp_path / "reward")
    reloaded = RewACTPolicy.from_pretrained(tmp_path / "reward")
    for (name, mine), (_, theirs) in zip(
        policy.state_dict().items(), reloaded.state_dict().items(), strict=True
    ):
        assert torch.equal(mine, theirs), name
    saved = json.loads((tmp_path / "reward" / "config.json").read_text())
    assert saved["type"] == "rewact" and saved["dim_model"] == TINY_ACT["dim_model"]


def test_the_factory_refuses_a_checkpoint_of_another_type(image_dataset, tmp_path):
    from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy
    from lerobot_policy_rewact import RewACTProgressRewardModel

    ACTvantagePolicy(ACTvantageConfig(**TINY_ACT, **policy_features(image_dataset))).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="cannot be read as a RewACT reward model.*'actvantage'"):
        RewACTProgressRewardModel.from_pretrained(tmp_path)


def test_reward_model_built_from_dataset_meta_trains_on_its_targets(image_dataset):
    from lerobot.rewards import make_reward_model, make_reward_model_config, make_reward_pre_post_processors

    from policy_helpers import chunked_dataset, preprocessed_batches

    config = make_reward_model_config("rewact", **TINY_ACT)
    reward_model = make_reward_model(
        config, dataset_stats=image_dataset.meta.stats, dataset_meta=image_dataset.meta
    )
    assert set(config.input_features) == {"observation.image", "observation.state"}
    assert reward_model.is_trainable
    preprocessor, _ = make_reward_pre_post_processors(config, dataset_stats=image_dataset.meta.stats)
    batch = next(preprocessed_batches(chunked_dataset(image_dataset, config.chunk_size), preprocessor, 8))
    loss, info = reward_model.forward(batch)
    assert loss.ndim == 0 and loss.requires_grad
    assert {"l1_loss", "value_loss", "value_mae"} <= set(info)


@pytest.mark.duration(11)
def test_lerobot_train_trains_a_reward_model_that_loads_as_both(tmp_path):
    from lerobot.configs.rewards import RewardModelConfig
    from lerobot.rewards import make_reward_model

    root = tmp_path / "data"
    make_local_dataset(root, repo_id="local/reward", episode_lengths=(10, 12), with_next_fields=True)
    train_tiny(root, "local/reward", tmp_path / "train", trains="reward_model")
    checkpoint = last_checkpoint(tmp_path / "train")
    train_config = json.loads((checkpoint / "train_config.json").read_text())
    assert train_config["reward_model"]["type"] == "rewact" and train_config["policy"] is None

    config = RewardModelConfig.from_pretrained(checkpoint)
    config.pretrained_path = str(checkpoint)
    rewards = make_reward_model(config).compute_reward(_observation(2))
    policy = RewACTPolicy.from_pretrained(checkpoint)
    torch.testing.assert_close(rewards, policy.predict_value(_observation(2)), rtol=0, atol=0)
    assert ((rewards >= 0) & (rewards <= 1)).all()
