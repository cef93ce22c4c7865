"""ACTvantage policy: configuration, indicator semantics, losses, guidance, advantage files, discovery."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.act.processor_act import make_act_pre_post_processors
from safetensors import safe_open

from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy, make_actvantage_pre_post_processors
from lerobot_policy_actvantage.advantage import NEGATIVE, NULL, POSITIVE, advantage_to_positive
from rewact_tools.lerobot_compat import dataset_to_policy_features

from local_datasets import make_local_dataset
from subprocess_helpers import run_in_process

REPO_ROOT = Path(__file__).resolve().parents[1]
CHUNK = 4
IMAGE = "observation.image"


def tiny_config(**overrides) -> ACTvantageConfig:
    """One 32x32 camera, 2-D state and action, a transformer small enough for CPU tests."""
    settings = {
        "dim_model": 32,
        "dim_feedforward": 64,
        "n_heads": 2,
        "n_encoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
        "chunk_size": CHUNK,
        "n_action_steps": CHUNK,
        "pretrained_backbone_weights": None,
        "device": "cpu",
        "input_features": {
            IMAGE: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,)),
        },
        "output_features": {"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
    }
    settings.update(overrides)
    return ACTvantageConfig(**settings)


def make_batch(batch_size: int, advantage=None, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batch = {
        IMAGE: torch.rand(batch_size, 3, 32, 32, generator=generator),
        "observation.state": torch.randn(batch_size, 2, generator=generator),
        "action": torch.randn(batch_size, CHUNK, 2, generator=generator),
        "action_is_pad": torch.zeros(batch_size, CHUNK, dtype=torch.bool),
    }
    if advantage is not None:
        batch["advantage"] = torch.as_tensor(advantage)
    return batch


class IndicatorRecorder:
    """Records which rows of the indicator embedding of `stack` ("encoder" or "decoder") each model
    call used."""

    def __init__(self, policy: ACTvantagePolicy, stack: str = "encoder"):
        self.calls: list[list[int]] = []
        embed = getattr(policy.model, stack).indicator_embed
        self._handle = embed.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.calls.append(inputs[0].tolist())


def write_advantages(path: Path, index, advantage, **columns) -> Path:
    pd.DataFrame({"index": index, "advantage": advantage, **columns}).to_parquet(path)
    return path


def model_inputs(batch: dict) -> dict:
    return {**batch, "observation.images": [batch[IMAGE]]}


# --- configuration ------------------------------------------------------------------------------


def test_config_defaults_and_registration():
    config = tiny_config()
    assert PreTrainedConfig.get_choice_class("actvantage") is ACTvantageConfig
    assert config.type == "actvantage"
    assert (config.advantage_key, config.advantage_threshold) == ("advantage", 0.0)
    assert (config.advantage_dropout, config.guidance_scale) == (0.3, 1.0)
    assert config.advantage_file is None and config.pretrained_revision is None
    assert config.advantage_injection == "encoder_token" and config.negative_weight == 0.25
    assert config.guidance_reference == "null"
    # `--policy.guidance_reference=null` reaches the config as None or "None" (draccus reads `null` so).
    assert tiny_config(guidance_reference=None).guidance_reference == "null"
    assert tiny_config(guidance_reference="None").guidance_reference == "null"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"advantage_dropout": 1.0}, "advantage_dropout"),
        ({"advantage_dropout": -0.1}, "advantage_dropout"),
        ({"advantage_threshold": float("nan")}, "advantage_threshold"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"guidance_scale": 2.0, "advantage_dropout": 0.0}, "null indicator"),
        ({"guidance_reference": "zero"}, "guidance_reference must be one of 'null', 'negative'; got 'zero'"),
        ({"advantage_key": ""}, "advantage_key"),
        ({"advantage_file": " "}, "advantage_file"),
        ({"negative_weight": 0.0}, "negative_weight must be in \\(0, 1\\], got 0.0"),
        ({"negative_weight": 1.5}, "negative_weight"),
        (
            {"advantage_injection": "decoder"},
            "advantage_injection must be one of 'encoder_token', 'decoder_queries', "
            "'encoder_and_decoder'; got 'decoder'",
        ),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


# --- discovery and LeRobot's generic policy tests -----------------------------------------------


def test_discovery_through_lerobot_plugins():
    from lerobot.policies.factory import get_policy_class
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    assert get_policy_class("actvantage") is ACTvantagePolicy


def test_get_policy_and_config_classes():
    from lerobot.policies.factory import get_policy_class

    policy_cls = get_policy_class("actvantage")
    config_cls = PreTrainedConfig.get_choice_class("actvantage")
    assert policy_cls.name == "actvantage"
    assert issubclass(config_cls, inspect.signature(policy_cls.__init__).parameters["config"].annotation)


def test_policy_defaults(image_dataset):
    """Default ACT dimensions, features from a real dataset (no hub weights)."""
    config = ACTvantageConfig(pretrained_backbone_weights=None, device="cpu")
    features = dataset_to_policy_features(image_dataset.meta.features)
    config.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    config.input_features = {k: f for k, f in features.items() if k not in config.output_features}
    ACTvantagePolicy(config)


def test_save_and_load_pretrained_is_bit_exact(tmp_path):
    config = tiny_config()
    policy = ACTvantagePolicy(config)
    policy.save_pretrained(tmp_path / "saved")
    loaded = ACTvantagePolicy.from_pretrained(tmp_path / "saved", config=config)
    torch.testing.assert_close(list(policy.parameters()), list(loaded.parameters()), rtol=0, atol=0)
    reloaded_config = PreTrainedConfig.from_pretrained(tmp_path / "saved")
    assert isinstance(reloaded_config, ACTvantageConfig)
    assert reloaded_config.advantage_dropout == config.advantage_dropout


# --- labels -------------------------------------------------------------------------------------


def test_advantage_to_positive_accepts_bool_signs_and_continuous():
    assert advantage_to_positive(torch.tensor([True, False]), 0.0, "a", 2).tolist() == [True, False]
    assert advantage_to_positive(torch.tensor([[-1], [1]]), 0.0, "a", 2).tolist() == [False, True]
    continuous = torch.tensor([-0.5, 0.0, 0.2, 0.7])
    assert advantage_to_positive(continuous, 0.0, "a", 4).tolist() == [False, False, True, True]
    assert advantage_to_positive(continuous, 0.5, "a", 4).tolist() == [False, False, False, True]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (torch.tensor([0, 1]), "-1 or \\+1"),
        (torch.tensor([0.1, float("nan")]), "NaN"),
        (torch.ones(3), "shape"),
    ],
)
def test_advantage_to_positive_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        advantage_to_positive(values, 0.0, "advantage", 2)


def test_training_dropout_uses_null_row_never_negative():
    policy = ACTvantagePolicy(tiny_config(advantage_dropout=0.5)).train()
    recorder = IndicatorRecorder(policy)
    labels = torch.tensor([True, False] * 16)
    policy.forward(make_batch(32, advantage=labels))
    rows = torch.tensor(recorder.calls[0])
    kept = rows != NULL
    assert 0 < (~kept).sum() < 32  # some samples dropped, some kept
    assert torch.equal(rows[kept], labels[kept].long())  # kept samples carry their own label
    assert set(rows[labels].tolist()) <= {POSITIVE, NULL}  # a dropped positive never becomes negative
    assert NEGATIVE in rows[~labels].tolist()


def test_eval_forward_is_deterministic_and_uses_the_labels():
    policy = ACTvantagePolicy(tiny_config(advantage_dropout=0.5)).eval()
    recorder = IndicatorRecorder(policy)
    batch = make_batch(8, advantage=torch.tensor([0.3, -0.3] * 4))
    first_loss, first_info = policy.forward(batch)
    second_loss, _ = policy.forward(batch)
    assert recorder.calls == [[POSITIVE, NEGATIVE] * 4] * 2
    assert torch.equal(first_loss, second_loss)
    assert first_info["null_fraction"] == 0.0 and first_info["positive_fraction"] == 0.5


def test_null_and_negative_are_different_conditions():
    policy = ACTvantagePolicy(tiny_config()).eval()
    inputs = model_inputs(make_batch(2))
    with torch.no_grad():
        negative = policy.model(inputs, torch.full((2,), NEGATIVE))[0]
        null = policy.model(inputs, torch.full((2,), NULL))[0]
    assert not torch.allclose(negative, null)


def test_human_control_forces_positive_and_unlabelled_frames_are_not_forced():
    policy = ACTvantagePolicy(tiny_config()).eval()
    recorder = IndicatorRecorder(policy)
    batch = make_batch(4, advantage=torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    batch["control_mode_human"] = torch.tensor([True, False, True, False])
    policy.forward(batch)
    assert recorder.calls[0] == [POSITIVE, NEGATIVE, POSITIVE, POSITIVE]


@pytest.mark.parametrize(
    "intervention",
    [torch.tensor([True, False, True, False]), torch.tensor([[1.0], [0.0], [1.0], [0.0]])],
    ids=["bool [B]", "float [B, 1]"],
)
def test_intervention_counts_as_human_control_and_forces_positive(intervention):
    policy = ACTvantagePolicy(tiny_config()).eval()
    recorder = IndicatorRecorder(policy)
    batch = make_batch(4, advantage=torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    batch["intervention"] = intervention
    policy.forward(batch)
    # Policy-driven frames (intervention false) keep their computed advantage, positive or negative.
    assert recorder.calls[0] == [POSITIVE, NEGATIVE, POSITIVE, POSITIVE]
    batch["control_mode_human"] = torch.tensor([False, True, False, False])  # sample 1 disagrees
    with pytest.raises(ValueError, match=r"sample 1 is marked both human-controlled and autonomous"):
        policy.forward(batch)


def test_rollout_dataset_intervention_reaches_the_policy_through_the_processor(tmp_path):
    """On LeRobot 0.6 lerobot-train calls ACTvantage's own processor: it must keep `intervention`."""
    make_local_dataset(
        tmp_path / "rollout",
        repo_id="local/rollout",
        episode_lengths=(6, 5),
        intervention=lambda episode, frame: frame in (1, 2),
    )
    dataset = LeRobotDataset(
        "local/rollout",
        root=tmp_path / "rollout",
        delta_timestamps={"action": [i / 10 for i in range(CHUNK)]},
    )
    preprocessor, _ = make_actvantage_pre_post_processors(tiny_config(), dataset_stats=dataset.meta.stats)
    raw = next(iter(torch.utils.data.DataLoader(dataset, batch_size=11)))
    human = [frame in (1, 2) for frame in raw["frame_index"].tolist()]
    batch = preprocessor(raw)
    batch["advantage"] = -torch.ones(11)
    policy = ACTvantagePolicy(tiny_config()).eval()
    recorder = IndicatorRecorder(policy)
    policy.forward(batch)
    assert recorder.calls[0] == [POSITIVE if flag else NEGATIVE for flag in human] and any(human)


