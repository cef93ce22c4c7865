"""The one place `rewact_tools` meets the differences between LeRobot 0.4.x and 0.5/0.6.

The project supports LeRobot 0.4.4 (Python 3.10/3.11) and 0.6.1 (Python 3.12) from one tree. Between
them a handful of names moved and two training-config fields were renamed; everything else in
`rewact_tools`, the scripts, the tests and the benchmarks takes those names from here. Each
difference is settled by a feature test (does the module or attribute exist?), never by comparing
version numbers, so 0.5.x resolves by the same tests.

It also makes resolvable, once, the names robocandywrapper 0.2.18 imports from places that exist in
neither version as it expects (`alias_lerobot_for_robocandywrapper`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

from lerobot.configs.train import TrainPipelineConfig
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_rewact.lerobot_compat import HAS_REWARD_MODELS, find_lerobot_name, module_exists

_TRAIN_UTILS = ("lerobot.common.train_utils", "lerobot.utils.train_utils")
dataset_to_policy_features = find_lerobot_name(
    "dataset_to_policy_features", "lerobot.utils.feature_utils", "lerobot.datasets.utils"
)
cycle = find_lerobot_name("cycle", "lerobot.utils.utils", "lerobot.datasets.utils")
DEFAULT_FEATURES = find_lerobot_name("DEFAULT_FEATURES", "lerobot.utils.constants", "lerobot.datasets.utils")
"""The features LeRobot adds to every dataset itself (`timestamp`, `frame_index`, `index`, ...)."""
ImageTransforms = find_lerobot_name("ImageTransforms", "lerobot.transforms", "lerobot.datasets.transforms")
get_step_checkpoint_dir = find_lerobot_name("get_step_checkpoint_dir", *_TRAIN_UTILS)
get_step_identifier = find_lerobot_name("get_step_identifier", *_TRAIN_UTILS)
load_training_state = find_lerobot_name("load_training_state", *_TRAIN_UTILS)
save_checkpoint = find_lerobot_name("save_checkpoint", *_TRAIN_UTILS)
update_last_checkpoint = find_lerobot_name("update_last_checkpoint", *_TRAIN_UTILS)

_TRAIN_FIELDS = {field.name for field in TrainPipelineConfig.__dataclass_fields__.values()}
EVAL_FREQ_FIELD = "env_eval_freq" if "env_eval_freq" in _TRAIN_FIELDS else "eval_freq"
"""`TrainPipelineConfig`'s simulation-evaluation period: `--env_eval_freq` from LeRobot 0.6, `--eval_freq`
before. The flag is `--<EVAL_FREQ_FIELD>`."""
_OTHER_EVAL_FREQ_FIELD = "eval_freq" if EVAL_FREQ_FIELD == "env_eval_freq" else "env_eval_freq"
HAS_SAMPLE_WEIGHTING = "sample_weighting" in _TRAIN_FIELDS
"""LeRobot 0.6 weights training samples (RA-BC) through `--sample_weighting.*`; 0.4 had `--use_rabc`."""


def open_dataset_for_append(repo_id: str, root: Path) -> LeRobotDataset:
    """The local dataset at `root`, opened so that `add_frame`/`save_episode` append episodes to it.

    LeRobot 0.6 has `LeRobotDataset.resume`; 0.4 has no such method and appends to a dataset opened
    the ordinary way. Both write the new episodes into new data and episode-metadata files (the next
    file index), never into the existing ones, and rewrite only `meta/info.json`, `meta/stats.json`
    and `meta/tasks.parquet`.
    """
    if hasattr(LeRobotDataset, "resume"):
        return LeRobotDataset.resume(repo_id, root=root)
    return LeRobotDataset(repo_id, root=root)


def eval_frequency(cfg: TrainPipelineConfig) -> int:
    """How often (steps) `cfg` evaluates in simulation, whatever LeRobot calls the field."""
    return getattr(cfg, EVAL_FREQ_FIELD)


def in_installed_spelling(train_args: list[str]) -> list[str]:
    """`lerobot-train` flags with the evaluation period spelt as the installed LeRobot spells it.

    `--eval_freq` (LeRobot 0.4) and `--env_eval_freq` (0.6) mean the same, and each version rejects
    the other's spelling; commands written for either version then run on both.
    """
    spelt = []
    for arg in train_args:
        flag, equals, value = arg.partition("=")
        spelt.append(f"--{EVAL_FREQ_FIELD}{equals}{value}" if flag == f"--{_OTHER_EVAL_FREQ_FIELD}" else arg)
    return spelt


@contextlib.contextmanager
def config_sources_cached() -> Iterator[None]:
    """Inside, `inspect.getsource` reads each object's source once.

    LeRobot's flag parser (draccus) takes every config field's help text from its class's source.
    draccus 0.10, which LeRobot 0.4.4 pins, reads and tokenizes the whole class again for each field:
    about 1 250 reads and 3 CPU seconds for a training run's flags (draccus 0.11 caches the source per
    class, so LeRobot 0.6 parses in 0.6 s). Sources do not change while flags are parsed: the cache is
    exact, and the uncached function is back afterwards.
    """
    uncached = inspect.getsource
    inspect.getsource = functools.lru_cache(maxsize=None)(uncached)
    try:
        yield
    finally:
        inspect.getsource = uncached


def sample_weighting_requested(cfg: TrainPipelineConfig) -> bool:
    """Whether `cfg` asks for reward-weighted training (0.6 `sample_weighting`, 0.4 `use_rabc`)."""
    return cfg.sample_weighting is not None if HAS_SAMPLE_WEIGHTING else bool(cfg.use_rabc)


def reward_model_requested(cfg: TrainPipelineConfig) -> bool:
    """Whether `cfg` trains a reward model (`--reward_model.*`, LeRobot 0.6) rather than a policy."""
    return HAS_REWARD_MODELS and cfg.reward_model is not None


# Where robocandywrapper 0.2.18 imports a name from (left) and where this LeRobot has it (right,
# first existing wins). It was written against a development layout between 0.4 and 0.5.
_ROBOCANDYWRAPPER_MODULES = {
    "lerobot.datasets.feature_utils": ("lerobot.datasets.feature_utils", "lerobot.datasets.utils"),
    "lerobot.datasets.io_utils": ("lerobot.datasets.io_utils", "lerobot.datasets.utils"),
    "lerobot.datasets.transforms": ("lerobot.datasets.transforms", "lerobot.transforms"),
}
_ROBOCANDYWRAPPER_NAMES = {
    ("lerobot.datasets.utils", "DEFAULT_FEATURES"): ("lerobot.utils.constants", "DEFAULT_FEATURES"),
    ("lerobot.datasets.feature_utils", "_validate_feature_names"): (
        "lerobot.utils.feature_utils",
        "_validate_feature_names",
    ),
    ("lerobot.datasets.video_utils", "get_safe_default_codec"): (
        "lerobot.utils.import_utils",
        "get_safe_default_video_backend",
    ),
}


def alias_lerobot_for_robocandywrapper() -> list[str]:
    """Make every module and name robocandywrapper 0.2.18 imports resolvable in this LeRobot.

    A missing module is registered under its expected name as the module that holds its contents
    here; a missing name is set on its module from where it lives here. Existing modules and names
    are never replaced. Returns what it aliased (empty when nothing was missing or on a second call).
    """
    aliased = []
    for expected, candidates in _ROBOCANDYWRAPPER_MODULES.items():
        if module_exists(expected):
            continue
        sys.modules[expected] = importlib.import_module(
            next(name for name in candidates if module_exists(name))
        )
        aliased.append(expected)
    for (module_name, name), (source_module, source_name) in _ROBOCANDYWRAPPER_NAMES.items():
        module = importlib.import_module(module_name)
        if hasattr(module, name) or not module_exists(source_module):
            continue
        setattr(module, name, getattr(importlib.import_module(source_module), source_name))
        aliased.append(f"{module_name}.{name}")
    return aliased
