"""Vision encoders of both policies (SPEC §2.4): timm ViTs and CNNs with random weights (no downloads),
one or two cameras of different sizes, with and without state, frozen or trained; weight files; the
checkpoint round trip; and LeRobot's ResNet path left as it was."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import timm
import torch
from lerobot.configs.types import NormalizationMode
from lerobot.policies.act.modeling_act import ACT
from safetensors.torch import save_file
from torchvision.ops.misc import FrozenBatchNorm2d

from lerobot_policy_actvantage import ACTvantageConfig, ACTvantagePolicy, make_actvantage_pre_post_processors
from lerobot_policy_rewact import RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors
from lerobot_policy_rewact.modeling_rewact import RewACTModel
from lerobot_policy_rewact.vision_encoder import FrozenTrunk, TimmFeatureMap

from local_datasets import make_local_dataset
from policy_helpers import TINY_ACT, chunked_dataset, policy_features

POLICIES = {
    "rewact": (RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors),
    "actvantage": (ACTvantageConfig, ACTvantagePolicy, make_actvantage_pre_post_processors),
}
# Tiny random-weight timm models: a ViT with 8-pixel patches and a narrow ResNet.
TINY_VIT = {
    "vision_backbone": "vit_tiny_patch16_224",
    "vision_encoder_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 8, "img_size": 32},
}
TINY_CNN = {
    "vision_backbone": "resnet10t",
    "vision_encoder_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8},
}
ENCODERS = {"vit": TINY_VIT, "cnn": TINY_CNN}
FRONT, WRIST = "observation.images.front", "observation.images.wrist"


@pytest.fixture(scope="module")
def two_camera_dataset(tmp_path_factory):
    """Two cameras of different sizes (32x32 and 24x40) and no state."""
    return make_local_dataset(
        tmp_path_factory.mktemp("datasets") / "two_cameras",
        cameras=(FRONT, WRIST),
        camera_sizes={WRIST: (24, 40)},
        state_dim=None,
    )


@pytest.fixture(params=["one_camera_with_state", "two_cameras_without_state"])
def dataset(request, image_dataset, two_camera_dataset):
    return image_dataset if request.param == "one_camera_with_state" else two_camera_dataset


def make_policy(kind: str, dataset, **overrides):
    config_class, policy_class, _ = POLICIES[kind]
    settings = {**TINY_ACT, "vision_encoder_type": "timm", **overrides}
    config = config_class(**policy_features(dataset), **settings)
    return policy_class(config, dataset_stats=dataset.meta.stats, dataset_meta=dataset.meta)


def raw_batch(dataset, chunk_size: int, batch_size: int = 4) -> dict:
    loader = torch.utils.data.DataLoader(chunked_dataset(dataset, chunk_size), batch_size=batch_size)
    batch = next(iter(loader))
    batch["advantage"] = torch.arange(batch_size) % 2 == 0  # ACTvantage's label; RewACT ignores it
    return batch


def training_batch(kind: str, policy, dataset) -> dict:
    preprocessor, _ = POLICIES[kind][2](policy.config, dataset.meta.stats)
    return preprocessor(raw_batch(dataset, policy.config.chunk_size))


def feature_map_module(policy) -> TimmFeatureMap:
    backbone = policy.model.backbone
    return backbone.trunk if isinstance(backbone, FrozenTrunk) else backbone


def train_one_step(policy, batch) -> dict[str, torch.Tensor]:
    """One AdamW step; returns the parameters as they were before it."""
    policy.train()
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    loss, _ = policy.forward(batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return before


# --- training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen"])
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_train_step_changes_exactly_the_trainable_parameters(kind, encoder, frozen, dataset):
    policy = make_policy(kind, dataset, **ENCODERS[encoder], freeze_vision_encoder=frozen)
    trunk_buffers = {name: b.clone() for name, b in policy.model.backbone.named_buffers()}
    before = train_one_step(policy, training_batch(kind, policy, dataset))
    after = dict(policy.named_parameters())
    trunk = {name for name in before if name.startswith("model.backbone.")}
    changed = {name for name, p in after.items() if not torch.equal(p.detach(), before[name])}
    assert trunk and "model.encoder_img_feat_input_proj.weight" in changed
    assert "model.action_head.weight" in changed
    backbone_group = policy.get_optim_params()[1]
    assert backbone_group["lr"] == policy.config.optimizer_lr_backbone
    if frozen:
        assert not changed & trunk
        assert not any(after[name].requires_grad for name in trunk) and backbone_group["params"] == []
        assert not any(module.training for module in policy.model.backbone.trunk.modules())
        for name, buffer in policy.model.backbone.named_buffers():  # BatchNorm statistics too
            assert torch.equal(buffer, trunk_buffers[name]), name
    else:
        with_gradient = {name for name in trunk if after[name].grad is not None and after[name].grad.any()}
        assert with_gradient and with_gradient <= changed
        assert {id(p) for p in backbone_group["params"]} == {id(after[name]) for name in trunk}


def test_each_camera_gets_its_own_grid_of_tokens(two_camera_dataset):
    """8-pixel patches: 32x32 gives a 4x4 grid, 24x40 a 3x5 grid; plus the latent token."""
    policy = make_policy("rewact", two_camera_dataset, **TINY_VIT, reward_source="progress")
    backbone = feature_map_module(policy)
    assert backbone(torch.rand(2, 3, 32, 32))["feature_map"].shape == (2, 32, 4, 4)
    assert backbone(torch.rand(2, 3, 24, 40))["feature_map"].shape == (2, 32, 3, 5)
    lengths = []
    handle = policy.model.encoder.register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[0]))
    batch = training_batch("rewact", policy, two_camera_dataset)
    policy.predict_value({key: batch[key] for key in (FRONT, WRIST)})
    handle.remove()
    assert lengths == [1 + 16 + 15]


@pytest.mark.parametrize("frozen", [False, True])
def test_a_frozen_trunk_runs_without_gradients(image_dataset, frozen):
    policy = make_policy("actvantage", image_dataset, **TINY_VIT, freeze_vision_encoder=frozen)
    policy.train()
    features = policy.model.backbone(torch.rand(2, 3, 32, 32))["feature_map"]
    assert features.requires_grad is not frozen


def test_the_resnet_path_can_be_frozen_too(image_dataset):
    policy = make_policy("rewact", image_dataset, vision_encoder_type="resnet", freeze_vision_encoder=True)
    assert isinstance(policy.model.backbone, FrozenTrunk)
    before = train_one_step(policy, training_batch("rewact", policy, image_dataset))
    for name, parameter in policy.named_parameters():
        if name.startswith("model.backbone."):
            assert torch.equal(parameter, before[name]), name


# --- image normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_images_are_normalised_by_the_encoder_with_its_pretrained_mean_and_std(image_dataset, encoder):
    policy = make_policy("rewact", image_dataset, **ENCODERS[encoder])
    assert policy.config.normalization_mapping["VISUAL"] is NormalizationMode.IDENTITY
    expected = timm.create_model(ENCODERS[encoder]["vision_backbone"], pretrained=False).pretrained_cfg
    backbone = feature_map_module(policy)
    assert backbone.mean.flatten().tolist() == pytest.approx(expected["mean"])
    assert backbone.std.flatten().tolist() == pytest.approx(expected["std"])
    raw = raw_batch(image_dataset, policy.config.chunk_size)
    preprocessor, _ = make_rewact_pre_post_processors(policy.config, image_dataset.meta.stats)
    assert torch.equal(preprocessor(raw)["observation.image"], raw["observation.image"])


def test_the_resnet_path_keeps_lerobot_normalisation():
    assert RewACTConfig().normalization_mapping["VISUAL"] is NormalizationMode.MEAN_STD
    assert ACTvantageConfig().vision_encoder_type == "resnet"


def test_the_resnet_path_is_lerobots_act(image_dataset):
    """Same seed, frozen BatchNorm: the ACT part of RewACT's network is LeRobot's ACT, bit for bit."""
    features = policy_features(image_dataset)
    features["input_features"].pop("observation.state")  # RewACT wraps the state projection
    config = RewACTConfig(**features, **TINY_ACT, backbone_norm="frozen_bn")
    torch.manual_seed(0)
    act = ACT(config).eval()
    torch.manual_seed(0)
    ours = RewACTModel(config).eval()
    for name, tensor in act.state_dict().items():
        assert torch.equal(tensor, ours.state_dict()[name]), name
    batch = {"observation.images": [torch.rand(2, 3, 32, 32)], "observation.state": torch.zeros(2, 0)}
    assert torch.equal(act(batch)[0], ours(batch)[0])


def test_a_model_that_rejects_the_camera_size_gets_resized_images(image_dataset):
    """Swin has a fixed input size: the 32x32 camera is resized to its native 224x224."""
    policy = make_policy(
        "rewact",
        image_dataset,
        vision_backbone="swin_tiny_patch4_window7_224",
        vision_encoder_kwargs={"depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "embed_dim": 8},
    )
    backbone = feature_map_module(policy)
    assert backbone.resize == (224, 224)
    assert backbone(torch.rand(1, 3, 32, 32))["feature_map"].shape == (1, 64, 7, 7)


# --- weights -------------------------------------------------------------------------------------


def write_weights(path, encoder: dict, seed: int = 1, **kwargs) -> dict[str, torch.Tensor]:
    """A full timm model (classifier included), randomly initialised, saved as .safetensors or .pth."""
    torch.manual_seed(seed)
    model = timm.create_model(
        encoder["vision_backbone"], pretrained=False, **{**encoder["vision_encoder_kwargs"], **kwargs}
    )
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_weights_load_from_a_local_file(image_dataset, tmp_path, encoder, suffix):
    path = tmp_path / f"weights{suffix}"
    saved = write_weights(path, ENCODERS[encoder])
    policy = make_policy("rewact", image_dataset, **ENCODERS[encoder], pretrained_backbone_weights=str(path))
    trunk = feature_map_module(policy).model
    for key, tensor in trunk.state_dict().items():
        assert torch.equal(tensor, saved[key]), key
    if encoder == "cnn":  # the default backbone_norm: frozen BatchNorm
        norms = [m for m in trunk.modules() if "BatchNorm" in type(m).__name__]
        assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)


def test_a_missing_weight_file_raises(image_dataset, tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(
        FileNotFoundError, match=r"pretrained_backbone_weights=.*nowhere\.safetensors.*no such file"
    ):
        make_policy("rewact", image_dataset, **TINY_VIT, pretrained_backbone_weights=str(missing))


def test_weights_of_another_shape_raise(image_dataset, tmp_path):
    path = tmp_path / "wide.safetensors"
    write_weights(path, TINY_VIT, embed_dim=48)
    with pytest.raises(ValueError, match=r"does not fit timm model 'vit_tiny_patch16_224'.*size mismatch"):
        make_policy("rewact", image_dataset, **TINY_VIT, pretrained_backbone_weights=str(path))


def test_weights_of_another_architecture_raise(image_dataset, tmp_path):
    path = tmp_path / "resnet.pth"
    write_weights(path, TINY_CNN)
    with pytest.raises(ValueError, match=r"does not fit timm model 'vit_tiny_patch16_224'.*missing keys"):
        make_policy("actvantage", image_dataset, **TINY_VIT, pretrained_backbone_weights=str(path))


def test_a_file_that_is_no_state_dict_raises(image_dataset, tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="is not a readable state dict"):
        make_policy("rewact", image_dataset, **TINY_VIT, pretrained_backbone_weights=str(path))


def test_an_unknown_model_name_raises(image_dataset):
    with pytest.raises(ValueError, match="vision_backbone='no_such_vit' is not a timm model name"):
        make_policy("rewact", image_dataset, vision_backbone="no_such_vit")


def test_keyword_arguments_the_model_does_not_take_raise(image_dataset):
    with pytest.raises(ValueError, match=r"does not take vision_encoder_kwargs=\{'no_such_argument': 1\}"):
        make_policy(
            "rewact",
            image_dataset,
            vision_backbone="resnet10t",
            vision_encoder_kwargs={"no_such_argument": 1},
        )


def test_hub_weights_without_the_hub_raise_clearly(image_dataset):
    """The test suite runs offline (HF_HUB_OFFLINE=1), so nothing is downloaded."""
    with pytest.raises(OSError, match="could not fetch timm weights from the Hugging Face Hub.*local path"):
        make_policy(
            "rewact", image_dataset, **TINY_VIT, pretrained_backbone_weights="timm/vit_tiny_patch16_224"
        )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"vision_encoder_type": "clip"}, r"vision_encoder_type='clip' is not one of"),
        ({"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"}, "names torchvision weights"),
        (
            {"pretrained_backbone_weights": None, "backbone_norm": "group_norm"},
            "converts LeRobot's torchvision",
        ),
        (
            {"pretrained_backbone_weights": None, "replace_final_stride_with_dilation": True},
            "torchvision ResNet only",
        ),
        (
            {"vision_encoder_type": "resnet", "vision_encoder_kwargs": {"depth": 1}},
            "applies to vision_encoder_type='timm'",
        ),
    ],
)
@pytest.mark.parametrize("config_class", [RewACTConfig, ACTvantageConfig])
def test_bad_encoder_settings_raise_naming_the_field(config_class, overrides, message):
    with pytest.raises(ValueError, match=f"{config_class.__name__}.*{message}"):
        config_class(**{"vision_encoder_type": "timm", **overrides})


def test_timm_missing_says_how_to_install_it(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "timm" else find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install -e "lerobot_policy_rewact\[timm\]"'):
        RewACTConfig(vision_encoder_type="timm", pretrained_backbone_weights=None)


def test_timm_missing_at_build_time_says_how_to_install_it(image_dataset, monkeypatch):
    config = RewACTConfig(**policy_features(image_dataset), **TINY_ACT, vision_encoder_type="timm")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"lerobot_policy_rewact\[timm\]"):
        RewACTPolicy(config, dataset_meta=image_dataset.meta)


# --- checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen"])
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_checkpoints_reload_bit_exactly_without_the_weight_file(
    kind, encoder, frozen, image_dataset, tmp_path
):
    weights = tmp_path / "trunk.safetensors"
    write_weights(weights, ENCODERS[encoder])
    policy = make_policy(
        kind,
        image_dataset,
        **ENCODERS[encoder],
        pretrained_backbone_weights=str(weights),
        freeze_vision_encoder=frozen,
    )
    train_one_step(policy, training_batch(kind, policy, image_dataset))
    policy.save_pretrained(tmp_path / "checkpoint")
    weights.unlink()  # a checkpoint carries the trunk: the original file is never needed again

    reloaded = POLICIES[kind][1].from_pretrained(tmp_path / "checkpoint")
    assert reloaded.config.vision_encoder_kwargs == ENCODERS[encoder]["vision_encoder_kwargs"]
    saved, loaded = policy.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys()
    for key, tensor in saved.items():
        assert torch.equal(tensor, loaded[key]), key
    policy.eval()
    observation = {
        key: value
        for key, value in training_batch(kind, policy, image_dataset).items()
        if key.startswith("observation.")
    }
    assert torch.equal(policy.predict_action_chunk(observation), reloaded.predict_action_chunk(observation))
