"""Demonstration quality settings: the clean expert and the ways it is degraded.

Mixed-quality data needs genuine failures and slow, wandering successes, not just relabelled
clean episodes, so each degraded setting changes what the agent does:

- `noisy`: temporally correlated noise on every commanded position (shaky hands; the closed-loop
  expert keeps correcting, so episodes are slower and some run out of time);
- `detour`: now and then the agent leaves for a random point in the arena and comes back, often
  knocking the block on the way;
- `giveup`: after a random time the agent stops pushing and wanders about, and a while later the
  demonstrator stops recording: the episode ends in failure unless the block was already in place;
- `wronggoal`: a competent demonstrator who misremembers the goal: the expert pushes the T, as
  skilfully as `clean`, to one fixed wrong pose and stops recording when it is there. Its pushes are
  as smooth as the clean ones and just as consistent, so behaviour cloning cannot tell them apart
  from the state and averages the two goals: the systematic failure that noise never is.

Every demonstrator moves its hand (the commanded position) at most `hand_speed` px per step, as a
person's mouse does: the expert's raw commands jump far ahead of the agent and from one push to the
next, and behaviour cloning cannot imitate commands that jump (benchmarks/README.md, the oracle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rewact_tools.pusht.expert import ARENA_SIZE, WORKSPACE_MARGIN, PushTExpert

HAND_SPEED = 40.0
"""Default cap (px per step) on the commanded position's move: smooth enough to imitate
(benchmarks/README.md, the oracle) while the clean expert still succeeds in ~80 steps."""


WRONG_GOAL_OFFSET = (0.0, 0.0, float(np.pi / 2))
"""`wronggoal`'s goal: the T in the right place, a quarter turn off (final coverage ~0.3)."""
WRONG_GOAL_DONE_PX = 8.0
"""Mean keypoint distance (px) at which `wronggoal` stops: about where the clean expert succeeds."""


@dataclass(frozen=True)
class QualitySetting:
    """How one episode's demonstrator deviates from the clean expert."""

    name: str
    action_noise: float = 0.0
    """Standard deviation (px) of the noise added to every command, before `--noise-scale`."""
    noise_correlation: float = 0.0
    """AR(1) coefficient of that noise from one step to the next (0: white noise)."""
    detour_rate: float = 0.0
    """Per-step probability of starting a detour to a random point."""
    detour_steps: tuple[int, int] = (0, 0)
    """Inclusive range of a detour's length in steps."""
    give_up_after: tuple[int, int] | None = None
    """Inclusive range of the step at which the agent stops pushing (the clean expert needs ~50)."""
    wander_step: float = 0.0
    """Largest move (px) per step of an agent wandering after giving up (0: it stays still)."""
    recorded_after_give_up: tuple[int, int] | None = None
    """Inclusive range of the steps still recorded after giving up (None: until the step limit)."""
    goal_offset: tuple[float, float, float] | None = None
    """(dx px, dy px, d angle rad) added to the env's goal pose: the pose the expert pushes to."""
    done_pose_error: float = 0.0
    """With `goal_offset`: the demonstrator stops recording once the block is within this mean
    keypoint distance (px) of its goal, as the clean expert's episode ends at success."""

    def goal_pose(self, env_goal: np.ndarray) -> np.ndarray | None:
        """The pose this setting's expert pushes to (None: the env's own goal)."""
        if self.goal_offset is None:
            return None
        return np.asarray(env_goal, dtype=float) + np.asarray(self.goal_offset, dtype=float)

    def as_dict(self) -> dict:
        return asdict(self)


SETTINGS: dict[str, QualitySetting] = {
    setting.name: setting
    for setting in (
        QualitySetting("clean"),
        QualitySetting("noisy", action_noise=25.0, noise_correlation=0.7),
        QualitySetting("detour", detour_rate=0.04, detour_steps=(4, 12)),
        QualitySetting("giveup", give_up_after=(10, 50), wander_step=25.0, recorded_after_give_up=(20, 60)),
        QualitySetting("wronggoal", goal_offset=WRONG_GOAL_OFFSET, done_pose_error=WRONG_GOAL_DONE_PX),
    )
}


