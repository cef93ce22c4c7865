"""RewACT tools: labels, returns and advantages, value inference, metrics, processors, plugins.

Every public name is importable from `rewact_tools` directly. The names load lazily (PEP 562): the
package itself imports nothing heavy, so a script's `--help` or argument error does not wait seconds
for torch and LeRobot to import.
"""

from rewact_tools.lazy_exports import lazy_exports

_EXPORTS = {
    "rewact_tools.advantages": (
        "ADVANTAGE_COLUMNS",
        "compute_advantages",
        "force_positive",
        "n_step_advantage",
        "read_advantages",
        "task_thresholds",
        "time_baseline_advantages",
        "write_advantages",
    ),
    "rewact_tools.advantage_display": ("ADVANTAGES_RELATIVE_PATH",),
    "rewact_tools.labels": (
        "KEYPOINTS_RELATIVE_PATH",
        "KeypointFileError",
        "KeypointReward",
        "dense_reward_table",
        "dense_rewards",
        "episode_lengths_from_meta",
        "load_keypoints",
        "progress",
        "save_keypoints",
    ),
    "rewact_tools.metrics": (
        "reward_model_metrics",
        "success_detection_scores",
        "terminal_auroc",
        "value_errors",
        "value_order_correlation",
    ),
    "rewact_tools.control_modes": (
        "CONTROL_MODES",
        "frame_control_modes",
        "has_control_modes",
        "human_frame_index",
    ),
    "rewact_tools.outcomes": (
        "DEFAULT_SUCCESS_THRESHOLD",
        "OUTCOMES_RELATIVE_PATH",
        "MissingOutcomesError",
        "episode_outcomes",
        "load_episode_outcomes",
        "outcomes_from_success_column",
        "outcomes_from_values",
        "read_outcomes_file",
        "write_episode_outcomes",
    ),
    "rewact_tools.plugins": (
        "ControlModePlugin",
        "DenseRewardPlugin",
        "LabelledRewardPlugin",
        "PiStar0_6AdvantagePlugin",
        "PiStar0_6CumulativeRewardPlugin",
    ),
    "rewact_tools.processors": ("DEFAULT_EXTRA_KEYS", "make_pre_post_processors"),
    "rewact_tools.rabc": (
        "RABC_COLUMNS",
        "progress_summary",
        "progress_table",
        "write_progress_file",
    ),
    "rewact_tools.returns": ("dataset_frames", "pistar_returns"),
    "rewact_tools.rollouts": (
        "CorrectionSettings",
        "EpisodeRecord",
        "PolicyRunner",
        "ProgressModel",
        "ROLLOUTS_SIDECAR",
        "RolloutSettings",
        "collect_rollouts",
        "make_env_spec",
    ),
    "rewact_tools.reward_dataset": ("LeRobotDatasetWithReward",),
    "rewact_tools.values": (
        "VALUE_COLUMNS",
        "check_features_match",
        "check_input_features",
        "compute_values",
    ),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
