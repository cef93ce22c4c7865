"""One gym-pusht episode driven by a (possibly degraded) scripted expert, recorded frame by frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
import gymnasium as gym
import numpy as np

from rewact_tools.pusht.expert import PlanningError, PushTExpert
from rewact_tools.pusht.quality import HAND_SPEED, Demonstrator, QualitySetting

IMAGE_SIZE = 96
"""Side of `observation.image`: gym-pusht's default observation size, which is also what
`lerobot-eval --env.type=pusht` feeds a policy (LeRobot's pusht config does not pass its
observation_height/width through to the env)."""


def make_env(max_steps: int) -> gym.Env:
    """The gym-pusht env the dataset is recorded in: keypoint observations, 96x96 renders, a step cap."""
    return gym.make(
        "gym_pusht/PushT-v0",
        obs_type="environment_state_agent_pos",
        render_mode="rgb_array",
        observation_width=IMAGE_SIZE,
        observation_height=IMAGE_SIZE,
        max_episode_steps=max_steps,
    )


def render_observation(env: gym.Env) -> np.ndarray:
    """The 96x96 RGB image gym-pusht returns as `pixels` observation (no action marker drawn).

    `env.render()` draws the last action as a cross and uses the visualisation size, so it would not
    match what a policy sees in evaluation; the observation renderer is the env's `_render`.
    """
    return env.unwrapped._render(visualize=False)


@dataclass
class EpisodeResult:
    """A recorded episode: one dict per frame in the dataset's schema (without `task`), and its outcome."""

    setting: str
    seed: int
    frames: list[dict] = field(default_factory=list)
    length: int = 0
    success: bool = False
    final_coverage: float = 0.0
    max_coverage: float = 0.0
    planning_failure: str | None = None
    """The expert's `PlanningError` message when it ended the episode early (a failure), else None."""


def rollout_episode(
    env: gym.Env,
    setting: QualitySetting,
    seed: int,
    max_steps: int,
    noise_scale: float = 1.0,
    render: bool = True,
    hand_speed: float = HAND_SPEED,
) -> EpisodeResult:
    """Run one episode until success, `max_steps` or the demonstrator quits; all randomness derives from `seed`.

    Frame t holds the observation before step t, the action taken, and the reward, done and success
    flags that step returned (the `lerobot/pusht` convention); the last frame has `next.done`.
    When the expert cannot plan a next step (`PlanningError`), the episode ends as a failure at the
    last recorded frame, with the reason in `planning_failure`, so one lost block costs one episode.
    Without `render` the frames carry no image (for tests and profiling of the expert alone).
    `hand_speed` caps how far (px) the commanded position moves per step (0: no cap).
    """
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    expert = PushTExpert(env.unwrapped, rng, goal_pose=setting.goal_pose(env.unwrapped.goal_pose))
    demonstrator = Demonstrator(expert, setting, rng, noise_scale, hand_speed)
    result = EpisodeResult(setting=setting.name, seed=seed)
    for step in range(max_steps):
        frame = {
            "observation.state": np.asarray(observation["agent_pos"], dtype=np.float32),
            "observation.environment_state": np.asarray(observation["environment_state"], dtype=np.float32),
        }
        if render:
            frame["observation.image"] = render_observation(env)
        try:
            action = demonstrator.act().astype(np.float32)
        except PlanningError as error:
            if not result.frames:  # gym-pusht starts the block >= 100 px from the walls, in reach
                raise RuntimeError(
                    f"The expert cannot plan the first step of the episode with seed {seed}"
                ) from error
            result.frames[-1]["next.done"] = np.array([True])
            result.planning_failure = str(error)
            break
        observation, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated or step == max_steps - 1 or demonstrator.finished)
        frame["action"] = action
        frame["next.reward"] = np.array([reward], dtype=np.float32)
        frame["next.done"] = np.array([done])
        frame["next.success"] = np.array([bool(info["is_success"])])
        result.frames.append(frame)
        result.length += 1
        result.final_coverage = float(info["coverage"])
        result.max_coverage = max(result.max_coverage, result.final_coverage)
        if done:
            result.success = bool(info["is_success"])
            break
    return result