# --- losses -------------------------------------------------------------------------------------


def test_l1_is_averaged_over_valid_elements_only():
    policy = ACTvantagePolicy(tiny_config()).eval()
    batch = make_batch(3, advantage=torch.ones(3))
    batch["action_is_pad"][0, 2:] = True
    batch["use_action_mask"] = torch.tensor([True, False, True])
    predicted = policy.predict_action_chunk(batch)  # β = 1: the same positive condition as the loss
    valid = ~batch["action_is_pad"] & batch["use_action_mask"][:, None]
    expected = (predicted - batch["action"]).abs()[valid].mean()
    loss, info = policy.forward(batch)
    torch.testing.assert_close(loss, expected)
    assert info["l1_loss"] == pytest.approx(expected.item())
    # Targets at padded or masked positions do not matter.
    changed = dict(batch, action=batch["action"].clone())
    changed["action"][0, 2:] += 100.0
    changed["action"][1] += 100.0
    torch.testing.assert_close(policy.forward(changed)[0], loss)
    per_sample, _ = policy.forward(batch, reduction="none")
    assert per_sample.shape == (3,) and per_sample[1] == 0.0
    torch.testing.assert_close(per_sample[2], (predicted - batch["action"]).abs()[2].mean())


def test_negative_weight_scales_negative_frames_in_the_weighted_mean():
    batch = make_batch(4, advantage=torch.tensor([1.0, -1.0, 1.0, -1.0]))
    weight = torch.tensor([1.0, 0.25, 1.0, 0.25])
    uniform = ACTvantagePolicy(tiny_config(negative_weight=1.0)).eval()
    weighted = ACTvantagePolicy(tiny_config(negative_weight=0.25)).eval()
    weighted.load_state_dict(uniform.state_dict())
    per_sample, _ = uniform.forward(batch, reduction="none")
    loss, info = weighted.forward(batch)
    # Every sample has the same number of valid elements, so the weighted mean is over samples.
    expected = (per_sample * weight).sum() / weight.sum()
    torch.testing.assert_close(loss, expected)
    assert info["l1_loss"] == pytest.approx(expected.item())
    assert loss.item() != pytest.approx(per_sample.mean().item())
    torch.testing.assert_close(weighted.forward(batch, reduction="none")[0], per_sample * weight)
    # A positive-only batch is unaffected by the weight.
    positives = make_batch(2, advantage=torch.ones(2))
    torch.testing.assert_close(weighted.forward(positives)[0], uniform.forward(positives)[0])


