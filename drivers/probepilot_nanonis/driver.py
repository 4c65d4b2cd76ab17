"""``NanonisDriver``: a Nanonis SPM controller through its TCP programming interface.

Two connections (``ports[0]`` for commands and acquisition, ``ports[1]`` to follow scan progress;
with one port both share it). Every value is checked against :meth:`limits` *before* anything is
sent, so an out-of-range request raises :class:`~probepilot.errors.LimitError` and changes
nothing; what the controller refuses comes back as
:class:`~probepilot.errors.InstrumentError` with its own message. Lost connections, timeouts and
malformed replies are typed errors (see :mod:`probepilot_nanonis.connection`); the next command
reconnects.

Beyond the contract: :meth:`signal_names`, :meth:`signal_values`, :meth:`get_current`,
:meth:`frame_data` (one channel of the scan buffer), :meth:`call` (any command of the table,
for scripts) and :attr:`last_frame` (the partial frame of the last aborted scan).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar

import numpy as np

from probepilot.contracts import (
    Capability,
    DriverBase,
    ProgressCallback,
    check_scan_geometry,
)
from probepilot.errors import InstrumentError, LimitError, NotConnectedError, NotSupportedError
from probepilot.model import (
    FloatArray,
    Frame,
    InstrumentLimits,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)
from probepilot_nanonis.connection import Connection
from probepilot_nanonis.options import NanonisOptions
from probepilot_nanonis.scanning import Acquisition, Recorded
from probepilot_nanonis.wire import nice_f32

MOTOR_DIRECTIONS = {"x+": 0, "x-": 1, "y+": 2, "y-": 3, "z+": 4, "z-": 5}
WAIT, HOLD_Z, ABSOLUTE = 1, 1, 2


def split_signal(signal: str) -> tuple[str, str]:
    """``"Current (A)"`` -> ``("Current", "A")``."""
    name, _, unit = signal.partition(" (")
    return name, unit.rstrip(")") if unit else ""


class NanonisDriver(DriverBase):
    """The Nanonis controller as a probepilot driver (``driver = "nanonis"``)."""

    name = "nanonis"
    supported: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, options: NanonisOptions | None = None) -> None:
        self.options = options or NanonisOptions()
        self._main: Connection | None = None
        self._status: Connection | None = None
        self._signals: list[str] = []
        self._limits: InstrumentLimits | None = None
        #: The partial frame of the last scan that was cancelled or failed mid-way.
        self.last_frame: Frame | None = None

    # ------------------------------------------------------------------ connection

    def _connection(self, port: int) -> Connection:
        o = self.options
        return Connection(
            o.host,
            port,
            timeout=o.timeout,
            connect_timeout=o.connect_timeout,
            attempts=o.reconnect_attempts,
            backoff=o.reconnect_backoff,
        )

    async def connect(self) -> None:
        """Open the connections, read the signal list and the piezo range; idempotent."""
        if self._main is not None:
            return
        ports = self.options.ports
        main = self._connection(ports[0])
        status = self._connection(ports[1]) if len(ports) > 1 else main
        try:
            await main.open()
            await status.open()
            self._signals = list((await main.call("Signals.NamesGet"))["names"])
            piezo = await main.call("Piezo.RangeGet")
        except BaseException:
            await main.close()
            await status.close()
            raise
        x, y, z = (nice_f32(piezo[k]) for k in ("x", "y", "z"))
        o = self.options
        self._limits = InstrumentLimits(
            (x, y, z),
            (-o.bias_limit, o.bias_limit),
            o.max_setpoint,
            z_limits=o.z_limits or (0.0, z),
        )
        self._main, self._status = main, status

    async def close(self) -> None:
        main, status, self._main, self._status = self._main, self._status, None, None
        for conn in (main, status):
            if conn is not None:
                await conn.close()

    def _ready(self) -> tuple[Connection, InstrumentLimits]:
        if self._main is None or self._limits is None:
            raise NotConnectedError(
                "nanonis: the driver is not connected", hint="await driver.connect() first"
            )
        return self._main, self._limits

    def call(
        self, command: str, values: dict[str, Any] | None = None, *, extra: float = 0.0
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        """Send any command of the table on the command connection (for scripts):
        ``await driver.call("Scan.StatusGet")``. (Not itself a coroutine function, to keep
        one frame off every command's path.)"""
        if self._main is None:
            self._ready()
        assert self._main is not None
        return self._main.call(command, values, extra=extra)

    async def limits(self) -> InstrumentLimits:
        return self._ready()[1]

    # ------------------------------------------------------------------ settings

    def _check_bias(self, voltage: float, what: str = "bias") -> None:
        low, high = self._ready()[1].bias_range
        if not (math.isfinite(voltage) and low <= voltage <= high):
            raise LimitError(
                f"nanonis: {what} {voltage} V is outside [{low}, {high}] V",
                hint="see bias_limit in [drivers.nanonis]",
            )

    async def get_bias(self) -> float:
        return float((await self.call("Bias.Get"))["bias"])

    async def set_bias(self, voltage: float) -> None:
        self._check_bias(voltage)
        await self.call("Bias.Set", {"bias": voltage})

    async def get_setpoint(self) -> float:
        return float((await self.call("ZCtrl.SetpntGet"))["setpoint"])

    async def set_setpoint(self, current: float) -> None:
        top = self._ready()[1].max_setpoint
        if not (math.isfinite(current) and 0 < current <= top):
            raise LimitError(f"nanonis: setpoint {current} A is outside (0, {top}] A")
        await self.call("ZCtrl.SetpntSet", {"setpoint": current})

    async def get_feedback(self) -> bool:
        return bool((await self.call("ZCtrl.OnOffGet"))["on"])

    async def set_feedback(self, on: bool) -> None:
        await self.call("ZCtrl.OnOffSet", {"on": int(bool(on))})

    async def get_current(self) -> float:
        """Tunnelling current, A."""
        return float((await self.call("Current.Get"))["current"])

    async def withdraw(self) -> None:
        wait = self.options.withdraw_timeout
        values = {"wait": WAIT, "timeout_ms": int(wait * 1000)}
        await self.call("ZCtrl.Withdraw", values, extra=wait)

    async def approach(self) -> None:
        """Auto-approach; returns when the controller reports it finished with feedback on."""
        self._ready()
        await self.call("AutoApproach.Open")
        await self.call("AutoApproach.OnOffSet", {"on": 1})
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            running = (await self.call("AutoApproach.OnOffGet"))["on"]
            elapsed = loop.time() - started
            if not running and await self.get_feedback():
                return
            if not running and elapsed > 1.0:  # a controller may take a moment to start it
                raise InstrumentError(
                    "AutoApproach", "the approach ended without the Z-controller on (no contact?)"
                )
            if elapsed > self.options.approach_timeout:
                await self.call("AutoApproach.OnOffSet", {"on": 0})
                raise InstrumentError(
                    "AutoApproach",
                    f"no contact within {self.options.approach_timeout:g} s; approach stopped",
                )
            await asyncio.sleep(self.options.poll_interval)

    async def get_tip_position(self) -> TipPosition:
        xy = await self.call("FolMe.XYPosGet", {"wait_newest": 1})
        z = await self.call("ZCtrl.ZPosGet")
        return TipPosition(float(xy["x"]), float(xy["y"]), float(z["z"]))

    async def set_tip_position(self, x: float, y: float) -> None:
        hx, hy, _ = (r / 2 for r in self._ready()[1].piezo_range)
        if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= hx and abs(y) <= hy):
            raise LimitError(
                f"nanonis: tip position ({x:.4g}, {y:.4g}) m is outside the piezo range "
                f"+-{hx:.4g} x +-{hy:.4g} m"
            )
        await self.call(
            "FolMe.XYPosSet", {"x": x, "y": y, "wait": WAIT}, extra=self.options.timeout
        )

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        top = self.options.max_drift_velocity
        self._ready()
        for v in (vx, vy, vz):
            if not (math.isfinite(v) and abs(v) <= top):
                raise LimitError(f"nanonis: drift velocity {v} m/s exceeds {top} m/s")
        on = 2 if vx == vy == vz == 0 else 1  # 1 on, 2 off
        values = {"on": on, "vx": vx, "vy": vy, "vz": vz, "limit": 10.0}
        await self.call("Piezo.DriftCompSet", values)

    # ------------------------------------------------------------------ signals

    async def signal_names(self) -> list[str]:
        """The controller's signal names; a signal's index is its position in this list."""
        self._ready()
        return list(self._signals)

    def signal_index(self, signal: str) -> int:
        """Index of ``signal`` (``"Z (m)"``, or just ``"Z"``)."""
        self._ready()
        for i, name in enumerate(self._signals):
            if signal in (name, split_signal(name)[0]):
                return i
        raise NotSupportedError(
            f"nanonis: the controller has no signal {signal!r}",
            hint=f"available: {', '.join(self._signals)}",
        )

    async def signal_values(self, signals: Sequence[str | int]) -> dict[str, float]:
        """Present values of ``signals`` (names or indexes), by name."""
        indexes = [s if isinstance(s, int) else self.signal_index(s) for s in signals]
        reply = await self.call("Signals.ValsGet", {"indexes": indexes, "wait": 1})
        return {self._signals[i]: float(v) for i, v in zip(indexes, reply["values"], strict=True)}

    async def frame_data(self, signal: str | int, forward: bool = True) -> tuple[FloatArray, bool]:
        """The scan buffer of one recorded signal (``Scan.FrameDataGrab``) as float64, rows as
        the controller sends them (top of the frame first, NaN where not scanned), and whether
        the scan runs upwards."""
        index = signal if isinstance(signal, int) else self.signal_index(signal)
        reply = await self.call("Scan.FrameDataGrab", {"channel": index, "direction": int(forward)})
        return reply["data"].astype(np.float64), bool(reply["scan_direction"])

    def _recorded(self, names: Sequence[str]) -> list[Recorded]:
        special = {"Z": self.options.z_signal, "Current": self.options.current_signal}
        out = []
        for name in dict.fromkeys(["Z", *names]):
            index = self.signal_index(special.get(name, name))
            out.append(
                Recorded(name, index, self._signals[index], split_signal(self._signals[index])[1])
            )
        return out

    # ------------------------------------------------------------------ scanning

    def _check_scan(self, settings: ScanSettings) -> None:
        area = settings.area
        if area.pixels < 16 or area.pixels % 16 or area.lines < 1:
            raise LimitError(
                f"nanonis: {area.pixels} pixels x {area.lines} lines: pixels must be a positive "
                "multiple of 16 (the controller would change them) and lines at least 1"
            )
        check_scan_geometry(settings, self._ready()[1].piezo_range, "nanonis")

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        main, _ = self._ready()
        self._check_scan(settings)
        assert self._status is not None
        acquisition = Acquisition(
            main,
            self._status,
            settings,
            self._recorded(settings.channels),
            poll_interval=self.options.poll_interval,
            keep_partial=self._keep_partial,
        )
        return await acquisition.run(progress)

    def _keep_partial(self, frame: Frame) -> None:
        self.last_frame = frame

    # ------------------------------------------------------------------ conditioning

    async def bias_pulse(self, voltage: float, width: float) -> None:
        self._check_bias(voltage, "pulse")
        top = self.options.max_pulse_width
        if not (math.isfinite(width) and 0 < width <= top):
            raise LimitError(f"nanonis: pulse width {width} s is outside (0, {top}] s")
        values = {"wait": WAIT, "width": width, "bias": voltage, "z_hold": HOLD_Z, "mode": ABSOLUTE}
        await self.call("Bias.Pulse", values, extra=width)

    async def dip(self, depth: float, bias: float) -> None:
        """A tip-shaper dip: feedback off, down ``depth`` at ``bias``, back up, feedback
        restored."""
        z_range = self._ready()[1].piezo_range[2]
        if not (math.isfinite(depth) and 0 < depth <= z_range):
            raise LimitError(f"nanonis: dip depth {depth} m is outside (0, {z_range}] m")
        self._check_bias(bias, "dip bias")
        o = self.options
        imaging_bias = await self.get_bias()
        props = {
            "switch_off_delay": o.dip_settle_time,
            "change_bias": 1,
            "bias": bias,
            "tip_lift": -depth,
            "lift_time_1": o.dip_lift_time,
            "bias_lift": imaging_bias,
            "bias_settling": o.dip_settle_time,
            "lift_height": depth + o.dip_retract,
            "lift_time_2": o.dip_retract_time,
            "end_wait": o.dip_settle_time,
            "restore_feedback": 1,
        }
        await self.call("TipShaper.PropsSet", props)
        duration = o.dip_lift_time + o.dip_retract_time + 3 * o.dip_settle_time
        await self.call(
            "TipShaper.Start",
            {"wait": WAIT, "timeout_ms": int((duration + o.timeout) * 1000)},
            extra=duration + o.timeout,
        )

    async def coarse_move(self, axis: str, steps: int) -> None:
        self._ready()
        if axis not in MOTOR_DIRECTIONS:
            raise LimitError(
                f"nanonis: unknown coarse axis {axis!r}; use {', '.join(MOTOR_DIRECTIONS)}"
            )
        top = self.options.max_coarse_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= top:
            raise LimitError(
                f"nanonis: coarse steps must be an integer in [1, {top}], got {steps!r}"
            )
        values = {
            "direction": MOTOR_DIRECTIONS[axis],
            "steps": steps,
            "group": self.options.motor_group,
            "wait": WAIT,
        }
        await self.call("Motor.StartMove", values, extra=steps * self.options.coarse_step_time)

    # ------------------------------------------------------------------ spectroscopy

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        self._ready()
        self._check_bias(request.start, "sweep start")
        self._check_bias(request.stop, "sweep end")
        if request.start == request.stop or not 2 <= request.points <= 100_000:
            raise LimitError(
                f"nanonis: a sweep needs different start and end and 2-100000 points, got "
                f"{request.start}..{request.stop} V in {request.points}"
            )
        for name in ("settle_time", "integration_time"):
            value = getattr(request, name)
            if not (math.isfinite(value) and 0 <= value <= 10):
                raise LimitError(f"nanonis: {name} {value} s is outside [0, 10] s")
        wanted = {"Current": self.options.current_signal, "dIdV": self.options.didv_signal}
        unknown = [c for c in request.channels if c not in wanted]
        if unknown:
            raise NotSupportedError(f"nanonis: cannot record spectrum channel(s) {unknown}")
        bias = await self.get_bias()
        xy = await self.call("FolMe.XYPosGet", {"wait_newest": 1})
        await self.call("BiasSpectr.Open")
        await self.call("BiasSpectr.LimitsSet", {"start": request.start, "end": request.stop})
        props: dict[str, Any] = {"save_all": 0, "sweeps": 1, "backward": 0, "z_offset": 0.0}
        props.update(points=request.points, autosave=0, save_dialog=0)
        await self.call("BiasSpectr.PropsSet", props)
        timing = await self.call("BiasSpectr.TimingGet")
        timing.update(settling_time=request.settle_time, integration_time=request.integration_time)
        await self.call("BiasSpectr.TimingSet", timing)
        duration = request.points * (request.settle_time + request.integration_time)
        reply = await self.call(
            "BiasSpectr.Start", {"get_data": 1, "base_name": ""}, extra=duration + 1.0
        )
        rows = dict(zip(reply["channels"], reply["data"], strict=True))
        channels, units = {}, {}
        for name in request.channels:
            if wanted[name] not in rows:
                raise NotSupportedError(
                    f"nanonis: the bias spectroscopy module does not record {wanted[name]!r}; "
                    f"it records {', '.join(rows)}",
                    hint="add it in the module's channel list (BiasSpectr.ChsSet)",
                )
            channels[name] = rows[wanted[name]].astype(np.float64)
            units[name] = split_signal(wanted[name])[1]
        sweep_row = next((r for n, r in rows.items() if split_signal(n)[0] == "Bias"), None)
        sweep = (
            sweep_row.astype(np.float64)
            if sweep_row is not None
            else np.linspace(request.start, request.stop, request.points)
        )
        return Spectrum(
            sweep_name="Bias",
            sweep_unit="V",
            sweep=sweep,
            channels=channels,
            units=units,
            position=(float(xy["x"]), float(xy["y"])),
            metadata={"source": "nanonis", "bias": bias, "nanonis_host": self.options.host},
        )
