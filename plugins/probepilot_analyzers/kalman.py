"""A two-dimensional constant-velocity Kalman filter for the drift velocity, with a change
detector.

Thermal drift changes slowly, so the state is the lateral velocity ``(vx, vy)`` and its process
noise a random walk (``q`` (m/s)^2 per second). Each overlapping pair of frames measures the
mean velocity between them with a covariance from the registration. A measurement too far from
the prediction for its covariance (normalised innovation squared above ``threshold``, a
chi-square with two degrees of freedom) is a *change*: piezo creep after a move, a temperature
step, a bumped cryostat. The filter then restarts from that measurement instead of averaging it
away, and reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probepilot.model import FloatArray


@dataclass(frozen=True, slots=True)
class Update:
    """The filter's answer to one measurement."""

    velocity: FloatArray  # (2,) m/s, filtered
    covariance: FloatArray  # (2, 2) (m/s)^2
    nis: float  # normalised innovation squared of the measurement (0 for the first)
    changed: bool  # the measurement broke with the history: the filter restarted from it


class DriftFilter:
    """Velocity and covariance, updated measurement by measurement (times in seconds)."""

    def __init__(self, q: float, threshold: float) -> None:
        self.q = q
        self.threshold = threshold
        self.velocity: FloatArray | None = None
        self.covariance: FloatArray = np.zeros((2, 2))
        self.time = 0.0

    def update(self, time: float, measured: FloatArray, noise: FloatArray) -> Update:
        """Fold in the velocity ``measured`` at ``time`` with covariance ``noise``."""
        z = np.asarray(measured, dtype=np.float64)
        r = np.asarray(noise, dtype=np.float64)
        if self.velocity is None:
            return self._restart(time, z, r, 0.0, changed=False)
        elapsed = max(time - self.time, 0.0)
        p = self.covariance + self.q * elapsed * np.eye(2)
        innovation = z - self.velocity
        s = p + r
        try:
            s_inv = np.linalg.inv(s)
        except np.linalg.LinAlgError:
            return self._restart(time, z, r, math.inf, changed=True)
        nis = float(innovation @ s_inv @ innovation)
        if not math.isfinite(nis) or nis > self.threshold:
            return self._restart(time, z, r, nis, changed=True)
        gain = p @ s_inv
        self.velocity = self.velocity + gain @ innovation
        self.covariance = (np.eye(2) - gain) @ p
        self.time = time
        return Update(self.velocity.copy(), self.covariance.copy(), nis, changed=False)

    def _restart(
        self, time: float, z: FloatArray, r: FloatArray, nis: float, *, changed: bool
    ) -> Update:
        self.velocity = z.copy()
        self.covariance = r.copy()
        self.time = time
        return Update(z.copy(), r.copy(), nis, changed)
