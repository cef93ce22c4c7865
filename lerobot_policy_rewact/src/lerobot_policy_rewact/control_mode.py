"""Who drove each frame of a training batch: a human (or scripted corrector) or the policy itself.

Two sources say it. robocandywrapper-style plugin keys (`control_mode_human`,
`control_mode_autonomous`) and LeRobot's own `intervention` feature, which `lerobot-rollout
--strategy.type=dagger` writes on every frame (True where a corrector drove, False where the policy
did). RewACT's action mask and ACTvantage's human-frame rule both read them through
`control_flags`, so the two policies agree on what counts as human control.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

CONTROL_MODE_HUMAN = "control_mode_human"
CONTROL_MODE_AUTONOMOUS = "control_mode_autonomous"
INTERVENTION = "intervention"
# True where `intervention` is only a fill: a frame of a dataset that does not record it, in a mix
# with one that does (LeRobot's `_is_pad` convention). Such frames are unlabelled, not autonomous.
INTERVENTION_PAD = f"{INTERVENTION}_is_pad"
# Every batch key `control_flags` reads; processors must carry them through to the policy.
CONTROL_KEYS = (CONTROL_MODE_AUTONOMOUS, CONTROL_MODE_HUMAN, INTERVENTION, INTERVENTION_PAD)


def _flag(batch: dict[str, Any], key: str, batch_size: int) -> Tensor | None:
    """`batch[key]` as one bool per sample ([B] or [B, 1], bool or 0/1 numbers); None when absent."""
    if key not in batch:
        return None
    value = torch.as_tensor(batch[key])
    if value.numel() != batch_size:
        raise ValueError(
            f"batch[{key!r}] has shape {tuple(value.shape)}; expected one flag per sample "
            f"([{batch_size}] or [{batch_size}, 1])."
        )
    value = value.reshape(batch_size)
    if value.dtype == torch.bool:
        return value
    invalid = value[(value != 0) & (value != 1)]
    if invalid.numel():
        raise ValueError(f"batch[{key!r}] must hold booleans or 0/1, got {invalid[0].item()}.")
    return value != 0


def _either(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    if first is None or second is None:
        return first if second is None else second
    return first | second.to(first.device)


def control_flags(batch: dict[str, Any], batch_size: int) -> tuple[Tensor | None, Tensor | None]:
    """`(human, autonomous)`: [B] bool flags, each None when the batch says nothing about it.

    A frame is human when `control_mode_human` or `intervention` is true, autonomous when
    `control_mode_autonomous` is true or `intervention` is false; `intervention_is_pad` marks frames
    whose `intervention` is a fill, which it says nothing about. Frames no flag covers are
    unlabelled. A frame flagged both ways is a contradiction between the sources and raises.
    """
    intervention = _flag(batch, INTERVENTION, batch_size)
    from_intervention = (None, None)
    if intervention is not None:
        padded = _flag(batch, INTERVENTION_PAD, batch_size)
        recorded = torch.ones_like(intervention) if padded is None else ~padded.to(intervention.device)
        from_intervention = (intervention & recorded, ~intervention & recorded)
    human = _either(_flag(batch, CONTROL_MODE_HUMAN, batch_size), from_intervention[0])
    autonomous = _either(_flag(batch, CONTROL_MODE_AUTONOMOUS, batch_size), from_intervention[1])
    if human is not None and autonomous is not None:
        both = human & autonomous.to(human.device)
        if both.any():
            sample = int(both.nonzero()[0, 0])
            shown = {
                key: torch.as_tensor(batch[key]).reshape(-1)[sample].item()
                for key in CONTROL_KEYS
                if key in batch
            }
            raise ValueError(
                f"Batch sample {sample} is marked both human-controlled and autonomous ({shown}); "
                f"{CONTROL_MODE_HUMAN!r}/{CONTROL_MODE_AUTONOMOUS!r} and {INTERVENTION!r} disagree."
            )
    return human, autonomous