def test_failed_episodes_are_not_masked():
    policy = ACTvantagePolicy(tiny_config()).eval()
    batch = make_batch(2, advantage=torch.tensor([1.0, -1.0]))
    with_outcome = dict(batch, episode_outcome=torch.tensor([False, False]))
    with_outcome["episode_outcome_mask"] = torch.tensor([True, True])
    torch.testing.assert_close(policy.forward(with_outcome)[0], policy.forward(batch)[0])


def test_forward_in_train_and_eval_mode_with_vae():
    policy = ACTvantagePolicy(tiny_config(use_vae=True))
    batch = make_batch(4, advantage=torch.tensor([1.0, -1.0, 1.0, -1.0]))
    train_loss, train_info = policy.train().forward(batch)
    eval_loss, eval_info = policy.eval().forward(batch)
    assert set(train_info) >= {"l1_loss", "kld_loss", "positive_fraction", "null_fraction"}
    assert all(type(value) is float for value in (*train_info.values(), *eval_info.values()))
    assert train_info["kld_loss"] > 0 and eval_info["kld_loss"] == 0.0
    assert eval_loss.item() == pytest.approx(eval_info["l1_loss"])
    train_loss.backward()
    assert policy.model.encoder.indicator_embed.weight.grad is not None
    with pytest.raises(ValueError, match="reduction"):
        policy.forward(batch, reduction="sum")


