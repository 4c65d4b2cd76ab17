"""The random policy: the baseline any conditioning policy has to beat.

While the tip is good (or not yet judged) it keeps imaging; otherwise it picks one action of the
default conditioning set uniformly at random, as the calibration of the simulator assumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from probepilot.model import (
    DEFAULT_CONDITIONING_ACTIONS,
    Action,
    KeepImaging,
    Observation,
    Outcome,
    TipState,
)
from probepilot.options import Doc


@dataclass(frozen=True)
class RandomOptions:
    """The ``[policies.random]`` table."""

    seed: Annotated[int | None, Doc("seed of the random choices (default: fresh each run)")] = None


class RandomPolicy:
    """Uniform choice over :data:`~probepilot.model.DEFAULT_CONDITIONING_ACTIONS`."""

    name = "random"

    def __init__(self, options: RandomOptions | None = None) -> None:
        options = options or RandomOptions()
        self._rng = np.random.default_rng(options.seed)
        self.actions = DEFAULT_CONDITIONING_ACTIONS

    def decide(self, observation: Observation) -> Action:
        if observation.tip_state in (TipState.GOOD, TipState.UNKNOWN):
            return KeepImaging()
        return self.actions[int(self._rng.integers(len(self.actions)))]

    def feedback(self, outcome: Outcome) -> None:
        """The baseline does not learn."""
