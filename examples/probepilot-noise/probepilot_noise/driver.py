"""The noise driver: a stand-in instrument whose frames are Gaussian noise."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np

from probepilot.contracts import Capability, DriverBase, ProgressCallback
from probepilot.errors import LimitError, NotConnectedError
from probepilot.model import (
    Channel,
    Frame,
    InstrumentLimits,
    LineProgress,
    ScanSettings,
    TipPosition,
)
from probepilot.options import Doc, Quantity, Range


@dataclass(frozen=True)
class NoiseOptions:
    """The ``[drivers.noise]`` table."""

    seed: Annotated[int, Doc("seed of the noise")] = 0
    amplitude: Annotated[
        float, Quantity("m"), Range(0, 1e-6), Doc("standard deviation of the Z noise")
    ] = 50e-12
    piezo_range: Annotated[
        float, Quantity("m"), Range(1e-9, 1e-3), Doc("lateral piezo range (square)")
    ] = 1e-6
    time_scale: Annotated[
        float,
        Range(0, 1e6),
        Doc("simulated seconds per real second; 0 scans as fast as possible"),
    ] = 0.0


class NoiseDriver(DriverBase):
    """Implements the mandatory driver contract plus scanning; the rest is NotSupportedError."""

    name = "noise"
    supported: ClassVar[frozenset[Capability]] = frozenset({Capability.SCAN, Capability.TIP_MOVE})

    def __init__(self, options: NoiseOptions | None = None) -> None:
        self.options = options or NoiseOptions()
        self._rng = np.random.default_rng(self.options.seed)
        self._connected = False
        self._bias = 1.0
        self._setpoint = 100e-12
        self._feedback = True
        self._xy = (0.0, 0.0)
        self._z = 0.0
        r = self.options.piezo_range
        self._limits = InstrumentLimits(piezo_range=(r, r, 1e-6), bias_range=(-10.0, 10.0))

    def _check(self) -> None:
        if not self._connected:
            raise NotConnectedError("noise driver: not connected", hint="call connect() first")

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def limits(self) -> InstrumentLimits:
        self._check()
        return self._limits

    async def get_bias(self) -> float:
        self._check()
        return self._bias

    async def set_bias(self, voltage: float) -> None:
        self._check()
        low, high = self._limits.bias_range
        if not low <= voltage <= high:
            raise LimitError(f"noise driver: bias {voltage} V outside [{low}, {high}] V")
        self._bias = voltage

    async def get_setpoint(self) -> float:
        self._check()
        return self._setpoint

    async def set_setpoint(self, current: float) -> None:
        self._check()
        if not 0 < current <= self._limits.max_setpoint:
            raise LimitError(f"noise driver: setpoint {current} A out of range")
        self._setpoint = current

    async def get_feedback(self) -> bool:
        self._check()
        return self._feedback

    async def set_feedback(self, on: bool) -> None:
        self._check()
        self._feedback = on

    async def withdraw(self) -> None:
        self._check()
        self._feedback = False
        self._z = self._limits.piezo_range[2] / 2

    async def get_tip_position(self) -> TipPosition:
        self._check()
        return TipPosition(self._xy[0], self._xy[1], self._z)

    async def set_tip_position(self, x: float, y: float) -> None:
        self._check()
        if not self._inside(x, y):
            raise LimitError(f"noise driver: ({x}, {y}) m is outside the piezo range")
        self._xy = (x, y)

    def _inside(self, x: float, y: float) -> bool:
        half = self.options.piezo_range / 2
        return abs(x) <= half and abs(y) <= half  # False for NaN too

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        self._check()
        area = settings.area
        if area.pixels < 1 or area.lines < 1:
            raise LimitError("noise driver: a frame needs at least one pixel and one line")
        if not all(self._inside(x, y) for x, y in area.corners()):
            raise LimitError("noise driver: the frame reaches outside the piezo range")
        if not 0 < settings.line_time < float("inf"):
            raise LimitError(f"noise driver: line time {settings.line_time} s is not positive")
        shape = (area.lines, area.pixels)
        z_fwd = np.full(shape, np.nan)
        z_bwd = np.full(shape, np.nan)
        started = time.time()
        for row in range(area.lines):
            z_fwd[row] = self._rng.normal(0.0, self.options.amplitude, area.pixels)
            z_bwd[row] = self._rng.normal(0.0, self.options.amplitude, area.pixels)
            if self.options.time_scale > 0:
                await asyncio.sleep(2 * settings.line_time / self.options.time_scale)
            else:
                await asyncio.sleep(0)  # stay cancellable between lines
            if progress is not None:
                progress(LineProgress(row, area.lines, {"Z": z_fwd[row]}, {"Z": z_bwd[row]}))
        return Frame(
            channels={"Z": Channel("Z", "m", z_fwd, z_bwd)},
            area=area,
            direction=settings.direction,
            bias=self._bias,
            setpoint=self._setpoint,
            line_time=settings.line_time,
            started_at=started,
            finished_at=time.time(),
            lines_done=area.lines,
            source=self.name,
        )