def test_environment_state_only_policy_needs_no_state_key():
    config = tiny_config(
        input_features={"observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(5,))}
    )
    policy = ACTvantagePolicy(config)
    batch = {
        "observation.environment_state": torch.randn(3, 5),
        "action": torch.randn(3, CHUNK, 2),
        "action_is_pad": torch.zeros(3, CHUNK, dtype=torch.bool),
        "advantage": torch.tensor([1, -1, 1]),
    }
    loss, _ = policy.train().forward(batch)
    assert torch.isfinite(loss)
    assert policy.select_action(
        {"observation.environment_state": torch.randn(3, 5)}, guidance_scale=2.0
    ).shape == (
        3,
        2,
    )


# --- inference and guidance ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 4])
def test_guidance_in_one_pass_equals_two_separate_passes(batch_size):
    policy = ACTvantagePolicy(tiny_config()).eval()
    batch = make_batch(batch_size)
    recorder = IndicatorRecorder(policy)
    with torch.no_grad():
        positive = policy.model(model_inputs(batch), torch.full((batch_size,), POSITIVE))[0]
        null = policy.model(model_inputs(batch), torch.full((batch_size,), NULL))[0]
    guided = policy.predict_action_chunk(batch, guidance_scale=2.0)
    assert recorder.calls[-1] == [POSITIVE] * batch_size + [NULL] * batch_size  # one doubled pass
    assert len(recorder.calls) == 3
    torch.testing.assert_close(guided, null + 2.0 * (positive - null), rtol=0, atol=1e-5)
    torch.testing.assert_close(policy.predict_action_chunk(batch), positive, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        policy.predict_action_chunk(batch, guidance_scale=0.0), null, rtol=0, atol=1e-5
    )
    assert not torch.allclose(guided, positive)


def test_guidance_against_the_negative_condition_is_one_pass():
    """guidance_reference="negative": a_neg + β·(a_pos − a_neg) from one doubled pass; it needs no
    null token, so it also works without advantage_dropout."""
    for dropout in (0.3, 0.0):
        policy = ACTvantagePolicy(
            tiny_config(guidance_reference="negative", advantage_dropout=dropout)
        ).eval()
        batch = make_batch(3)
        recorder = IndicatorRecorder(policy)
        with torch.no_grad():
            positive = policy.model(model_inputs(batch), torch.full((3,), POSITIVE))[0]
            negative = policy.model(model_inputs(batch), torch.full((3,), NEGATIVE))[0]
        guided = policy.predict_action_chunk(batch, guidance_scale=2.0)
        assert recorder.calls[-1] == [POSITIVE] * 3 + [NEGATIVE] * 3 and len(recorder.calls) == 3
        torch.testing.assert_close(guided, negative + 2.0 * (positive - negative), rtol=0, atol=1e-5)
        torch.testing.assert_close(policy.predict_action_chunk(batch), positive, rtol=0, atol=1e-5)
        assert not torch.allclose(guided, positive)


def test_conditioned_chunks_in_one_pass_equal_separate_calls():
    """Every condition's chunk from one stacked pass, as each would come alone; unknown ones raise."""
    policy = ACTvantagePolicy(tiny_config()).eval()
    batch = make_batch(2)
    recorder = IndicatorRecorder(policy)
    chunks = policy.predict_conditioned_chunks(batch, ("positive", "negative", "null"))
    assert recorder.calls == [[POSITIVE] * 2 + [NEGATIVE] * 2 + [NULL] * 2]
    with torch.no_grad():
        for name, row in (("positive", POSITIVE), ("negative", NEGATIVE), ("null", NULL)):
            alone = policy.model(model_inputs(batch), torch.full((2,), row))[0]
            torch.testing.assert_close(chunks[name], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(chunks["positive"], policy.predict_action_chunk(batch), rtol=0, atol=1e-5)
    assert not torch.allclose(chunks["positive"], chunks["negative"])
    for conditions in (("best",), ()):
        with pytest.raises(ValueError, match="conditions must be some of"):
            policy.predict_conditioned_chunks(batch, conditions)


def test_configured_guidance_scale_is_the_default_and_can_be_overridden():
    batch = make_batch(2)
    policy = ACTvantagePolicy(tiny_config(guidance_scale=2.0)).eval()
    torch.testing.assert_close(
        policy.predict_action_chunk(batch), policy.predict_action_chunk(batch, guidance_scale=2.0)
    )
    assert not torch.allclose(
        policy.predict_action_chunk(batch), policy.predict_action_chunk(batch, guidance_scale=1.0)
    )
    with pytest.raises(ValueError, match="guidance_scale"):
        policy.predict_action_chunk(batch, guidance_scale=-2.0)


def test_select_action_queues_a_chunk_and_accepts_guidance_keyword():
    policy = ACTvantagePolicy(tiny_config())
    batch = make_batch(2)
    recorder = IndicatorRecorder(policy)
    chunk = policy.predict_action_chunk(batch, guidance_scale=2.0)
    policy.reset()
    actions = [policy.select_action(batch, guidance_scale=2.0) for _ in range(CHUNK + 1)]
    assert all(action.shape == (2, 2) for action in actions)
    assert len(recorder.calls) == 3  # the explicit chunk, then one model call per CHUNK actions
    torch.testing.assert_close(torch.stack(actions[:CHUNK], dim=1), chunk)
    policy.reset()
    assert len(policy._action_queue) == 0


def test_select_action_with_temporal_ensembling():
    policy = ACTvantagePolicy(tiny_config(n_action_steps=1, temporal_ensemble_coeff=0.01))
    batch = make_batch(3)
    for _ in range(3):
        assert policy.select_action(batch, guidance_scale=1.5).shape == (3, 2)


def test_indicator_is_never_left_set_after_a_failing_call():
    policy = ACTvantagePolicy(tiny_config()).eval()
    batch = make_batch(2)
    with pytest.raises(ValueError, match="Cannot tile"):
        policy.model(model_inputs(batch), torch.full((3,), POSITIVE))
    with pytest.raises(RuntimeError, match="without an indicator"):
        policy.model.encoder(torch.zeros(5, 2, 32))


# --- where the indicator is injected ------------------------------------------------------------

INJECTIONS = ("encoder_token", "decoder_queries", "encoder_and_decoder")
EMBEDDED_STACKS = {
    "encoder_token": ("encoder",),
    "decoder_queries": ("decoder",),
    "encoder_and_decoder": ("encoder", "decoder"),
}


def indicator_embeddings(policy: ACTvantagePolicy) -> dict[str, torch.nn.Embedding]:
    """The indicator embeddings the policy has, by stack."""
    stacks = {"encoder": policy.model.encoder, "decoder": policy.model.decoder}
    return {
        name: stack.indicator_embed for name, stack in stacks.items() if stack.indicator_embed is not None
    }


def test_default_injection_keeps_the_original_state_dict_keys():
    """The default checkpoint layout is ACT's own, stacks wrapped as `inner`, plus one encoder embedding."""
    from lerobot_policy_rewact.vision_encoder import ACTWithVisionEncoder

    config = tiny_config()
    wrapped = ("encoder.", "decoder.")
    expected = {
        "model." + (key.replace(".", ".inner.", 1) if key.startswith(wrapped) else key)
        for key in ACTWithVisionEncoder(config).state_dict()
    } | {"model.encoder.indicator_embed.weight"}
    keys = set(ACTvantagePolicy(config).state_dict())
    assert keys == expected
    assert "model.decoder.indicator_embed.weight" not in keys


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_trains_and_its_embeddings_get_gradients(injection):
    policy = ACTvantagePolicy(tiny_config(advantage_injection=injection)).train()
    embeddings = indicator_embeddings(policy)
    assert tuple(embeddings) == EMBEDDED_STACKS[injection]  # only the configured ones exist
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    for step in range(3):
        batch = make_batch(8, advantage=torch.tensor([1.0, -1.0] * 4), seed=step)
        loss, _ = policy.forward(batch)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        for embed in embeddings.values():
            assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0
        optimizer.step()


@pytest.mark.parametrize("injection", INJECTIONS)
def test_each_injected_embedding_changes_the_prediction(injection):
    """With the positive row equal to the null row, (+) and null predict the same; perturbing the
    positive row of any one embedding makes them differ."""
    policy = ACTvantagePolicy(tiny_config(advantage_injection=injection)).eval()
    inputs = model_inputs(make_batch(2))
    embeddings = indicator_embeddings(policy)

    def positive_and_null() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            actions = policy.model(inputs, torch.tensor([POSITIVE] * 2 + [NULL] * 2))[0]
        return actions[:2], actions[2:]

    with torch.no_grad():
        for embed in embeddings.values():
            embed.weight[POSITIVE] = embed.weight[NULL]
    torch.testing.assert_close(*positive_and_null(), rtol=0, atol=1e-6)
    for embed in embeddings.values():
        with torch.no_grad():
            embed.weight[POSITIVE] = embed.weight[NULL] + 0.5
        positive, null = positive_and_null()
        assert (positive - null).abs().max() > 1e-3
        with torch.no_grad():
            embed.weight[POSITIVE] = embed.weight[NULL]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_guidance_is_one_pass_and_combines_separate_positive_and_null_calls(injection):
    policy = ACTvantagePolicy(tiny_config(advantage_injection=injection)).eval()
    batch = make_batch(3)
    with torch.no_grad():
        null = policy.model(model_inputs(batch), torch.full((3,), NULL))[0]
    positive = policy.predict_action_chunk(batch, guidance_scale=1.0)
    recorders = [IndicatorRecorder(policy, stack) for stack in EMBEDDED_STACKS[injection]]
    guided = policy.predict_action_chunk(batch, guidance_scale=2.5)
    for recorder in recorders:  # one doubled pass reaches every injected embedding
        assert recorder.calls == [[POSITIVE] * 3 + [NULL] * 3]
    torch.testing.assert_close(guided, null + 2.5 * (positive - null), rtol=0, atol=1e-5)
    assert not torch.allclose(guided, positive)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_round_trips_through_save_and_load(tmp_path, injection):
    policy = ACTvantagePolicy(tiny_config(advantage_injection=injection)).eval()
    policy.save_pretrained(tmp_path / "saved")
    with safe_open(tmp_path / "saved" / "model.safetensors", "pt") as saved:
        embed_keys = sorted(key for key in saved.keys() if "indicator_embed" in key)
    assert embed_keys == sorted(
        f"model.{stack}.indicator_embed.weight" for stack in EMBEDDED_STACKS[injection]
    )
    assert PreTrainedConfig.from_pretrained(tmp_path / "saved").advantage_injection == injection
    loaded = ACTvantagePolicy.from_pretrained(tmp_path / "saved").eval()
    assert loaded.config.advantage_injection == injection
    batch = make_batch(2)
    for beta in (1.0, 2.0):
        torch.testing.assert_close(
            loaded.predict_action_chunk(batch, guidance_scale=beta),
            policy.predict_action_chunk(batch, guidance_scale=beta),
            rtol=0,
            atol=0,
        )


def test_decoder_injection_needs_an_indicator_for_each_query_batch():
    policy = ACTvantagePolicy(tiny_config(advantage_injection="decoder_queries")).eval()
    queries, encoder_out = torch.zeros(CHUNK, 2, 32), torch.zeros(5, 2, 32)
    with pytest.raises(RuntimeError, match="decoder was called without an indicator"):
        policy.model.decoder(queries, encoder_out)
    with pytest.raises(ValueError, match="decoder got 1 indicators for 2 samples"):
        with policy.model.decoder.conditioned(torch.tensor([POSITIVE])):
            policy.model.decoder(queries, encoder_out)
    with pytest.raises(ValueError, match="Cannot tile"):
        policy.model(model_inputs(make_batch(2)), torch.full((3,), POSITIVE))
    assert policy.model.decoder._indicator is None and policy.model.encoder._indicator is None


# --- advantage sources --------------------------------------------------------------------------


def test_missing_advantages_error_names_both_ways():
    policy = ACTvantagePolicy(tiny_config())
    with pytest.raises(KeyError, match="advantage_file") as error:
        policy.forward(make_batch(2))
    assert "'advantage'" in str(error.value)


def test_advantage_file_lookup_by_dataset_index(tmp_path):
    path = write_advantages(tmp_path / "adv.parquet", [0, 1, 2, 3], [0.5, -0.5, 0.1, -2.0])
    policy = ACTvantagePolicy(tiny_config(advantage_file=str(path))).eval()
    recorder = IndicatorRecorder(policy)
    batch = dict(make_batch(3), index=torch.tensor([3, 0, 2]))
    _, info = policy.forward(batch)
    assert recorder.calls[0] == [NEGATIVE, POSITIVE, POSITIVE]
    assert info["positive_fraction"] == pytest.approx(2 / 3)
    # A batch key wins over the file.
    policy.forward(dict(batch, advantage=torch.tensor([True, False, False])))
    assert recorder.calls[1] == [POSITIVE, NEGATIVE, NEGATIVE]
    with pytest.raises(KeyError, match=f"index 7 has no advantage in {path}"):
        policy.forward(dict(batch, index=torch.tensor([0, 7, 1])))


def test_positive_column_decides_over_the_threshold(tmp_path):
    path = write_advantages(
        tmp_path / "adv.parquet", [0, 1, 2], [0.5, 0.5, -0.5], positive=[False, True, True]
    )
    policy = ACTvantagePolicy(tiny_config(advantage_file=str(path))).eval()
    recorder = IndicatorRecorder(policy)
    policy.forward(dict(make_batch(3), index=torch.tensor([0, 1, 2])))
    assert recorder.calls[0] == [NEGATIVE, POSITIVE, POSITIVE]


def test_advantage_file_of_another_dataset_is_detected(tmp_path):
    path = write_advantages(tmp_path / "adv.parquet", [0, 1], [1.0, 1.0], episode_index=[0, 0])
    policy = ACTvantagePolicy(tiny_config(advantage_file=str(path)))
    batch = dict(make_batch(2), index=torch.tensor([0, 1]), episode_index=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="another dataset"):
        policy.forward(batch)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"index": [0, 1], "value": [0.0, 1.0]}, "lacks column"),
        ({"index": [0, 0], "advantage": [0.0, 1.0]}, "appears twice"),
        ({"index": [0, 1], "advantage": [0.0, np.inf]}, "not finite"),
        ({"index": [0, 1], "advantage": [0.0, np.nan]}, "empty"),
        ({"index": [-1, 1], "advantage": [0.0, 1.0]}, "negative dataset index"),
        ({"index": [0.5, 1.0], "advantage": [0.0, 1.0]}, "integers"),
    ],
)
def test_malformed_advantage_file_is_rejected(tmp_path, frame, message):
    path = tmp_path / "bad.parquet"
    pd.DataFrame(frame).to_parquet(path)
    with pytest.raises(ValueError, match=message) as error:
        ACTvantagePolicy(tiny_config(advantage_file=str(path)))
    assert str(path) in str(error.value)


