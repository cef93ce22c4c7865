"""LeRobot simulation envs for rollouts, made by `lerobot.envs`' factory, and their observations as
policies see them and as a dataset records them.

Observations go through LeRobot's own `preprocess_observation` and the env's pre-processor (what
`lerobot-eval` feeds a policy), and the dataset records exactly those: vectors as float32, cameras
as images (uint8 HWC on disk; LeRobot reads them back as the same float CHW tensors in [0, 1]).
Feature shapes are taken from the observations themselves, not from the env config, which can
disagree (LeRobot's pusht config declares 384x384 pixels, gym-pusht renders 96x96).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from lerobot.envs.configs import EnvConfig
from lerobot.envs.factory import make_env, make_env_config, make_env_pre_post_processors
from lerobot.envs.utils import preprocess_observation
from lerobot.utils.constants import ACTION, OBS_STR

OBSERVATION_PREFIX = f"{OBS_STR}."
IMAGE_NAMES = ["height", "width", "channel"]
_ENV_SETTINGS = {"obs_type": "--obs-type", "episode_length": "--max-steps", "task": "--env-task"}
ENV_PROGRESS = {"pusht": "coverage"}
"""The `info` entry in which an env type reports its own task progress after each step, where it
has one (PushT: how much of the goal the block covers): ground truth a simulation can give the
corrections and the records instead of a reward model."""


@dataclass(frozen=True)
class EnvSpec:
    """Which LeRobot env to roll out in (its config) and the task text every frame records."""

    config: EnvConfig
    task: str

    @property
    def type(self) -> str:
        return self.config.type

    @property
    def fps(self) -> int:
        return int(self.config.fps)

    @property
    def progress_key(self) -> str | None:
        return ENV_PROGRESS.get(self.type)

    def describe(self) -> str:
        obs_type = getattr(self.config, "obs_type", None)
        return f"env {self.type!r}" + (f" (obs_type {obs_type!r})" if obs_type else "")

    def as_dict(self) -> dict[str, Any]:
        """The settings that decide what the env does, for the dataset's sidecar."""
        settings = {name: getattr(self.config, name) for name in _ENV_SETTINGS if hasattr(self.config, name)}
        return {"type": self.type, "fps": self.fps, **settings}


def make_env_spec(
    env_type: str,
    obs_type: str | None = None,
    max_steps: int | None = None,
    env_task: str | None = None,
    task: str | None = None,
) -> EnvSpec:
    """The config of LeRobot env `env_type` with the given settings (None: the config's default).

    `max_steps` is the config's `episode_length`, `env_task` its `task` (the env variant, e.g.
    `PushT-v0`); `task` is the text recorded with every frame (default: see `_default_task`).
    """
    known = EnvConfig.get_known_choices()
    if env_type not in known:
        raise ValueError(f"unknown env type {env_type!r}; LeRobot knows {sorted(known)}")
    fields = {field.name for field in dataclasses.fields(EnvConfig.get_choice_class(env_type))}
    settings = {}
    for name, value in (("obs_type", obs_type), ("episode_length", max_steps), ("task", env_task)):
        if value is None:
            continue
        if name not in fields:
            raise ValueError(
                f"env type {env_type!r} has no {name!r} setting, so {_ENV_SETTINGS[name]} cannot apply"
            )
        settings[name] = value
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1, got {max_steps}")
    try:
        config = make_env_config(env_type, **settings)
    except ValueError as error:  # LeRobot 0.4 makes only aloha, pusht and libero configs by name
        raise ValueError(f"this LeRobot cannot make env type {env_type!r}: {error}") from error
    return EnvSpec(config, task if task is not None else _default_task(config))


def _default_task(config: EnvConfig) -> str:
    """The task text of the built-in data for this env where rewact_tools has some (PushT), so that
    rollouts and that data are one task (per-task advantage thresholds, return normalisation);
    else the env config's task."""
    if config.type == "pusht":
        from rewact_tools.pusht.writer import TASK

        return TASK
    return str(config.task or config.type)