class Demonstrator:
    """The clean expert, degraded as one `QualitySetting` says, for one episode.

    All randomness comes from `rng`, so an episode is reproducible from its seed.
    """

    def __init__(
        self,
        expert: PushTExpert,
        setting: QualitySetting,
        rng: np.random.Generator,
        noise_scale: float = 1.0,
        hand_speed: float = HAND_SPEED,
    ):
        if not hand_speed >= 0.0:
            raise ValueError(f"hand_speed must be non-negative (0: unlimited), got {hand_speed}")
        self.expert = expert
        self.hand_speed = hand_speed
        self._hand: np.ndarray | None = None
        self.setting = setting
        self.rng = rng
        self._noise_std = setting.action_noise * noise_scale
        self._noise = np.zeros(2)
        self._detour_left = 0
        self._detour_target = np.zeros(2)
        self._give_up_step: int | None = None
        self._last_step: int | None = None
        if setting.give_up_after is not None:
            self._give_up_step = _draw(rng, setting.give_up_after)
            if setting.recorded_after_give_up is not None:
                self._last_step = self._give_up_step + _draw(rng, setting.recorded_after_give_up) - 1
        self._step = 0
        self._hold: np.ndarray | None = None

    @property
    def finished(self) -> bool:
        """Whether the demonstrator has ended the episode: it gave up and stopped recording, or it
        pushed the block to its (wrong) goal."""
        if self.setting.goal_offset is not None and self._step > 0:
            return self.expert.pose_error() < self.setting.done_pose_error
        return self._last_step is not None and self._step > self._last_step

    def act(self) -> np.ndarray:
        """The next commanded agent position, clipped to the arena."""
        if self._give_up_step is not None and self._step >= self._give_up_step:
            command = self._wander()
        elif self._detour_left > 0 or self.rng.random() < self.setting.detour_rate:
            command = self._detour()
        else:
            command = self.expert.act()
        self._step += 1
        return np.clip(self._move_hand(command) + self._next_noise(), 0.0, ARENA_SIZE)

    def _move_hand(self, command: np.ndarray) -> np.ndarray:
        """The hand's next position: `hand_speed` px at most from its last one towards `command`.

        The hand starts where the agent is, so the first command of an episode is near the agent too.
        """
        if self.hand_speed == 0.0:
            return command
        hand = np.asarray(self.expert.env.agent.position, dtype=float) if self._hand is None else self._hand
        move = command - hand
        distance = float(np.linalg.norm(move))
        if distance > self.hand_speed:
            move *= self.hand_speed / distance
        self._hand = hand + move
        return self._hand

    def _next_noise(self) -> np.ndarray:
        if self._noise_std == 0.0:
            return self._noise
        rho = self.setting.noise_correlation
        self._noise = rho * self._noise + np.sqrt(1.0 - rho**2) * self.rng.normal(
            0.0, self._noise_std, size=2
        )
        return self._noise

    def _detour(self) -> np.ndarray:
        if self._detour_left == 0:
            self._detour_left = _draw(self.rng, self.setting.detour_steps)
            self._detour_target = self.rng.uniform(WORKSPACE_MARGIN, ARENA_SIZE - WORKSPACE_MARGIN, size=2)
        self._detour_left -= 1
        if self._detour_left == 0:
            self.expert.forget_plan()
        return self._detour_target

    def _wander(self) -> np.ndarray:
        agent = np.asarray(self.expert.env.agent.position)
        if self._hold is None:
            self._hold = agent
        if self.setting.wander_step > 0.0:
            step = self.rng.uniform(-self.setting.wander_step, self.setting.wander_step, size=2)
            self._hold = np.clip(self._hold + step, WORKSPACE_MARGIN, ARENA_SIZE - WORKSPACE_MARGIN)
        return self._hold


def _draw(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """A uniform integer in the inclusive range `bounds`."""
    return int(rng.integers(bounds[0], bounds[1] + 1))
