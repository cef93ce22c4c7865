"""rewact_tools.make_pre_post_processors: LeRobot's steps plus plugin keys carried to both policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.processor_act import make_act_pre_post_processors
from torch.utils.data import DataLoader

from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy
from lerobot_policy_rewact import RewACTConfig, RewACTPolicy
from rewact_tools.advantages import ADVANTAGE_COLUMNS, write_advantages
from rewact_tools.candywrapper import WrappedRobotDataset
from rewact_tools.plugins import LabelledRewardPlugin, PiStar0_6AdvantagePlugin
from rewact_tools.processors import DEFAULT_EXTRA_KEYS, make_pre_post_processors

from policy_helpers import TINY_ACT, chunked_dataset, policy_features

REGISTRY_NAMES = {"rename_observations_processor", "device_processor", "normalizer_processor"}


@pytest.fixture(scope="module")
def labelled_batch(env_state_dataset, tmp_path_factory):
    """A raw batch of the env-state dataset with action chunks, `reward` and `advantage` from plugins."""
    folder = tmp_path_factory.mktemp("labels")
    frames = (
        env_state_dataset.hf_dataset.with_format(None)
        .select_columns(["index", "episode_index", "frame_index", "task_index"])
        .to_pandas()
    )
    # Rewards unrelated to task progress, so a policy that used progress targets would be caught.
    rewards = 0.2 + 0.6 * ((frames["index"] * 7919) % 13) / 12
    pd.DataFrame({"index": frames["index"], "reward": rewards}).to_parquet(folder / "rewards.parquet")
    advantage = np.cos(frames["index"].to_numpy().astype(float))
    table = frames.assign(value=0.0, **{"return": advantage}, advantage=advantage, positive=advantage > 0.3)
    write_advantages(table[list(ADVANTAGE_COLUMNS)], folder / "advantages.parquet")
    wrapped = WrappedRobotDataset(
        chunked_dataset(env_state_dataset, TINY_ACT["chunk_size"]),
        plugins=[
            LabelledRewardPlugin(folder / "rewards.parquet"),
            PiStar0_6AdvantagePlugin(folder / "advantages.parquet"),
        ],
    )
    loader = DataLoader(wrapped, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    return next(iter(loader))


def rewact_policy(dataset, **overrides):
    config = RewACTConfig(**policy_features(dataset), **{**TINY_ACT, "reward_source": "dataset", **overrides})
    return RewACTPolicy(config, dataset_stats=dataset.meta.stats, dataset_meta=dataset.meta)


def actvantage_policy(dataset, **overrides):
    config = ACTvantageConfig(**policy_features(dataset), **{**TINY_ACT, **overrides})
    return ACTvantagePolicy(config, dataset_stats=dataset.meta.stats, dataset_meta=dataset.meta)


def test_steps_keep_lerobot_registry_names(env_state_dataset):
    for policy in (rewact_policy(env_state_dataset), actvantage_policy(env_state_dataset)):
        pre, post = make_pre_post_processors(policy.config, env_state_dataset.meta.stats)
        pre_names = {getattr(type(step), "_registry_name", None) for step in pre.steps}
        post_names = {getattr(type(step), "_registry_name", None) for step in post.steps}
        assert REGISTRY_NAMES <= pre_names and "unnormalizer_processor" in post_names


def test_plugin_keys_reach_rewact_forward(env_state_dataset, labelled_batch):
    policy = rewact_policy(env_state_dataset)
    # LeRobot's own ACT pipeline drops the plugin keys, which is why this factory exists.
    act_pre, _ = make_act_pre_post_processors(policy.config, env_state_dataset.meta.stats)
    assert "reward" not in act_pre(dict(labelled_batch))
    pre, _ = make_pre_post_processors(policy.config, env_state_dataset.meta.stats)
    batch = pre(dict(labelled_batch))
    for key in ("reward", "advantage", "advantage_positive", "frame_index", "dataset_index"):
        assert torch.equal(batch[key], labelled_batch[key]), key
    policy.eval()
    _, info = policy.forward(batch)
    predicted = policy.predict_value(batch)
    given = labelled_batch["reward"]
    assert info["value_mae"] == pytest.approx((predicted - given).abs().mean().item(), abs=1e-5)
    progress = rewact_policy(env_state_dataset, reward_source="progress").target_table.lookup(batch["index"])
    assert abs(info["value_mae"] - (predicted - progress).abs().mean().item()) > 1e-3
    with pytest.raises(KeyError, match="reward_source='dataset' needs per-frame rewards"):
        policy.forward(act_pre(dict(labelled_batch)))


def test_plugin_keys_reach_actvantage_forward(env_state_dataset, labelled_batch):
    policy = actvantage_policy(env_state_dataset, advantage_key="advantage_positive", advantage_dropout=0.0)
    pre, _ = make_pre_post_processors(policy.config, env_state_dataset.meta.stats, extra_keys=())
    batch = pre(dict(labelled_batch))  # the config's own advantage_key is always carried
    assert "advantage_positive" in batch and "reward" not in batch
    _, info = policy.forward(batch)
    assert info["positive_fraction"] == pytest.approx(
        labelled_batch["advantage_positive"].float().mean().item()
    )
    # With the continuous advantage, the policy thresholds it itself (advantage_threshold = 0).
    continuous = actvantage_policy(env_state_dataset, advantage_dropout=0.0)
    pre, _ = make_pre_post_processors(continuous.config, env_state_dataset.meta.stats)
    _, info = continuous.forward(pre(dict(labelled_batch)))
    assert info["positive_fraction"] == pytest.approx((labelled_batch["advantage"] > 0).float().mean().item())
    assert 0 < info["positive_fraction"] < 1


def test_pretrained_pipelines_load_and_still_carry_keys(env_state_dataset, labelled_batch, tmp_path):
    policy = rewact_policy(env_state_dataset)
    pre, post = make_pre_post_processors(policy.config, env_state_dataset.meta.stats)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    loaded_pre, loaded_post = make_pre_post_processors(policy.config, pretrained_path=tmp_path)
    expected, batch = pre(dict(labelled_batch)), loaded_pre(dict(labelled_batch))
    assert set(batch) == set(expected)
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(batch[key], value), key
    action = torch.randn(3, 3)
    assert torch.equal(loaded_post(action), post(action))
    # Other stats replace the saved ones (fine-tuning on another dataset).
    stats = {
        k: {s: (v * 2 if s == "std" else v) for s, v in d.items()}
        for k, d in env_state_dataset.meta.stats.items()
    }
    rescaled_pre, _ = make_pre_post_processors(policy.config, dataset_stats=stats, pretrained_path=tmp_path)
    rescaled = rescaled_pre(dict(labelled_batch))
    assert not torch.allclose(rescaled["observation.state"], batch["observation.state"])
    assert torch.equal(rescaled["reward"], labelled_batch["reward"])


def test_bad_configs_and_missing_checkpoints(env_state_dataset, tmp_path):
    config = ACTConfig(**policy_features(env_state_dataset), **TINY_ACT)
    with pytest.raises(TypeError, match="supports RewACTConfig and ACTvantageConfig, got ACTConfig"):
        make_pre_post_processors(config, env_state_dataset.meta.stats)
    policy = rewact_policy(env_state_dataset)
    with pytest.raises(FileNotFoundError, match=r"policy_preprocessor\.json"):
        make_pre_post_processors(policy.config, pretrained_path=tmp_path)


def test_default_extra_keys_cover_every_plugin_key():
    plugin_keys = {
        "reward",
        "advantage",
        "advantage_positive",
        "control_mode",
        "control_mode_autonomous",
        "control_mode_human",
        "episode_outcome",
        "episode_outcome_mask",
        "use_action_mask",
        "intervention",  # LeRobot's own human-control flag (lerobot-rollout's DAgger strategy)
    }
    assert plugin_keys <= set(DEFAULT_EXTRA_KEYS)
