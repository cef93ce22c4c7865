"""Every public name of SPEC §4 is importable from `rewact_tools` directly, without eager imports."""

import subprocess
import sys

import rewact_tools


def test_public_names_are_exported():
    for name in rewact_tools.__all__:
        assert getattr(rewact_tools, name) is not None, name
    for name in (
        "KeypointReward",
        "DenseRewardPlugin",
        "compute_values",
        "make_pre_post_processors",
        "PiStar0_6AdvantagePlugin",
        "ControlModePlugin",
        "LeRobotDatasetWithReward",
        "progress",
        "progress_table",
        "write_progress_file",
    ):
        assert name in rewact_tools.__all__
    exec("from rewact_tools import KeypointReward, DenseRewardPlugin, compute_values", {})


def test_unknown_name_raises_attribute_error():
    try:
        rewact_tools.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_labels_are_the_policy_implementation():
    from lerobot_policy_rewact import reward_labels

    assert rewact_tools.dense_rewards is reward_labels.dense_rewards
    assert rewact_tools.load_keypoints is reward_labels.load_keypoints


def test_importing_the_package_does_not_import_torch():
    code = "import sys, rewact_tools; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
