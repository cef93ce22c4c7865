"""The two models of a rollout: the policy that acts and, optionally, a RewACT reward model that
watches. Each comes with the pre-processor saved in its checkpoint, so it sees observations
normalised exactly as in training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class PolicyRunner:
    """A LeRobot policy (any type) with its pre- and post-processor: policy batch in, actions out."""

    policy: Any
    preprocessor: Callable[[dict[str, Any]], dict[str, Any]]
    postprocessor: Callable[[torch.Tensor], torch.Tensor]

    @property
    def config(self) -> Any:
        return self.policy.config

    def reset(self) -> None:
        """Empty the policy's action queue (and any other per-episode state)."""
        self.policy.reset()

    def act(self, observation: dict[str, Any]) -> torch.Tensor:
        """One action per env, `[B, action_dim]`, in the env's units (before the env's post-processor)."""
        with torch.inference_mode():
            action = self.policy.select_action(self.preprocessor(dict(observation)))
        return self.postprocessor(action)


@dataclass
class ProgressModel:
    """A RewACT checkpoint's value head: predicted task progress of each observation of a batch."""

    policy: Any
    preprocessor: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def config(self) -> Any:
        return self.policy.config

    def __call__(self, observation: dict[str, Any]) -> np.ndarray:
        with torch.inference_mode():
            values = self.policy.predict_value(self.preprocessor(dict(observation)))
        return values.float().cpu().numpy()
