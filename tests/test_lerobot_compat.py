"""The LeRobot version layer: moved names resolve, renamed config fields are read by feature tests,
robocandywrapper imports (or says how to install it), and LeRobot's torchcodec warning is one line."""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import subprocess
import sys

import pytest
from lerobot.configs.train import TrainPipelineConfig
from packaging.version import Version

from rewact_tools import lerobot_compat
from rewact_tools.cli import quiet_torchcodec_fallback


def test_moved_names_resolve_to_lerobots_own_objects():
    from lerobot.configs.types import FeatureType

    features = lerobot_compat.dataset_to_policy_features(
        {"observation.state": {"dtype": "float32", "shape": (2,), "names": None}}
    )
    assert features["observation.state"].type is FeatureType.STATE
    batches = lerobot_compat.cycle([1, 2])
    assert [next(batches) for _ in range(5)] == [1, 2, 1, 2, 1]
    for name in (
        "get_step_checkpoint_dir",
        "load_training_state",
        "save_checkpoint",
        "update_last_checkpoint",
    ):
        assert callable(getattr(lerobot_compat, name))


def test_renamed_training_fields_follow_the_installed_config():
    fields = TrainPipelineConfig.__dataclass_fields__
    assert lerobot_compat.EVAL_FREQ_FIELD in fields
    assert ("sample_weighting" in fields) == lerobot_compat.HAS_SAMPLE_WEIGHTING
    assert ("use_rabc" in fields) != lerobot_compat.HAS_SAMPLE_WEIGHTING


def test_robocandywrapper_imports_and_the_aliases_are_idempotent():
    from rewact_tools.candywrapper import WrappedRobotDataset

    assert WrappedRobotDataset.__module__.startswith("robocandywrapper")
    assert lerobot_compat.alias_lerobot_for_robocandywrapper() == []


def test_missing_robocandywrapper_names_the_install_command_for_this_lerobot():
    hide = "import sys; sys.modules['robocandywrapper'] = None; import rewact_tools.candywrapper"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: robocandywrapper is not installed")
    # Its metadata pins lerobot<0.5: beside a newer LeRobot it must go in without its dependencies.
    no_deps = "--no-deps " if Version(importlib.metadata.version("lerobot")) >= Version("0.5") else ""
    assert message.endswith(f"Install it with: pip install {no_deps}robocandywrapper==0.2.18")


def test_both_spellings_of_the_evaluation_period_become_the_installed_one():
    field = lerobot_compat.EVAL_FREQ_FIELD
    args = ["--eval_freq=-1", "--env_eval_freq", "5", "--eval.batch_size=2", "--steps=3"]
    assert lerobot_compat.in_installed_spelling(args) == [
        f"--{field}=-1",
        f"--{field}",
        "5",
        "--eval.batch_size=2",
        "--steps=3",
    ]


def test_torchcodec_fallback_warning_becomes_its_last_line(caplog):
    quiet_torchcodec_fallback()
    quiet_torchcodec_fallback()  # idempotent
    logger = logging.getLogger("lerobot.utils.import_utils")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning(
            "Could not load libtorchcodec.\nTraceback (most recent call last):\n  File x\nOSError: y\n"
            "'torchcodec' is installed but cannot be loaded (see the error above). Falling back to 'pyav'."
        )
        logger.warning("an unrelated\nmulti-line warning")
    assert [record.getMessage() for record in caplog.records] == [
        "'torchcodec' is installed but cannot be loaded (see the error above). Falling back to 'pyav'.",
        "an unrelated\nmulti-line warning",
    ]


def test_config_sources_are_read_once_while_flags_are_parsed(monkeypatch):
    """draccus 0.10 asks for a config class's source once per field; inside the context the class
    is read once, and afterwards (also after an error) every call reads again."""
    reads = []
    read_source = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: reads.append(obj) or read_source(obj))
    with lerobot_compat.config_sources_cached():
        sources = [inspect.getsource(TrainPipelineConfig) for _ in range(3)]
    assert sources == [read_source(TrainPipelineConfig)] * 3 and reads == [TrainPipelineConfig]
    with pytest.raises(RuntimeError), lerobot_compat.config_sources_cached():
        inspect.getsource(TrainPipelineConfig)
        raise RuntimeError("a bad flag")
    inspect.getsource(TrainPipelineConfig)
    assert reads == [TrainPipelineConfig] * 3
