"""RewACT policy: discovery, LeRobot's generic policy checks, shapes, masks, inference API, errors."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_policy_config
from lerobot.utils.constants import ACTION
from lerobot.utils.import_utils import register_third_party_plugins
from torchvision.ops.misc import FrozenBatchNorm2d

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors
from lerobot_policy_rewact.reward_labels import KEYPOINTS_RELATIVE_PATH

from local_datasets import make_local_dataset
from policy_helpers import TINY_ACT, chunked_dataset, policy_features, preprocessed_batches


def tiny_policy(dataset, **overrides) -> RewACTPolicy:
    config = RewACTConfig(**policy_features(dataset), **{**TINY_ACT, **overrides})
    return RewACTPolicy(config, dataset_stats=dataset.meta.stats, dataset_meta=dataset.meta)


def first_batch(policy, dataset, batch_size=3):
    preprocessor, _ = make_rewact_pre_post_processors(policy.config, dataset.meta.stats)
    chunked = chunked_dataset(dataset, policy.config.chunk_size)
    return next(preprocessed_batches(chunked, preprocessor, batch_size))


def observation_only(batch):
    return {k: v for k, v in batch.items() if k.startswith("observation.")}


# --- discovery and LeRobot's generic policy tests ----------------------------------------------


def test_plugin_is_discovered_by_lerobot():
    register_third_party_plugins()
    assert get_policy_class("rewact") is RewACTPolicy
    assert PreTrainedConfig.get_choice_class("rewact") is RewACTConfig


def test_get_policy_and_config_classes(image_dataset):
    """Mirror of LeRobot's test: classes by name, then a forward and an action from a real dataset."""
    register_third_party_plugins()
    policy_cls = get_policy_class("rewact")
    assert policy_cls.name == "rewact"
    assert issubclass(policy_cls.config_class, PreTrainedConfig)
    config = make_policy_config("rewact", **policy_features(image_dataset), **TINY_ACT)
    assert isinstance(config, RewACTConfig)
    policy = policy_cls(config, dataset_stats=image_dataset.meta.stats, dataset_meta=image_dataset.meta)
    batch = first_batch(policy, image_dataset)
    policy.train()
    loss, info = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert set(info) >= {"l1_loss", "kld_loss", "value_loss", "value_mae", "value_entropy"}
    assert all(isinstance(v, float) for v in info.values())
    policy.reset()
    action = policy.select_action(observation_only(batch))
    assert action.shape == (3, 2)


def test_config_annotation_is_the_real_class():
    """LeRobot resolves the config class from the real (non-string) annotation of `config`."""
    assert inspect.signature(RewACTPolicy.__init__).parameters["config"].annotation is RewACTConfig


def test_policy_defaults():
    """The default config builds (offline, without pretrained weights) and has the SPEC defaults,
    but for `backbone_norm`, which the image reward-model study settled on `frozen_bn`."""
    config = RewACTConfig(pretrained_backbone_weights=None)
    assert (config.num_value_bins, config.value_min, config.value_max) == (101, 0.0, 1.0)
    assert config.value_target == "hl_gauss" and config.hl_gauss_sigma_ratio == 0.75
    assert config.reward_loss_weight == 0.1 and config.reward_key == "reward"
    assert config.reward_source == "auto" and config.value_from == "decoder_first"
    assert (config.progress_start, config.progress_end, config.proprio_dropout) == (0.05, 0.95, 0.3)
    assert config.backbone_norm == "frozen_bn" and config.pretrained_revision is None
    config.input_features = {"observation.environment_state": PolicyFeature(FeatureType.ENV, (5,))}
    config.output_features = {ACTION: PolicyFeature(FeatureType.ACTION, (3,))}
    RewACTPolicy(config)


def test_save_and_load_pretrained_is_bit_exact(image_dataset, tmp_path):
    policy = tiny_policy(image_dataset)
    policy.save_pretrained(tmp_path)
    loaded = RewACTPolicy.from_pretrained(tmp_path)
    assert isinstance(loaded.config, RewACTConfig)
    saved, restored = policy.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys()
    for key in saved:
        assert torch.equal(saved[key], restored[key]), key
    # The dataset-derived target table is not part of the checkpoint.
    assert not any("table" in key for key in saved)


