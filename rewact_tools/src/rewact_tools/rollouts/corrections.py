"""Simulated corrections: a scripted corrector takes over from the policy for a few steps.

This is what a person does with `lerobot-rollout --strategy.type=dagger`, played by a script so that
rounds of learning from experience can run in simulation: the corrector takes over when progress
stalls (no rise of more than `stall_epsilon` above the best so far for `stall_steps` steps; the
progress the reward model predicts or, with `stall_signal="env"`, the env's own) or, independently, with probability `random_rate` at each policy step; it
drives for `steps` steps, then hands back. Frames it drove are recorded with `intervention` True and
its action. When control comes back, the policy's action queue must be emptied (its queued actions
were planned before the correction), which `policy_reset_due` tells the rollout loop.

Correctors exist per env type (`rewact_tools.rollouts.correctors`); for PushT it is the built-in
dataset's scripted expert (`rewact_tools.pusht.corrector`). They import this module, never the
other way round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

STALL_SIGNALS = ("model", "env")
_TRIGGER_STREAM = 1
"""Second seed word of the random takeover draws: independent of the corrector's own randomness."""


class CorrectorError(RuntimeError):
    """The corrector cannot act in the current state (control goes back to the policy)."""


class Corrector(Protocol):
    def take_over(self) -> None:
        """Start a correction from the current state."""

    def act(self) -> np.ndarray:
        """The next action (raises `CorrectorError` when it has none)."""


@dataclass(frozen=True)
class CorrectionSettings:
    """When the corrector takes over, and for how long."""

    stall_steps: int | None = None
    """Take over when progress has not risen for this many steps (None: never)."""
    stall_signal: str = "model"
    """Whose progress: the reward model's prediction (`model`) or the env's own (`env`, ground truth
    in a simulation that reports it, `rollouts.env.ENV_PROGRESS`; before the first step it is 0)."""
    stall_epsilon: float = 0.01
    """A rise counts only when progress exceeds the best so far by more than this."""
    random_rate: float = 0.0
    """Probability of taking over at each step the policy drives."""
    steps: int = 20
    """Steps the corrector drives once it takes over."""
    max_takeovers: int | None = None
    """Takeovers allowed per episode (None: no limit)."""

    def __post_init__(self):
        if self.stall_steps is not None and self.stall_steps < 1:
            raise ValueError(f"--correct-stall must be at least 1 step, got {self.stall_steps}")
        if self.stall_signal not in STALL_SIGNALS:
            raise ValueError(f"--stall-signal must be one of {STALL_SIGNALS}, got {self.stall_signal!r}")
        if not self.stall_epsilon >= 0.0:
            raise ValueError(f"--stall-epsilon must be non-negative, got {self.stall_epsilon}")
        if not 0.0 <= self.random_rate <= 1.0:
            raise ValueError(f"--correct-random must be a probability in [0, 1], got {self.random_rate}")
        if self.steps < 1:
            raise ValueError(f"--correct-steps must be at least 1, got {self.steps}")
        if self.max_takeovers is not None and self.max_takeovers < 1:
            raise ValueError(
                f"max_takeovers must be at least 1 (or None: no limit), got {self.max_takeovers}"
            )

    @property
    def enabled(self) -> bool:
        return self.stall_steps is not None or self.random_rate > 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProgressStall:
    """Steps since progress last rose more than `epsilon` above its best (the progress of that rise)."""

    def __init__(self, epsilon: float):
        self.epsilon = epsilon
        self.best: float | None = None
        self.stalled = 0

    def update(self, progress: float) -> int:
        """Count one step with this progress; returns the steps without a rise, this one included."""
        if self.best is None or progress > self.best + self.epsilon:
            self.best = progress
            self.stalled = 0
        else:
            self.stalled += 1
        return self.stalled

    def restart(self) -> None:
        """Give the policy a full `stall_steps` again (after a correction)."""
        self.stalled = 0


class EpisodeCorrections:
    """Who drives one env's episode, step by step: the policy or the corrector."""

    def __init__(self, settings: CorrectionSettings, corrector: Corrector, seed: int):
        self.settings = settings
        self.corrector = corrector
        self.rng = np.random.default_rng([seed, _TRIGGER_STREAM])
        self.stall = ProgressStall(settings.stall_epsilon)
        self.steps_left = 0
        self.policy_reset_due = False
        self.takeovers = 0

    def step(self, progress: float | None) -> np.ndarray | None:
        """The corrector's action when it drives this step, else None (the policy drives).

        `progress` is the stall signal's progress at the current observation (None without one).
        """
        stalled = self.stall.update(progress) if progress is not None else 0
        limit = self.settings.max_takeovers
        if self.steps_left == 0 and (limit is None or self.takeovers < limit):
            triggered = self.settings.stall_steps is not None and stalled >= self.settings.stall_steps
            if self.settings.random_rate > 0.0 and self.rng.random() < self.settings.random_rate:
                triggered = True
            if triggered:
                self.corrector.take_over()
                self.steps_left = self.settings.steps
                self.takeovers += 1
        if self.steps_left == 0:
            return None
        try:
            action = self.corrector.act()
        except CorrectorError:
            self._hand_back()
            return None
        self.steps_left -= 1
        if self.steps_left == 0:
            self._hand_back()
        return action

    def _hand_back(self) -> None:
        self.steps_left = 0
        self.stall.restart()
        self.policy_reset_due = True