def test_advantage_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "adv.parquet"
    path.write_text("index,advantage\n0,1.0\n")
    with pytest.raises(ValueError, match="not a readable parquet"):
        ACTvantagePolicy(tiny_config(advantage_file=str(path)))


def test_missing_advantage_file_fails_for_training_but_not_for_evaluation(tmp_path, image_dataset):
    missing = str(tmp_path / "nowhere.parquet")
    with pytest.raises(FileNotFoundError, match="nowhere.parquet"):
        ACTvantagePolicy(tiny_config(advantage_file=missing), dataset_meta=image_dataset.meta)
    policy = ACTvantagePolicy(tiny_config(advantage_file=missing))
    assert policy.select_action(make_batch(1)).shape == (1, 2)
    with pytest.raises(FileNotFoundError, match="nowhere.parquet"):
        policy.forward(dict(make_batch(1), index=torch.tensor([0])))


def test_lookup_buffers_are_not_saved_and_checkpoints_load_without_the_file(tmp_path):
    path = write_advantages(tmp_path / "adv.parquet", list(range(10)), np.linspace(-1, 1, 10))
    policy = ACTvantagePolicy(tiny_config(advantage_file=str(path)))
    assert policy.advantage_positive_lookup is not None
    # Per-frame lookups are kept off the module's buffers, which DDP sends at every step.
    lookups = {id(policy.advantage_positive_lookup), id(policy.advantage_episode_lookup)}
    assert not lookups & {id(buffer) for buffer in policy.buffers()}
    policy.save_pretrained(tmp_path / "saved")
    with safe_open(tmp_path / "saved" / "model.safetensors", "pt") as saved:
        assert not [key for key in saved.keys() if "lookup" in key]
    path.unlink()
    loaded = ACTvantagePolicy.from_pretrained(tmp_path / "saved")
    assert loaded.advantage_positive_lookup is None
    torch.testing.assert_close(list(policy.parameters()), list(loaded.parameters()), rtol=0, atol=0)
    # A file for another, larger dataset is no obstacle either.
    write_advantages(path, list(range(50)), np.zeros(50))
    assert ACTvantagePolicy.from_pretrained(tmp_path / "saved").advantage_positive_lookup.shape == (50,)


