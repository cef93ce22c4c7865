"""What to generate: episode counts per quality setting, seed, step limit, noise scale."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rewact_tools.pusht.quality import HAND_SPEED, SETTINGS

_MIX_ITEM = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(\d+)\s*$")


def parse_mix(text: str) -> dict[str, int]:
    """Parse `"clean=40,noisy=20,..."` into episode counts per setting, in the order given."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        match = _MIX_ITEM.match(item)
        if match is None:
            raise ValueError(
                f"Bad --mix item {item.strip()!r} in {text!r}: expected SETTING=COUNT, e.g. clean=40"
            )
        name, count = match.group(1), int(match.group(2))
        if name not in SETTINGS:
            raise ValueError(
                f"Unknown quality setting {name!r} in --mix {text!r}; known: {', '.join(SETTINGS)}"
            )
        if name in counts:
            raise ValueError(f"Quality setting {name!r} appears twice in --mix {text!r}")
        counts[name] = count
    if sum(counts.values()) == 0:
        raise ValueError(f"--mix {text!r} asks for no episodes")
    return counts


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that determines a generated dataset; the same config gives the same data."""

    mix: Mapping[str, int]
    seed: int = 0
    max_steps: int = 300
    noise_scale: float = 1.0
    hand_speed: float = HAND_SPEED
    """Largest move (px) of the commanded position per step (0: the expert's raw commands)."""

    def __post_init__(self):
        unknown = [name for name in self.mix if name not in SETTINGS]
        if unknown:
            raise ValueError(f"Unknown quality setting(s) {unknown}; known: {', '.join(SETTINGS)}")
        if any(count < 0 for count in self.mix.values()) or sum(self.mix.values()) == 0:
            raise ValueError(
                f"Episode counts must be non-negative with at least one episode, got {dict(self.mix)}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if not self.noise_scale >= 0.0:
            raise ValueError(f"noise_scale must be non-negative, got {self.noise_scale}")
        if not self.hand_speed >= 0.0:
            raise ValueError(f"hand_speed must be non-negative (0: unlimited), got {self.hand_speed}")

    def episode_plan(self) -> list[tuple[str, int]]:
        """(setting, seed) per episode: settings shuffled so any index range mixes them."""
        sequence = np.random.SeedSequence(self.seed)
        settings = [name for name, count in self.mix.items() for _ in range(count)]
        order = np.random.default_rng(sequence.spawn(1)[0]).permutation(len(settings))
        seeds = sequence.generate_state(len(settings))
        return [(settings[position], int(seed)) for position, seed in zip(order, seeds, strict=True)]
