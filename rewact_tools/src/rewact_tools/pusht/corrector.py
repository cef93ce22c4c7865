"""The scripted PushT expert as a corrector of a policy's gym-pusht episode (simulated DAgger).

It is driven as `rewact_tools.pusht.rollout` drives it for the built-in dataset: the clean
demonstrator's hand-speed-limited commands, and one episode's randomness from
`numpy.random.default_rng(episode seed)`, so a correction that starts at the first step and lasts the
whole episode records exactly the built-in dataset's clean episode for that seed. Each takeover
starts a fresh plan with the hand where the agent is, since the policy moved it in between.
"""

from __future__ import annotations

import numpy as np

from rewact_tools.pusht.expert import PlanningError, PushTExpert
from rewact_tools.pusht.quality import SETTINGS, Demonstrator
from rewact_tools.rollouts.corrections import CorrectorError


class PushTCorrector:
    """Corrector for one gym-pusht episode; `env` is the episode's `PushTEnv` (`env.unwrapped`),
    made after the env was reset for the episode."""

    def __init__(self, env, seed: int):
        self.rng = np.random.default_rng(seed)
        self.expert = PushTExpert(env, self.rng)
        self.demonstrator: Demonstrator | None = None

    def take_over(self) -> None:
        self.expert.forget_plan()
        self.demonstrator = Demonstrator(self.expert, SETTINGS["clean"], self.rng)

    def act(self) -> np.ndarray:
        if self.demonstrator is None:
            raise RuntimeError("PushTCorrector.act called before take_over")
        try:
            return self.demonstrator.act().astype(np.float32)
        except PlanningError as error:  # the block was pushed out of the expert's reach
            raise CorrectorError(str(error)) from error
