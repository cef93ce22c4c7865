"""The built-in PushT dataset: a scripted gym-pusht expert of controllable quality and its recorder."""

from rewact_tools.pusht.config import GenerationConfig, parse_mix
from rewact_tools.pusht.expert import ExpertConfig, PlanningError, PushTExpert
from rewact_tools.pusht.quality import HAND_SPEED, SETTINGS, Demonstrator, QualitySetting
from rewact_tools.pusht.rollout import EpisodeResult, make_env, render_observation, rollout_episode
from rewact_tools.pusht.writer import EPISODES_SIDECAR, FEATURES, FPS, TASK, generate_pusht_dataset, summarize

__all__ = [
    "EPISODES_SIDECAR",
    "FEATURES",
    "FPS",
    "HAND_SPEED",
    "SETTINGS",
    "TASK",
    "Demonstrator",
    "EpisodeResult",
    "ExpertConfig",
    "GenerationConfig",
    "PlanningError",
    "PushTExpert",
    "QualitySetting",
    "generate_pusht_dataset",
    "make_env",
    "parse_mix",
    "render_observation",
    "rollout_episode",
    "summarize",
]