def test_checkpoint_loads_on_another_dataset(image_dataset, tmp_path):
    policy = tiny_policy(image_dataset)
    policy.save_pretrained(tmp_path / "ckpt")
    other = make_local_dataset(tmp_path / "other", episode_lengths=(30, 31, 32, 33))
    loaded = RewACTPolicy.from_pretrained(tmp_path / "ckpt", dataset_meta=other.meta)
    assert loaded.target_table.table.numel() == other.num_frames
    # One entry per dataset frame: kept off the module's buffers, which DDP sends at every step.
    assert all(buffer is not loaded.target_table.table for buffer in loaded.buffers())


def test_config_declares_pretrained_revision(tmp_path, image_dataset):
    policy = tiny_policy(image_dataset)
    policy.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    data = json.loads(config_path.read_text())
    data["pretrained_revision"] = "main"
    config_path.write_text(json.dumps(data))
    assert RewACTPolicy.from_pretrained(tmp_path).config.pretrained_revision == "main"


# --- shapes for many layouts --------------------------------------------------------------------


@pytest.mark.parametrize("action_dim", [1, 2, 7])
@pytest.mark.parametrize(
    "cameras", [(), ("observation.image",), ("observation.images.a", "observation.images.b")]
)
def test_shapes_for_any_layout(tmp_path, action_dim, cameras):
    dataset = make_local_dataset(
        tmp_path / "ds",
        cameras=cameras,
        action_dim=action_dim,
        state_dim=3,
        env_state_dim=None if cameras else 5,
        image_size=(48, 48),  # layer4 keeps 2x2 cells, so BatchNorm trains on a batch of one
        episode_lengths=(6, 5),
    )
    policy = tiny_policy(dataset)
    for batch_size in (1, 3):
        batch = first_batch(policy, dataset, batch_size)
        policy.train()
        loss, _ = policy.forward(batch)
        per_sample, _ = policy.forward(batch, reduction="none")
        assert loss.shape == () and per_sample.shape == (batch_size,)
        observations = observation_only(batch)
        chunk = policy.predict_action_chunk(observations)
        assert chunk.shape == (batch_size, TINY_ACT["chunk_size"], action_dim)
        assert policy.last_value.shape == (batch_size,)
        assert policy.predict_value(observations).shape == (batch_size,)
        distribution = policy.predict_value_distribution(observations)
        assert distribution.shape == (batch_size, 101)
        torch.testing.assert_close(distribution.sum(-1), torch.ones(batch_size))
        policy.reset()
        assert policy.select_action(observations).shape == (batch_size, action_dim)


def test_environment_state_only_without_robot_state(tmp_path):
    dataset = make_local_dataset(tmp_path / "ds", cameras=(), state_dim=None, env_state_dim=6)
    policy = tiny_policy(dataset)
    batch = first_batch(policy, dataset)
    assert "observation.state" not in batch
    policy.train()
    loss, _ = policy.forward(batch)
    assert torch.isfinite(loss)
    assert policy.select_action(observation_only(batch)).shape == (3, 2)


# --- training semantics -------------------------------------------------------------------------


def test_forward_in_eval_mode_with_vae(image_dataset):
    policy = tiny_policy(image_dataset, use_vae=True)
    batch = first_batch(policy, image_dataset)
    policy.eval()
    loss, info = policy.forward(batch)
    assert torch.isfinite(loss) and info["kld_loss"] == 0.0
    policy.train()
    _, info = policy.forward(batch)
    assert info["kld_loss"] > 0.0


