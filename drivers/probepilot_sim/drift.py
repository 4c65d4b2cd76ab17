"""Thermal drift and piezo creep: where the sample really is relative to the scanner.

The displacement ``d(t)`` (x, y, z in metres) of the sample relative to the scanner is

* a constant thermal drift velocity minus the compensation velocity the driver was told to add,
  integrated piecewise so changing the compensation never makes the position jump;
* a slow random walk (Brownian, ``walk`` metres rms after one second);
* piezo creep: after a move of ``delta`` the piezo lags ``creep * delta`` behind the command and
  catches up exponentially with time constant ``tau``.

A feature at surface position ``s`` then shows up at scanner position ``s + d(t)``, so a frame
scanned while ``d`` changes is sheared and stretched, and consecutive frames shift by
``v * t``. Time is the simulator's clock (s); the walk is drawn from its own generator, only
forwards in time, so the same commands give the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probepilot.model import FloatArray


@dataclass(frozen=True, slots=True)
class CreepEvent:
    time: float
    delta: tuple[float, float, float]
    fraction: float
    tau: float


class Drift:
    """Displacement of the sample relative to the scanner as a function of simulator time."""

    def __init__(
        self,
        velocity: tuple[float, float, float],
        walk: float,
        rng: np.random.Generator,
    ) -> None:
        self.velocity = np.asarray(velocity, dtype=np.float64)
        self.compensation = np.zeros(3)
        self.walk = walk
        self._rng = rng
        self._base_time = 0.0
        self._base = np.zeros(3)  # deterministic part at _base_time
        self._walk_time = 0.0
        self._walk_value = np.zeros(3)
        self._creep: list[CreepEvent] = []
        self.version = 0  # bumped whenever the deterministic part changes (for caches)

    # ---- changes

    def set_compensation(self, now: float, velocity: tuple[float, float, float]) -> None:
        self._base = self.deterministic(np.array([now]))[0]
        self._base_time = now
        self.compensation = np.asarray(velocity, dtype=np.float64)
        self.version += 1

    def add_creep(
        self, now: float, delta: tuple[float, float, float], fraction: float, tau: float
    ) -> None:
        """A move of ``delta`` (m) at ``now`` starts creeping."""
        if fraction <= 0 or tau <= 0 or not any(delta):
            return
        # Forget events that have decayed below a picometre-scale remnant.
        self._creep = [
            e
            for e in self._creep
            if e.fraction * max(map(abs, e.delta)) * math.exp(-(now - e.time) / e.tau) > 1e-13
        ]
        self._creep.append(CreepEvent(now, delta, fraction, tau))
        self.version += 1

    # ---- evaluation

    def deterministic(self, times: FloatArray) -> FloatArray:
        """Drift velocity and creep part of the displacement (n, 3) at ``times``."""
        eff = self.velocity - self.compensation
        out = self._base[None, :] + (times - self._base_time)[:, None] * eff[None, :]
        for e in self._creep:
            dt = times - e.time
            # Nothing before the move; then the lag, decaying.
            lag = np.where(dt >= 0, e.fraction * np.exp(-np.maximum(dt, 0.0) / e.tau), 0.0)
            out += lag[:, None] * np.asarray(e.delta)[None, :]
        return out

    def walk_path(self, times: FloatArray) -> FloatArray:
        """Random-walk values at increasing ``times`` (>= the last time drawn); advances."""
        steps = np.diff(np.concatenate([[self._walk_time], times]))
        steps = np.maximum(steps, 0.0)
        increments = self._rng.standard_normal((times.size, 3)) * (
            self.walk * np.sqrt(steps)[:, None]
        )
        path = self._walk_value[None, :] + np.cumsum(increments, axis=0)
        if times.size:
            self._walk_time = float(times[-1])
            self._walk_value = path[-1].copy()
        return path

    def rewind_walk(self, time: float, value: FloatArray) -> None:
        """Reset the walk to ``value`` at ``time`` (a scan was aborted before its planned end)."""
        self._walk_time = time
        self._walk_value = np.asarray(value, dtype=np.float64).copy()
        self.version += 1

    def peek(self, time: float) -> FloatArray:
        """Displacement (3,) at ``time`` without drawing: the walk as last drawn.

        Queries (tip position, where damage lands) use this, so asking never changes the random
        sequence: frames stay identical however often a dashboard polls.
        """
        out: FloatArray = self.deterministic(np.array([time]))[0] + self._walk_value
        return out
