"""The built-in PushT dataset: a scripted gym-pusht expert of controllable quality and its recorder.

The names load lazily (`rewact_tools.lazy_exports`): `make_pusht_dataset.py --help` needs the quality
settings, not the simulator and LeRobot.
"""

from rewact_tools.lazy_exports import lazy_exports

_EXPORTS = {
    "rewact_tools.pusht.config": ("GenerationConfig", "parse_mix"),
    "rewact_tools.pusht.expert": ("ExpertConfig", "PlanningError", "PushTExpert"),
    "rewact_tools.pusht.quality": ("HAND_SPEED", "SETTINGS", "Demonstrator", "QualitySetting"),
    "rewact_tools.pusht.rollout": ("EpisodeResult", "make_env", "render_observation", "rollout_episode"),
    "rewact_tools.pusht.writer": (
        "EPISODES_SIDECAR",
        "FEATURES",
        "FPS",
        "TASK",
        "generate_pusht_dataset",
        "summarize",
    ),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