# --- processors and a real dataset --------------------------------------------------------------


def saved_registry_names(pipeline, directory: Path) -> set[str]:
    """The step names LeRobot's override check reads from a saved pipeline."""
    pipeline.save_pretrained(directory)
    saved = json.loads((directory / f"{pipeline.name}.json").read_text())
    return {step.get("registry_name") for step in saved["steps"]}


def test_processor_keeps_registry_names_and_carries_plugin_keys(tmp_path, image_dataset):
    config = tiny_config()
    preprocessor, postprocessor = make_actvantage_pre_post_processors(
        config, dataset_stats=image_dataset.meta.stats, extra_keys=("my_key",)
    )
    assert {
        "rename_observations_processor",
        "device_processor",
        "normalizer_processor",
    } <= saved_registry_names(preprocessor, tmp_path)
    assert "unnormalizer_processor" in saved_registry_names(postprocessor, tmp_path)
    batch = {
        IMAGE: torch.rand(2, 3, 32, 32),
        "observation.state": torch.randn(2, 2),
        "action": torch.randn(2, CHUNK, 2),
        "action_is_pad": torch.zeros(2, CHUNK, dtype=torch.bool),
        "index": torch.tensor([0, 1]),
        "advantage": torch.tensor([0.5, -0.5]),
        "control_mode_human": torch.tensor([False, True]),
        "use_action_mask": torch.tensor([True, True]),
        "my_key": torch.tensor([1, 2]),
    }
    processed = preprocessor(batch)
    for key in ("advantage", "control_mode_human", "use_action_mask", "my_key", "index", "action_is_pad"):
        torch.testing.assert_close(processed[key], batch[key])
    assert "advantage" not in make_act_pre_post_processors(config, image_dataset.meta.stats)[0](batch)
    loss, _ = ACTvantagePolicy(config).forward(processed)
    assert torch.isfinite(loss)


