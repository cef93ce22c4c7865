"""Build tiny policies and preprocessed batches from local datasets, the way lerobot-train does."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.configs.types import FeatureType
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.utils.constants import ACTION

from rewact_tools.lerobot_compat import dataset_to_policy_features

# Small enough for a CPU step in milliseconds; ACT's structure is otherwise unchanged.
TINY_ACT = {
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 8,
    "chunk_size": 4,
    "n_action_steps": 4,
    "pretrained_backbone_weights": None,
    "device": "cpu",
}


def policy_features(dataset: LeRobotDataset) -> dict[str, Any]:
    """`input_features` and `output_features` for a config, as lerobot-train derives them."""
    features = dataset_to_policy_features(dataset.meta.features)
    return {
        "input_features": {k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        "output_features": {k: f for k, f in features.items() if f.type is FeatureType.ACTION},
    }


def chunked_dataset(dataset: LeRobotDataset, chunk_size: int) -> LeRobotDataset:
    """The same dataset reopened with action chunks (`action [chunk, A]` and `action_is_pad`)."""
    fps = dataset.meta.fps
    return LeRobotDataset(
        dataset.repo_id,
        root=dataset.root,
        delta_timestamps={ACTION: [i / fps for i in range(chunk_size)]},
    )


def preprocessed_batches(dataset, preprocessor, batch_size: int, shuffle: bool = True, seed: int = 0):
    """Yield preprocessed batches forever (normalised, as the policy sees them in training)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0
        )
        for batch in loader:
            yield preprocessor(batch)
