"""Policy rollouts in LeRobot simulation envs, recorded as LeRobot datasets (SPEC §7) or kept in
memory (`roll_out`, what the benchmarks evaluate and collect with).

`collect_rollouts` rolls any LeRobot policy checkpoint out in an env made by `lerobot.envs`' factory
(`collect.py`), optionally with a RewACT reward model watching (`models.py`) and a scripted
corrector taking over (`corrections.py`, the correctors by env type in `correctors.py`), and writes the episodes with LeRobot's keys plus
`intervention` (`env.py`), committing them atomically, in rounds, to a new or existing dataset
(`recorder.py`). `scripts/collect_rollouts.py` is its command line.
"""

from rewact_tools.rollouts.collect import (
    MODEL_SUCCESS_KEY,
    PROGRESS_KEY,
    EpisodeRecord,
    RolloutSettings,
    collect_rollouts,
    dataset_features,
    roll_out,
)
from rewact_tools.rollouts.corrections import CorrectionSettings, EpisodeCorrections, ProgressStall
from rewact_tools.rollouts.correctors import CORRECTORS
from rewact_tools.rollouts.env import EnvSpec, RolloutEnv, make_env_spec
from rewact_tools.rollouts.models import PolicyRunner, ProgressModel
from rewact_tools.rollouts.recorder import SIDECAR as ROLLOUTS_SIDECAR
from rewact_tools.rollouts.recorder import RolloutDatasetWriter, check_appendable

__all__ = [
    "CORRECTORS",
    "MODEL_SUCCESS_KEY",
    "PROGRESS_KEY",
    "ROLLOUTS_SIDECAR",
    "CorrectionSettings",
    "EnvSpec",
    "EpisodeCorrections",
    "EpisodeRecord",
    "PolicyRunner",
    "ProgressModel",
    "ProgressStall",
    "RolloutDatasetWriter",
    "RolloutEnv",
    "RolloutSettings",
    "check_appendable",
    "collect_rollouts",
    "dataset_features",
    "make_env_spec",
    "roll_out",
]