class RolloutEnv:
    """`n_envs` copies of the env made by LeRobot's factory, with the env's own observation and
    action processors for `policy_config`. The copies are stepped one by one, and only while their
    episode runs: an episode that has ended costs nothing, and its env is not reset behind our back
    (a vector env's autoreset would)."""

    def __init__(self, spec: EnvSpec, n_envs: int, policy_config: Any):
        self.spec = spec
        with warnings.catch_warnings():
            # pygame (imported by gym-pusht) warns about pkg_resources on import.
            warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
            try:
                suites = make_env(spec.config, n_envs=n_envs, use_async_envs=False)
            except ModuleNotFoundError as error:
                raise ValueError(f"cannot make {spec.describe()}: {error}") from error
        vectors = [vector for tasks in suites.values() for vector in tasks.values()]
        if len(vectors) != 1:
            for vector in vectors:
                vector.close()
            raise ValueError(
                f"{spec.describe()} is a suite of {len(vectors)} tasks; roll out one task at a time"
            )
        self.vector: gym.vector.SyncVectorEnv = vectors[0]
        self.num_envs = n_envs
        self.env_preprocessor, self.env_postprocessor = make_env_pre_post_processors(
            spec.config, policy_config
        )
        self._raw: list[Any] = []

    @property
    def max_steps(self) -> int:
        """The episode step limit of the env (its TimeLimit)."""
        return int(self.vector.call("_max_episode_steps")[0])

    def sub_env(self, row: int) -> gym.Env:
        """The simulator of one row (for a scripted corrector that reads its state)."""
        return self.vector.envs[row].unwrapped

    def reset(self, seeds: list[int]) -> dict[str, Any]:
        """Reset env i with `seeds[i]` (as the vector env's `reset(seed=seeds)` does)."""
        self._raw = [env.reset(seed=int(seed))[0] for env, seed in zip(self.vector.envs, seeds, strict=True)]
        return self.observe(_stack(self._raw))

    def observe(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A raw vector-env observation as the policy's batch: LeRobot keys, tensors, task text."""
        observation = preprocess_observation(raw)
        observation["task"] = [self.spec.task] * self.num_envs
        return self.env_preprocessor(observation)

    def to_env_action(self, action: torch.Tensor) -> np.ndarray:
        """A policy's action batch, through the env's post-processor, as the env's float32 array."""
        action = self.env_postprocessor({ACTION: action})[ACTION]
        array = action.detach().to("cpu").numpy().astype(np.float32)
        if array.shape != (self.num_envs, *self.vector.single_action_space.shape):
            raise ValueError(
                f"the policy's actions have shape {array.shape[1:]}, but {self.spec.describe()} takes "
                f"{self.vector.single_action_space.shape}"
            )
        return array

    def step(self, actions: np.ndarray, active: np.ndarray) -> EnvStep:
        """Step the envs of the `active` rows with their actions; every other row keeps its last
        observation and reads reward 0, done, no success."""
        reward = np.zeros(self.num_envs, dtype=np.float32)
        done = ~np.asarray(active, dtype=bool)
        success = np.zeros(self.num_envs, dtype=bool)
        key = self.spec.progress_key
        progress = None if key is None else np.full(self.num_envs, np.nan)
        for row in np.flatnonzero(active):
            self._raw[row], reward[row], terminated, truncated, info = self.vector.envs[row].step(
                actions[row]
            )
            done[row] = terminated or truncated
            success[row] = bool(info.get("is_success", False))
            if progress is not None:
                progress[row] = info.get(key, np.nan)
        return EnvStep(self.observe(_stack(self._raw)), reward, done, success, progress)

    def close(self) -> None:
        self.vector.close()


@dataclass
class EnvStep:
    """What one step gave, per env."""

    observation: dict[str, Any]
    """The next observation, as the policy's batch."""
    reward: np.ndarray
    done: np.ndarray
    success: np.ndarray
    progress: np.ndarray | None
    """The env's own progress after this step (`ENV_PROGRESS`; None where it reports none)."""


def _stack(observations: list[Any]) -> Any:
    """Single-env observations as one batch, as a vector env returns it (dicts key by key)."""
    if isinstance(observations[0], dict):
        return {key: _stack([item[key] for item in observations]) for key in observations[0]}
    return np.stack(observations)


def _is_image(value: torch.Tensor) -> bool:
    return value.ndim == 4


def observation_features(observation: dict[str, Any]) -> dict[str, dict]:
    """LeRobot dataset features of the `observation.*` entries of a policy batch."""
    features: dict[str, dict] = {}
    for key, value in observation.items():
        if not key.startswith(OBSERVATION_PREFIX):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"env observation {key!r} is a {type(value).__name__}, not a tensor, and cannot be recorded"
            )
        if _is_image(value):
            channels, height, width = value.shape[1:]
            features[key] = {"dtype": "image", "shape": (height, width, channels), "names": IMAGE_NAMES}
        else:
            features[key] = {"dtype": "float32", "shape": tuple(value.shape[1:]) or (1,), "names": None}
    if not features:
        raise ValueError(f"env observations have no {OBSERVATION_PREFIX}* entries: {sorted(observation)}")
    return features


def frame_observations(observation: dict[str, Any], features: dict[str, dict]) -> dict[str, np.ndarray]:
    """A policy batch's observations as dataset frames' arrays, one row per env (images as uint8
    HWC), converted once for the whole batch."""
    frames = {}
    for key, feature in features.items():
        if not key.startswith(OBSERVATION_PREFIX):
            continue
        value = observation[key]
        if feature["dtype"] == "image":
            # Exact: LeRobot made these floats as uint8 / 255.
            value = value.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        else:
            value = value.to(torch.float32).reshape(len(value), *feature["shape"])
        frames[key] = value.cpu().numpy()
    return frames
