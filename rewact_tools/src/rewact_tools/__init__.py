"""RewACT tools: labels, returns and advantages, value inference, metrics, processors, plugins.

Every public name is importable from `rewact_tools` directly.
"""

from rewact_tools.advantages import (
    ADVANTAGE_COLUMNS,
    compute_advantages,
    n_step_advantage,
    read_advantages,
    task_thresholds,
    write_advantages,
)
from rewact_tools.labels import (
    KEYPOINTS_RELATIVE_PATH,
    KeypointFileError,
    KeypointReward,
    dense_reward_table,
    dense_rewards,
    episode_lengths_from_meta,
    load_keypoints,
    progress,
    save_keypoints,
)
from rewact_tools.metrics import (
    reward_model_metrics,
    success_detection_scores,
    terminal_auroc,
    value_errors,
    value_order_correlation,
)
from rewact_tools.outcomes import (
    OUTCOMES_RELATIVE_PATH,
    load_episode_outcomes,
    outcomes_from_success_column,
    read_outcomes_file,
    write_episode_outcomes,
)
from rewact_tools.plugins import (
    ControlModePlugin,
    DenseRewardPlugin,
    LabelledRewardPlugin,
    PiStar0_6AdvantagePlugin,
    PiStar0_6CumulativeRewardPlugin,
)
from rewact_tools.processors import DEFAULT_EXTRA_KEYS, make_pre_post_processors
from rewact_tools.returns import dataset_frames, pistar_returns
from rewact_tools.reward_dataset import LeRobotDatasetWithReward
from rewact_tools.values import VALUE_COLUMNS, compute_values

__all__ = [
    "ADVANTAGE_COLUMNS",
    "DEFAULT_EXTRA_KEYS",
    "KEYPOINTS_RELATIVE_PATH",
    "OUTCOMES_RELATIVE_PATH",
    "VALUE_COLUMNS",
    "ControlModePlugin",
    "DenseRewardPlugin",
    "KeypointFileError",
    "KeypointReward",
    "LabelledRewardPlugin",
    "LeRobotDatasetWithReward",
    "PiStar0_6AdvantagePlugin",
    "PiStar0_6CumulativeRewardPlugin",
    "compute_advantages",
    "compute_values",
    "dataset_frames",
    "dense_reward_table",
    "dense_rewards",
    "episode_lengths_from_meta",
    "load_episode_outcomes",
    "load_keypoints",
    "make_pre_post_processors",
    "n_step_advantage",
    "outcomes_from_success_column",
    "pistar_returns",
    "progress",
    "read_advantages",
    "read_outcomes_file",
    "reward_model_metrics",
    "save_keypoints",
    "success_detection_scores",
    "task_thresholds",
    "terminal_auroc",
    "value_errors",
    "value_order_correlation",
    "write_advantages",
    "write_episode_outcomes",
]