def test_reduction_none_matches_mean_for_unmasked_equal_counts(env_state_dataset):
    policy = tiny_policy(env_state_dataset, use_vae=False, dropout=0.0, proprio_dropout=0.0)
    batch = first_batch(policy, env_state_dataset, batch_size=4)
    batch["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    policy.eval()
    mean_loss, _ = policy.forward(batch)
    per_sample, _ = policy.forward(batch, reduction="none")
    torch.testing.assert_close(per_sample.mean(), mean_loss)
    with pytest.raises(ValueError, match="reduction"):
        policy.forward(batch, reduction="sum")


def test_l1_is_averaged_over_valid_elements_only(env_state_dataset):
    policy = tiny_policy(env_state_dataset, use_vae=False, reward_loss_weight=0.0)
    batch = first_batch(policy, env_state_dataset, batch_size=2)
    policy.eval()
    chunk = policy.predict_action_chunk(observation_only(batch))
    batch["action_is_pad"] = torch.tensor([[False, False, True, True], [False, True, True, True]])
    # Padded positions get a huge error that must not leak into the loss.
    batch[ACTION] = batch[ACTION].clone()
    batch[ACTION][batch["action_is_pad"]] = 1e6
    loss, info = policy.forward(batch)
    valid = ~batch["action_is_pad"]
    expected = (chunk - batch[ACTION]).abs()[valid].mean()
    torch.testing.assert_close(loss, expected)
    assert info["l1_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_action_mask_combines_plugin_keys(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    batch = first_batch(policy, env_state_dataset, batch_size=4)
    batch["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    batch["action_is_pad"][0, 3] = True
    batch["use_action_mask"] = torch.tensor([True, False, True, True])
    batch["episode_outcome"] = torch.tensor([True, True, False, False])
    batch["episode_outcome_mask"] = torch.tensor([True, True, True, False])  # sample 3: unlabelled
    batch["control_mode_autonomous"] = torch.tensor([False, False, False, True])
    mask = policy.action_mask(batch)
    assert mask.tolist() == [
        [True, True, True, False],  # padding
        [False] * 4,  # use_action_mask false
        [False] * 4,  # known failure
        [False] * 4,  # unlabelled outcome is not masked, but the policy's own rollout is
    ]
    del batch["episode_outcome_mask"]  # without a mask every outcome is taken as labelled
    batch["control_mode_autonomous"] = torch.zeros(4, dtype=torch.bool)
    assert policy.action_mask(batch)[3].tolist() == [False] * 4


@pytest.mark.parametrize(
    "intervention",
    [torch.tensor([True, False, True, False]), torch.tensor([[1.0], [0.0], [1.0], [0.0]])],
    ids=["bool [B]", "float [B, 1]"],
)
def test_intervention_false_masks_actions_like_autonomous_control(env_state_dataset, intervention):
    policy = tiny_policy(env_state_dataset)
    batch = first_batch(policy, env_state_dataset, batch_size=4)
    batch["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    batch["intervention"] = intervention
    assert policy.action_mask(batch).tolist() == [[True] * 4, [False] * 4, [True] * 4, [False] * 4]
    batch["control_mode_autonomous"] = torch.tensor([False, True, False, True])  # agrees
    assert policy.action_mask(batch)[:, 0].tolist() == [True, False, True, False]
    batch["control_mode_autonomous"] = torch.tensor([True, True, False, True])  # sample 0 disagrees
    with pytest.raises(ValueError, match=r"sample 0 is marked both human-controlled and autonomous"):
        policy.action_mask(batch)
    del batch["control_mode_autonomous"]
    # A filled `intervention` (a mix's frames without the column) says nothing: not masked.
    batch["intervention_is_pad"] = torch.tensor([False, True, False, False])
    assert policy.action_mask(batch)[:, 0].tolist() == [True, True, True, False]
    del batch["intervention_is_pad"]
    batch["intervention"] = torch.tensor([0.5, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"batch\['intervention'\] must hold booleans or 0/1, got 0.5"):
        policy.action_mask(batch)


def test_rollout_dataset_intervention_reaches_the_action_mask_through_the_processor(tmp_path):
    """A dataset as lerobot-rollout's DAgger strategy records it: RewACT's own processor (which
    LeRobot 0.6's lerobot-train calls) keeps `intervention`, and only the corrector's actions train."""
    dataset = make_local_dataset(
        tmp_path / "rollout",
        cameras=(),
        env_state_dim=3,
        episode_lengths=(8, 6),
        intervention=lambda episode, frame: frame % 2 == 0,
    )
    policy = tiny_policy(dataset)
    batch = first_batch(policy, dataset, batch_size=8)
    human = batch["intervention"].tolist()
    assert True in human and False in human
    batch["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    assert policy.action_mask(batch).tolist() == [[flag] * 4 for flag in human]
    policy.train()
    loss, info = policy.forward(batch)
    assert torch.isfinite(loss) and info["l1_loss"] > 0


def test_value_loss_uses_every_frame_even_when_actions_are_masked(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    batch = first_batch(policy, env_state_dataset, batch_size=4)
    batch["use_action_mask"] = torch.zeros(4, dtype=torch.bool)
    policy.train()
    loss, info = policy.forward(batch)
    assert info["l1_loss"] == 0.0 and info["value_loss"] > 0
    loss.backward()
    assert policy.model.value_head[-1].weight.grad.abs().sum() > 0


def test_progress_targets_from_dataset_meta(env_state_dataset):
    """Under stock lerobot-train the batch has `index` but no frame_index; targets come from meta."""
    policy = tiny_policy(env_state_dataset, reward_source="progress")
    meta = env_state_dataset.meta
    start = int(meta.episodes["dataset_from_index"][1])
    length = int(meta.episodes["length"][1])
    batch = {"index": torch.tensor([start, start + length // 2, start + length - 1])}
    targets = policy.value_targets(batch)
    p = (length // 2) / (length - 1)
    assert targets.tolist() == pytest.approx([0.0, (p - 0.05) / 0.9, 1.0], abs=1e-6)


def test_batch_reward_takes_precedence_in_auto(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    batch = {"index": torch.tensor([0, 1]), "reward": torch.tensor([0.25, 0.75])}
    assert policy.value_targets(batch).tolist() == [0.25, 0.75]
    assert policy.value_targets({"index": torch.tensor([0])}).tolist() == [0.0]


def test_keypoint_sidecar_targets(tmp_path):
    dataset = make_local_dataset(tmp_path / "ds", cameras=(), env_state_dim=3, episode_lengths=(11, 11))
    sidecar = tmp_path / "ds" / KEYPOINTS_RELATIVE_PATH
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text(
        json.dumps({"0": {"fps": 10, "keypoints": [{"frame_index": 5, "timestamp": 0.5, "reward": 0.8}]}})
    )
    for source in ("auto", "keypoints"):
        policy = tiny_policy(dataset, reward_source=source)
        assert policy.target_table.source == "keypoints"
        targets = policy.value_targets({"index": torch.arange(22)})
        assert targets[5].item() == pytest.approx(0.8) and targets[10].item() == pytest.approx(0.8)
        # Episode 1 has no keypoints: linear progress.
        assert targets[11].item() == 0.0 and targets[21].item() == 1.0
    assert tiny_policy(dataset, reward_source="progress").value_targets({"index": torch.tensor([5])}) == 0.5


def test_keypoints_source_without_sidecar_raises(env_state_dataset):
    with pytest.raises(FileNotFoundError, match="reward_keypoints.json"):
        tiny_policy(env_state_dataset, reward_source="keypoints")


# --- proprio dropout and backbone normalisation ------------------------------------------------


def test_proprio_dropout_replaces_state_token_only_in_training(env_state_dataset):
    policy = tiny_policy(env_state_dataset, proprio_dropout=0.5)
    projection = policy.model.encoder_robot_state_input_proj
    state = torch.randn(2000, 3)
    projection.train()
    tokens = projection(state)
    missing = (tokens == projection.missing_state).all(-1)
    assert 0.4 < missing.float().mean() < 0.6
    projection.eval()
    torch.testing.assert_close(projection(state), projection.projection(state))


def test_backbone_norm_resolution_and_layers(image_dataset):
    pretrained = "ResNet18_Weights.IMAGENET1K_V1"
    assert RewACTConfig(pretrained_backbone_weights=pretrained).resolved_backbone_norm == "frozen_bn"
    assert RewACTConfig(pretrained_backbone_weights=None).resolved_backbone_norm == "frozen_bn"
    auto = {"backbone_norm": "auto"}
    assert RewACTConfig(pretrained_backbone_weights=pretrained, **auto).resolved_backbone_norm == "frozen_bn"
    assert RewACTConfig(pretrained_backbone_weights=None, **auto).resolved_backbone_norm == "batch_norm"
    expected = {
        "auto": torch.nn.BatchNorm2d,
        "batch_norm": torch.nn.BatchNorm2d,
        "group_norm": torch.nn.GroupNorm,
        "frozen_bn": FrozenBatchNorm2d,
    }
    for norm, layer_type in expected.items():
        backbone = tiny_policy(image_dataset, backbone_norm=norm).model.backbone
        layers = [
            m
            for m in backbone.modules()
            if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d, torch.nn.GroupNorm))
        ]
        assert layers and all(isinstance(m, layer_type) for m in layers), norm
        trainable = sum(p.numel() for m in layers for p in m.parameters() if p.requires_grad)
        assert (trainable > 0) == (norm != "frozen_bn")


@pytest.mark.parametrize("value_from", ["decoder_first", "encoder_mean"])
def test_value_source_tokens(env_state_dataset, value_from):
    policy = tiny_policy(env_state_dataset, value_from=value_from)
    batch = first_batch(policy, env_state_dataset)
    policy.train()
    loss, _ = policy.forward(batch)
    loss.backward()
    assert policy.model.value_head[1].weight.grad is not None


# --- inference API ------------------------------------------------------------------------------


def test_predict_value_leaves_the_action_queue_alone(env_state_dataset):
    policy = tiny_policy(env_state_dataset, n_action_steps=3)
    observations = observation_only(first_batch(policy, env_state_dataset, batch_size=2))
    policy.reset()
    assert policy.last_value is None
    first = policy.select_action(observations)
    assert len(policy._action_queue) == 2 and policy.last_value.shape == (2,)
    values = policy.predict_value(observations)
    assert len(policy._action_queue) == 2
    torch.testing.assert_close(values, policy.last_value)
    assert ((values >= 0) & (values <= 1)).all()
    second = policy.select_action(observations)
    assert not torch.equal(first, second) or first.shape == second.shape
    policy.reset()
    assert policy.last_value is None and len(policy._action_queue) == 0


def test_temporal_ensembling(env_state_dataset):
    policy = tiny_policy(env_state_dataset, n_action_steps=1, temporal_ensemble_coeff=0.01)
    observations = observation_only(first_batch(policy, env_state_dataset, batch_size=2))
    policy.reset()
    actions = [policy.select_action(observations) for _ in range(5)]
    assert all(a.shape == (2, 3) for a in actions)
    assert policy.last_value.shape == (2,)


# --- bad input ----------------------------------------------------------------------------------


def test_dataset_reward_source_without_reward_raises(env_state_dataset):
    policy = tiny_policy(env_state_dataset, reward_source="dataset")
    batch = first_batch(policy, env_state_dataset)
    with pytest.raises(KeyError, match="reward_source='dataset'.*'reward'"):
        policy.forward(batch)


def test_no_targets_without_dataset_meta_raises(env_state_dataset):
    config = RewACTConfig(**policy_features(env_state_dataset), **TINY_ACT)
    policy = RewACTPolicy(config)
    batch = first_batch(policy, env_state_dataset)
    with pytest.raises(KeyError, match="dataset_meta"):
        policy.forward(batch)


def test_rewards_outside_the_value_range_raise(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    batch = first_batch(policy, env_state_dataset, batch_size=2)
    batch["reward"] = torch.tensor([0.5, 1.7])
    with pytest.raises(ValueError, match=r"batch\['reward'\].*outside the value range.*1.7"):
        policy.forward(batch)


def test_missing_features_raise(tmp_path):
    features = {"observation.state": PolicyFeature(FeatureType.STATE, (2,))}
    config = RewACTConfig(
        input_features=features, output_features={ACTION: PolicyFeature(FeatureType.ACTION, (2,))}, **TINY_ACT
    )
    with pytest.raises(ValueError, match="image or the environment state"):
        RewACTPolicy(config)


def test_missing_batch_key_names_it(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    batch = observation_only(first_batch(policy, env_state_dataset))
    del batch["observation.environment_state"]
    with pytest.raises(KeyError, match="observation.environment_state"):
        policy.predict_value(batch)


@pytest.mark.parametrize(
    "field, value",
    [
        ("value_target", "three_hot"),
        ("reward_source", "oracle"),
        ("value_from", "cls"),
        ("backbone_norm", "layer_norm"),
        ("num_value_bins", 1),
        ("value_max", -1.0),
        ("proprio_dropout", 1.0),
    ],
)
def test_bad_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RewACTConfig(**{field: value})


def test_unknown_episode_index_raises(env_state_dataset):
    policy = tiny_policy(env_state_dataset)
    with pytest.raises(KeyError, match="outside the dataset"):
        policy.value_targets({"index": torch.tensor([env_state_dataset.num_frames + 5])})


# --- processor ----------------------------------------------------------------------------------


def test_processor_carries_reward_and_mask_keys(env_state_dataset):
    policy = tiny_policy(env_state_dataset, reward_source="dataset")
    preprocessor, postprocessor = make_rewact_pre_post_processors(policy.config, env_state_dataset.meta.stats)
    names = [step.__class__.__name__ for step in preprocessor.steps]
    assert "NormalizerProcessorStep" in names
    chunked = chunked_dataset(env_state_dataset, policy.config.chunk_size)
    raw = next(iter(torch.utils.data.DataLoader(chunked, batch_size=2)))
    raw["reward"] = torch.tensor([0.1, 0.9])
    raw["use_action_mask"] = torch.tensor([True, False])
    batch = preprocessor(raw)
    assert batch["reward"].tolist() == pytest.approx([0.1, 0.9])
    assert batch["use_action_mask"].tolist() == [True, False]
    policy.train()
    _, info = policy.forward(batch)
    assert info["value_loss"] > 0
    action = postprocessor(policy.select_action(observation_only(batch)))
    assert action.shape == (2, 3)
