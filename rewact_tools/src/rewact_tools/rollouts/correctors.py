"""The scripted correctors by LeRobot env type, for simulated corrections (`corrections`).

A module of its own so that the generic correction logic does not import any env's corrector: the
correctors import `corrections` (for `CorrectorError`), and only this registry imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewact_tools.rollouts.corrections import Corrector


def _pusht_corrector(env: Any, seed: int) -> Corrector:
    from rewact_tools.pusht.corrector import PushTCorrector  # needs gym-pusht: only when asked for

    return PushTCorrector(env, seed)


CORRECTORS: dict[str, Callable[[Any, int], Corrector]] = {"pusht": _pusht_corrector}
"""Scripted correctors by LeRobot env type: called with the env's simulator and the episode seed."""


def corrector_factory(env_type: str) -> Callable[[Any, int], Corrector]:
    if env_type not in CORRECTORS:
        raise ValueError(
            f"simulated corrections need a scripted corrector for the env; env type {env_type!r} has "
            f"none (available: {sorted(CORRECTORS)})"
        )
    return CORRECTORS[env_type]