def test_training_steps_on_a_real_dataset_with_an_advantage_file(tmp_path, image_dataset):
    dataset = LeRobotDataset(
        image_dataset.repo_id,
        root=image_dataset.root,
        delta_timestamps={"action": [i / image_dataset.fps for i in range(CHUNK)]},
    )
    frames = dataset.meta.total_frames
    advantage = np.sin(np.arange(frames))
    episodes = np.array(dataset.hf_dataset["episode_index"])
    path = write_advantages(tmp_path / "adv.parquet", np.arange(frames), advantage, episode_index=episodes)
    config = tiny_config(advantage_file=str(path))
    features = dataset_to_policy_features(dataset.meta.features)
    config.input_features = {k: f for k, f in features.items() if f.type is not FeatureType.ACTION}
    policy = ACTvantagePolicy(config, dataset_stats=dataset.meta.stats, dataset_meta=dataset.meta).train()
    preprocessor, _ = make_actvantage_pre_post_processors(config, dataset_stats=dataset.meta.stats)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True)
    for step, raw in enumerate(loader):
        batch = preprocessor(raw)
        loss, info = policy.forward(batch)
        expected = float((advantage[raw["index"].numpy()] > 0).mean())
        assert info["positive_fraction"] == pytest.approx(expected)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1:
            break


# --- benchmark ----------------------------------------------------------------------------------


def test_guidance_latency_benchmark_quick(tmp_path):
    output = tmp_path / "latency.json"
    completed = run_in_process(
        REPO_ROOT / "benchmarks" / "bench_guidance_latency.py", ["--quick", "--output", output]
    )
    assert completed.returncode == 0, completed.stderr
    assert "torch threads 1" in completed.stdout
    report = json.loads(output.read_text())
    assert report["torch_threads"] == 1 and report["mode"] == "quick"
    row = report["results"][0]
    assert row["median_ms_beta_1"] > 0 and row["median_ms_beta_2"] > 0
    assert row["ratio"] == pytest.approx(row["median_ms_beta_2"] / row["median_ms_beta_1"])
