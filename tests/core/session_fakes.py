"""A scripted driver, analyzer and policies for the session's tests.

The driver records every call in order, scans flat frames line by line (so cancelling a scan
leaves a partial frame), and fails on cue; the analyzer reports the tip state it is told to, per
frame; the policies return what the test scripts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.config import Config, load_config, validate
from probepilot.contracts import Capability, DriverBase
from probepilot.errors import DriverTimeoutError, TipCrashError
from probepilot.model import (
    DEFAULT_CONDITIONING_ACTIONS,
    Action,
    Channel,
    Finding,
    Frame,
    InstrumentLimits,
    KeepImaging,
    LineProgress,
    Observation,
    Outcome,
    ScanSettings,
    TipPosition,
    TipState,
)
from probepilot.plugins import PluginManager
from probepilot.session import Session


class ScriptedDriver(DriverBase):
    """Flat frames, every call recorded; ``fail[op]`` = how many calls of ``op`` raise a
    timeout first; ``crash_on_dip`` makes dips crash the tip."""

    name = "scripted"
    supported = frozenset(Capability)

    def __init__(self, piezo: float = 1e-6, line_delay: float = 0.0) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, int] = {}
        self.crash_on_dip = False
        self.piezo = piezo
        self.line_delay = line_delay
        self.bias = 1.0
        self.setpoint = 100e-12
        self.x = self.y = 0.0
        self.clock = 1000.0  # instrument time, advanced by scans
        self.connected = False

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        name = call[0]
        if self.fail.get(name, 0) > 0:
            self.fail[name] -= 1
            raise DriverTimeoutError(f"{name}: no reply within 1 s (scripted)")

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    async def connect(self) -> None:
        self._call("connect")
        self.connected = True

    async def close(self) -> None:
        self.calls.append(("close",))
        self.connected = False

    async def limits(self) -> InstrumentLimits:
        return InstrumentLimits((self.piezo, self.piezo, 200e-9), (-10.0, 10.0), 1e-7, (0, 200e-9))

    async def get_bias(self) -> float:
        return self.bias

    async def set_bias(self, voltage: float) -> None:
        self._call("set_bias", voltage)
        self.bias = voltage

    async def get_setpoint(self) -> float:
        return self.setpoint

    async def set_setpoint(self, current: float) -> None:
        self._call("set_setpoint", current)
        self.setpoint = current

    async def get_feedback(self) -> bool:
        return True

    async def set_feedback(self, on: bool) -> None:
        self._call("set_feedback", on)

    async def withdraw(self) -> None:
        self._call("withdraw")

    async def approach(self) -> None:
        self._call("approach")

    async def get_tip_position(self) -> TipPosition:
        return TipPosition(self.x, self.y, 100e-9)

    async def set_tip_position(self, x: float, y: float) -> None:
        self._call("move", x, y)
        self.x, self.y = x, y

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        self._call("drift", vx, vy, vz)

    async def bias_pulse(self, voltage: float, width: float) -> None:
        self._call("pulse", voltage, width)

    async def dip(self, depth: float, bias: float) -> None:
        self._call("dip", depth, bias)
        if self.crash_on_dip:
            raise TipCrashError("dip", "the tip crashed into the surface and was withdrawn")

    async def coarse_move(self, axis: str, steps: int) -> None:
        self._call("coarse", axis, steps)

    async def scan(self, settings: ScanSettings, progress: Any = None) -> Frame:
        self._call("scan", settings.area.centre)
        area = settings.area
        shape = (area.lines, area.pixels)
        z = np.full(shape, np.nan)
        started = self.clock
        for row in range(area.lines):
            if self.line_delay:
                await asyncio.sleep(self.line_delay)
            else:
                await asyncio.sleep(0)
            z[row] = np.linspace(0, 1e-10, area.pixels)
            self.clock += 2 * settings.line_time
            if progress is not None:
                progress(LineProgress(row, area.lines, {"Z": z[row]}, {"Z": z[row]}))
        return Frame(
            {"Z": Channel("Z", "m", z, z.copy())},
            area,
            settings.direction,
            self.bias,
            self.setpoint,
            settings.line_time,
            started,
            self.clock,
            area.lines,
            source="scripted",
        )


class ScriptedAnalyzer:
    """Reports ``states[i]`` as the tip state of the i-th frame (the last one repeats), and
    checks the frame's file is already on disk when it is analysed."""

    name = "scripted"

    def __init__(self, states: Sequence[str], folder: Callable[[], Path] | None = None) -> None:
        self.states = list(states)
        self.seen = 0
        self.folder = folder
        self.persisted_first: list[bool] = []
        self.extra: list[Finding] = []

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        if self.folder is not None:
            frames = sorted((self.folder() / "frames").glob("frame-*.sxm"))
            self.persisted_first.append(len(frames) == self.seen + 1)
        state = self.states[min(self.seen, len(self.states) - 1)]
        self.seen += 1
        return [
            Finding("scripted", "tip_state", 0.9, {"status": "ok", "state": state}),
            *self.extra,
        ]


class ScriptedPolicy:
    """Returns the scripted actions in turn while the tip is bad, then keeps imaging."""

    name = "scripted"

    def __init__(self, actions: Sequence[Action] = DEFAULT_CONDITIONING_ACTIONS[:1]) -> None:
        self.actions = list(actions)
        self.observations: list[Observation] = []
        self.outcomes: list[Outcome] = []
        self.i = 0

    def decide(self, observation: Observation) -> Action:
        self.observations.append(observation)
        if observation.tip_state in (TipState.GOOD, TipState.UNKNOWN):
            return KeepImaging()
        action = self.actions[self.i % len(self.actions)]
        self.i += 1
        return action

    def feedback(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def make_config(tmp_path: Path, **run: Any) -> tuple[Config, PluginManager]:
    """The default config with ``[run]`` overrides, runs going into ``tmp_path``."""
    _, manager = load_config(None)
    table = {"folder": str(tmp_path / "runs"), "pixels": 16, "retry_backoff": 0.001, **run}
    return validate({"run": table}, manager, source="test", base_dir=tmp_path), manager


def make_session(
    tmp_path: Path,
    states: Sequence[str] = ("good",),
    *,
    driver: ScriptedDriver | None = None,
    policy: Any = None,
    frames: int | None = 4,
    **run: Any,
) -> tuple[Session, ScriptedDriver, ScriptedAnalyzer]:
    config, manager = make_config(tmp_path, **run)
    driver = driver or ScriptedDriver()
    session: Session
    analyzer = ScriptedAnalyzer(states, lambda: session.folder)
    session = Session(
        config,
        manager,
        driver=driver,
        policy=policy or ScriptedPolicy(),
        analyzers=[analyzer],
        frames=frames,
    )
    return session, driver, analyzer


def wall_clock() -> float:
    return time.monotonic()
