"""``SimDriver``: the simulated microscope behind the asynchronous driver contract.

Operations run one at a time (a lock), as on a single-controller instrument: to act during a
scan (an emergency withdraw, say), cancel the scan's task first; it stops at the next line.
Each operation advances the simulator's clock by what it would take on a real instrument and,
with ``time_scale`` > 0, also sleeps ``simulated seconds / time_scale`` real seconds (0, the
default, or a huge value: as fast as possible, still yielding to the event loop between lines).
Frames are rendered in a worker thread so a large frame never stalls the event loop, then
delivered line by line."""

from __future__ import annotations

import asyncio
import math
import time
from typing import ClassVar

import numpy as np

from probepilot.contracts import Capability, DriverBase, ProgressCallback
from probepilot.errors import NotConnectedError
from probepilot.model import (
    Channel,
    Frame,
    InstrumentLimits,
    LineProgress,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)
from probepilot_sim.microscope import CHANNELS, SPECTRUM_CHANNELS, Microscope
from probepilot_sim.options import SimOptions


class SimDriver(DriverBase):
    """The simulated STM as a probepilot driver (``driver = "sim"``)."""

    name = "sim"
    supported: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self._scope: Microscope | None = None
        self._connected = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._epoch = 0.0

    # ------------------------------------------------------------------ plumbing

    @property
    def microscope(self) -> Microscope:
        """The simulated instrument (ground truth for tests and evaluation)."""
        return self._ready()

    def _ready(self) -> Microscope:
        if not self._connected or self._scope is None:
            raise NotConnectedError(
                "sim: the driver is not connected", hint="await driver.connect() first"
            )
        return self._scope

    def _guard(self) -> asyncio.Lock:
        """The lock that serialises operations, one per event loop (tests may drive the same
        driver from several ``asyncio.run`` calls)."""
        self._ready()
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    async def _elapse(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass in real time scaled by ``time_scale``."""
        scale = self.options.time_scale
        if scale > 0 and math.isfinite(scale) and seconds > 0:
            await asyncio.sleep(seconds / scale)
        else:
            await asyncio.sleep(0)

    def _timestamp(self, sim_time: float) -> float:
        return self._epoch + sim_time

    # ------------------------------------------------------------------ connection

    async def connect(self) -> None:
        """Build the simulated instrument on first connect; reconnecting keeps its state."""
        if self._connected:
            return
        if self._scope is None:
            # Building the surface reads files and generates tiles: keep it off the loop.
            self._scope = await asyncio.to_thread(Microscope, self.options)
            self._epoch = time.time()
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    def capabilities(self) -> frozenset[Capability]:
        return self.supported

    async def limits(self) -> InstrumentLimits:
        return self._ready().limits()

    # ------------------------------------------------------------------ settings

    async def get_bias(self) -> float:
        return self._ready().bias

    async def set_bias(self, voltage: float) -> None:
        async with self._guard():
            self._ready().set_bias(voltage)

    async def get_setpoint(self) -> float:
        return self._ready().setpoint

    async def set_setpoint(self, current: float) -> None:
        async with self._guard():
            self._ready().set_setpoint(current)

    async def get_feedback(self) -> bool:
        return self._ready().feedback

    async def set_feedback(self, on: bool) -> None:
        async with self._guard():
            self._ready().set_feedback(bool(on))

    async def withdraw(self) -> None:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            scope.withdraw()
            await self._elapse(scope.clock - before)

    async def approach(self) -> None:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            scope.approach()
            await self._elapse(scope.clock - before)

    async def get_tip_position(self) -> TipPosition:
        scope = self._ready()
        return TipPosition(scope.x, scope.y, scope.tip_z())

    async def set_tip_position(self, x: float, y: float) -> None:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            scope.move_tip(x, y)
            await self._elapse(scope.clock - before)

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        async with self._guard():
            self._ready().set_drift_compensation(vx, vy, vz)

    # ------------------------------------------------------------------ actions

    async def bias_pulse(self, voltage: float, width: float) -> None:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            scope.bias_pulse(voltage, width)
            await self._elapse(scope.clock - before)

    async def dip(self, depth: float, bias: float) -> None:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            try:
                scope.dip(depth, bias)
            finally:
                await self._elapse(scope.clock - before)

    async def coarse_move(self, axis: str, steps: int) -> None:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            try:
                scope.coarse_move(axis, steps)
            finally:
                await self._elapse(scope.clock - before)

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        async with self._guard():
            scope = self._ready()
            before = scope.clock
            channels = scope.spectrum(request)
            sweep = np.linspace(request.start, request.stop, request.points)
            spectrum = Spectrum(
                sweep_name="Bias",
                sweep_unit="V",
                sweep=sweep,
                channels=channels,
                units={name: SPECTRUM_CHANNELS[name] for name in channels},
                position=(scope.x, scope.y),
                started_at=self._timestamp(before),
                metadata={
                    "source": "sim",
                    "bias": scope.bias,
                    "setpoint": scope.setpoint,
                    "sim_time": before,
                    "sim_tip_state": scope.apex.state.value,
                },
            )
            await self._elapse(scope.clock - before)
            return spectrum

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        """Acquire a frame, reporting every line; cancelling stops at the next line boundary
        and keeps the simulator consistent with the lines actually scanned."""
        async with self._guard():
            scope = self._ready()
            plan = scope.plan_scan(settings)
            area = settings.area
            start_state = scope.apex.state.value
            lines_done = 0
            result = None
            try:
                result = await asyncio.to_thread(scope.render, plan)
                names = ["Z", *(c for c in settings.channels if c != "Z")]
                source = {
                    "Z": (result.z_forward, result.z_backward),
                    "Current": (result.current_forward, result.current_backward),
                }
                channels = {
                    n: Channel(
                        n,
                        CHANNELS[n],
                        np.full((area.lines, area.pixels), np.nan),
                        np.full((area.lines, area.pixels), np.nan),
                    )
                    for n in names
                }
                for row in range(area.lines):
                    await self._elapse(2 * settings.line_time)
                    for n, ch in channels.items():
                        ch.forward[row] = source[n][0][row]
                        assert ch.backward is not None
                        ch.backward[row] = source[n][1][row]
                    lines_done = row + 1
                    if progress is not None:
                        progress(
                            LineProgress(
                                row,
                                area.lines,
                                {n: source[n][0][row].copy() for n in channels},
                                {n: source[n][1][row].copy() for n in channels},
                            )
                        )
            finally:
                # Whatever stopped us (done, cancelled, a failing callback), the instrument's
                # state must match the lines actually scanned.
                scope.commit(plan, lines_done, result)
            changes = [line for line, _ in plan.apexes_after if line < lines_done]
            return Frame(
                channels=channels,
                area=area,
                direction=settings.direction,
                bias=scope.bias,
                setpoint=scope.setpoint,
                line_time=settings.line_time,
                started_at=self._timestamp(plan.start),
                finished_at=self._timestamp(scope.clock),
                lines_done=lines_done,
                source="sim",
                metadata={
                    "sim_seed": self.options.seed,
                    "sim_surface": scope.surface.name,
                    "sim_time": plan.start,
                    "sim_tip_state": start_state,
                    "sim_tip_state_after": scope.apex.state.value,
                    "sim_tip_changes": ",".join(str(line) for line in changes),
                    "sim_feedback": "on" if scope.feedback else "off",
                },
            )
