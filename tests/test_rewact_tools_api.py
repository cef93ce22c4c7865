"""Every public name of SPEC §4 is importable from `rewact_tools` directly."""

import rewact_tools


def test_public_names_are_exported():
    for name in rewact_tools.__all__:
        assert hasattr(rewact_tools, name), name
    for name in (
        "KeypointReward",
        "DenseRewardPlugin",
        "compute_values",
        "make_pre_post_processors",
        "PiStar0_6AdvantagePlugin",
        "ControlModePlugin",
        "LeRobotDatasetWithReward",
        "progress",
    ):
        assert name in rewact_tools.__all__


def test_labels_are_the_policy_implementation():
    from lerobot_policy_rewact import reward_labels

    assert rewact_tools.dense_rewards is reward_labels.dense_rewards
    assert rewact_tools.load_keypoints is reward_labels.load_keypoints
