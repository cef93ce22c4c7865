"""A short real training run: the value loss falls and predicted progress follows time."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lerobot_policy_rewact import RewACTConfig, RewACTPolicy, make_rewact_pre_post_processors

from policy_helpers import TINY_ACT, chunked_dataset, policy_features, preprocessed_batches


@pytest.mark.duration(9)
def test_training_learns_progress(env_state_dataset):
    config = RewACTConfig(
        **policy_features(env_state_dataset),
        **{**TINY_ACT, "dim_model": 64, "dim_feedforward": 128},
        reward_loss_weight=1.0,
        use_vae=False,
        optimizer_lr=1e-3,
    )
    policy = RewACTPolicy(
        config, dataset_stats=env_state_dataset.meta.stats, dataset_meta=env_state_dataset.meta
    )
    preprocessor, _ = make_rewact_pre_post_processors(config, env_state_dataset.meta.stats)
    batches = preprocessed_batches(chunked_dataset(env_state_dataset, config.chunk_size), preprocessor, 16)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    losses = []
    for _ in range(400):
        loss, info = policy.forward(next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(info["value_loss"])
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:10])

    loader = torch.utils.data.DataLoader(env_state_dataset, batch_size=64, shuffle=False)
    values, episodes, frames = [], [], []
    for batch in loader:
        values.append(policy.predict_value(preprocessor(batch)))
        episodes.append(batch["episode_index"])
        frames.append(batch["frame_index"])
    values, episodes, frames = (torch.cat(x).numpy() for x in (values, episodes, frames))
    for episode in np.unique(episodes):
        rows = episodes == episode
        assert spearmanr(values[rows], frames[rows]).statistic > 0.8, episode
