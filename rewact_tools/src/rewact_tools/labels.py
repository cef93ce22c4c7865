"""Reward labels (SPEC §4.1–4.2), re-exported from the RewACT policy package.

The policy computes its training targets from these same functions, so the tools label, plot and
serve exactly what the policy learns; there is one implementation, in
`lerobot_policy_rewact.reward_labels`.
"""

from lerobot_policy_rewact.reward_labels import (
    KEYPOINTS_RELATIVE_PATH,
    KeypointFileError,
    KeypointReward,
    dense_reward_table,
    dense_rewards,
    load_keypoints,
    progress,
    save_keypoints,
)
from lerobot_policy_rewact.targets import episode_lengths_from_meta

__all__ = [
    "KEYPOINTS_RELATIVE_PATH",
    "KeypointFileError",
    "KeypointReward",
    "dense_reward_table",
    "dense_rewards",
    "episode_lengths_from_meta",
    "load_keypoints",
    "progress",
    "save_keypoints",
]
