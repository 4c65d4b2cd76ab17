"""``MatrixDriver``: Scienta Omicron MATRIX as a probepilot driver (``driver = "matrix"``).

The driver maps the contract onto MATRIX's experiment elements (names and assumptions:
:mod:`probepilot_matrix.names`) through a :class:`~probepilot_matrix.transport.MatrixTransport`
(the real ``RemoteAccess_API.dll``, or the simulated MATRIX), identically for both:

=====================  ============================================================================
contract               MATRIX
=====================  ============================================================================
bias, setpoint         ``GapVoltageControl.Voltage``, ``Regulator.Setpoint_1``
feedback               ``Regulator.Feedback_Loop_Enabled``
withdraw               feedback off, ``PiezoControl.Move_Backward`` (waits until it reads false)
approach               ``PiezoControl.Move_Auto`` (waits until it reads false), feedback on
tip position           ``XYScanner.XY_Position_Report`` and ``Regulator.Z_Out``; moves through
                       ``Target_Position`` (normalised to the scan window, recentred on the target
                       when it lies outside) and ``XYScanner.move``, until ``XY_Position_Reached``
scan                   :mod:`probepilot_matrix.scanning`
bias pulse             ``GapVoltageControl.Tip_Cond_Pulse_*``, execute port ``VPulse``
dip                    the controlled crash: feedback off, bias, ``Regulator.Z_Ramp`` (sign:
                       ``z_ramp_sign``), execute port ``ZRamp``, bias and feedback restored
spectrum               ``Spectroscopy`` device 1 (V), execute port ``""``, ``View.I_V_Spec.Data``;
                       :meth:`MatrixDriver.spectrum_z` does I(z) with device 2
coarse move            ``PiezoControl.Steps`` and ``Move_Tip_X_Plus`` ... ``Retract``/``Approach``,
                       offered only when the experiment has ``PiezoControl``
drift compensation     ``XYScanner.X_Drift``, ``Y_Drift``, ``Enable_Drift_Compensation`` (no z)
=====================  ============================================================================

Every value is checked against :meth:`limits` before anything is sent (``LimitError``, nothing
changed). MATRIX's refusals arrive as typed errors (:func:`~probepilot_matrix.transport.error_for`):
unknown names as ``NotSupportedError``, rejected values as ``InstrumentError`` keeping the code.
MATRIX reports no tip crash: after a pulse or dip that started in tunnelling, a tip found fully
retracted (``Regulator.Z_Out`` at the top of the z range) is taken as a crash and raises
``TipCrashError`` (ASSUMED: MATRIX retracts on a crash; verify).

Operations run one at a time (a lock); all calls into the transport run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from probepilot.contracts import (
    Capability,
    DriverBase,
    ProgressCallback,
    check_scan_geometry,
)
from probepilot.errors import (
    DriverConnectionError,
    DriverError,
    DriverTimeoutError,
    InstrumentError,
    LimitError,
    NotConnectedError,
    NotSupportedError,
    TipCrashError,
)
from probepilot.model import (
    Frame,
    InstrumentLimits,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)
from probepilot_matrix import names
from probepilot_matrix.options import MatrixOptions
from probepilot_matrix.scanning import UNITS, Acquisition, Recorded
from probepilot_matrix.transport import Event, MatrixTransport, Value


def result_file(frame: Frame) -> Path | None:
    """Where MATRIX wrote its own result file of ``frame``'s Z channel (read it with
    :func:`probepilot.store.read_matrix`), when the frame's metadata says; else None."""
    name = frame.metadata.get("MATRIX result file")
    folder = frame.metadata.get("MATRIX result file path")
    if not name or not folder:
        return None
    return Path(str(folder)) / str(name)


def make_transport(options: MatrixOptions) -> MatrixTransport:
    """The transport ``options.transport`` names."""
    if options.transport == "simulated":
        from probepilot_matrix.simulated import SimulatedMatrixTransport

        return SimulatedMatrixTransport(options)
    from probepilot_matrix.dll import RemoteAccessTransport

    return RemoteAccessTransport(options)


class MatrixDriver(DriverBase):
    """MATRIX as a probepilot driver; see the module docstring.

    :param transport: the transport to use (default: the one ``options.transport`` names).
    """

    name = "matrix"
    supported: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(
        self, options: MatrixOptions | None = None, *, transport: MatrixTransport | None = None
    ) -> None:
        self.options = options or MatrixOptions()
        self.transport = transport if transport is not None else make_transport(self.options)
        self._open = False
        self._limits: InstrumentLimits | None = None
        self._capabilities = self._declared()
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._cleanups: set[asyncio.Task[Any]] = set()
        #: The partial frame of the last scan that was cancelled or failed mid-way.
        self.last_frame: Frame | None = None

    def _declared(self) -> frozenset[Capability]:
        if self.options.coarse_positioning:
            return self.supported
        return self.supported - {Capability.COARSE_MOVE}

    def capabilities(self) -> frozenset[Capability]:
        return self._capabilities

    # ------------------------------------------------------------------ plumbing

    def _ready(self) -> InstrumentLimits:
        if not self._open or self._limits is None:
            raise NotConnectedError(
                "matrix: the driver is not connected", hint="await driver.connect() first"
            )
        return self._limits

    def _guard(self) -> asyncio.Lock:
        """The lock serialising operations, one per event loop."""
        self._ready()
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    def _full(self, name: str) -> str:
        return names.full(self.options.experiment, name)

    async def _get(self, name: str) -> Value:
        """Property ``name`` (relative: ``"XYScanner.Width"``) with the type the table gives."""
        return await asyncio.to_thread(self.transport.get, self._full(name), names.prop(name).kind)

    async def _set(self, name: str, value: Value) -> None:
        await asyncio.to_thread(self.transport.set, self._full(name), names.prop(name).kind, value)

    async def _call(self, name: str, *args: Value) -> Value | None:
        return await asyncio.to_thread(self.transport.call, self._full(name), *args)

    async def _observe(self, name: str, callback: Callable[[Event], None] | None) -> None:
        await asyncio.to_thread(self.transport.observe, self._full(name), callback)

    async def _cleanup(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to its end even if the caller is cancelled meanwhile (the next
        operation waits for it)."""
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)

    async def _settle(self) -> None:
        if self._cleanups:
            await asyncio.wait(list(self._cleanups))

    async def _float(self, name: str) -> float:
        value = await self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InstrumentError(f"get {name}", f"MATRIX returned {value!r}, not a number")
        return float(value)

    async def _position(self) -> tuple[float, float]:
        value = await self._get("XYScanner.XY_Position_Report")
        if not isinstance(value, tuple):
            raise InstrumentError("get XYScanner.XY_Position_Report", f"MATRIX returned {value!r}")
        return float(value[0]), float(value[1])

    # ------------------------------------------------------------------ connection

    async def connect(self) -> None:
        """Attach to MATRIX, check the experiment is open, read the scan range; idempotent."""
        if self._open:
            return
        await asyncio.to_thread(self.transport.open)
        try:
            state = await self._get("Experiment.State")
            if str(state).strip().lower() in ("", "closed"):
                raise DriverConnectionError(
                    f"matrix: the experiment {self.options.experiment!r} is not open in MATRIX "
                    f"(its state is {state!r})",
                    hint="open it in MATRIX, or set [drivers.matrix] experiment to the open one",
                )
            self._limits = await self._read_limits()
            self._capabilities = self._declared()
            if Capability.COARSE_MOVE in self._capabilities:
                try:
                    await self._get("PiezoControl.Steps")
                except NotSupportedError:  # this experiment has no coarse positioner
                    self._capabilities -= {Capability.COARSE_MOVE}
        except BaseException:
            self._limits = None
            await asyncio.to_thread(self.transport.close)
            raise
        self._open = True

    async def _read_limits(self) -> InstrumentLimits:
        o = self.options
        if o.piezo_range is not None:
            x, y, z = o.piezo_range
        else:
            bounds = []
            for prop in ("Width", "Height"):
                value = await self._call("XYScanner.max", prop)
                if not isinstance(value, int | float) or not value > 0:
                    raise InstrumentError(
                        "XYScanner.max",
                        f"the largest {prop} came back as {value!r}",
                        hint="set piezo_range in [drivers.matrix]",
                    )
                bounds.append(float(value))
            (x, y), z = bounds, o.z_range
        return InstrumentLimits(
            (x, y, z), (-o.bias_limit, o.bias_limit), o.max_setpoint, z_limits=(-z / 2, z / 2)
        )

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        await self._settle()
        await asyncio.to_thread(self.transport.close)

    async def limits(self) -> InstrumentLimits:
        return self._ready()

    # ------------------------------------------------------------------ settings

    def _check_bias(self, voltage: float, what: str = "bias") -> None:
        low, high = self._ready().bias_range
        if not (math.isfinite(voltage) and low <= voltage <= high):
            raise LimitError(
                f"matrix: {what} {voltage} V is outside [{low}, {high}] V",
                hint="see bias_limit in [drivers.matrix]",
            )

    async def get_bias(self) -> float:
        self._ready()
        return await self._float("GapVoltageControl.Voltage")

    async def set_bias(self, voltage: float) -> None:
        self._check_bias(voltage)
        async with self._guard():
            await self._set("GapVoltageControl.Voltage", float(voltage))

    async def get_setpoint(self) -> float:
        self._ready()
        return await self._float("Regulator.Setpoint_1")

    async def set_setpoint(self, current: float) -> None:
        top = self._ready().max_setpoint
        if not (math.isfinite(current) and 0 < current <= top):
            raise LimitError(f"matrix: setpoint {current} A is outside (0, {top}] A")
        async with self._guard():
            await self._set("Regulator.Setpoint_1", float(current))

    async def get_feedback(self) -> bool:
        self._ready()
        return bool(await self._get("Regulator.Feedback_Loop_Enabled"))

    async def set_feedback(self, on: bool) -> None:
        async with self._guard():
            await self._set("Regulator.Feedback_Loop_Enabled", bool(on))

    async def _until_false(self, name: str, limit: float, what: str) -> None:
        """Poll boolean ``name`` until it reads false, within ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        interval = max(self.options.poll_interval, 0.01)
        while await self._get(name):
            if loop.time() > deadline:
                raise DriverTimeoutError(f"matrix: {what} did not finish within {limit:g} s")
            await asyncio.sleep(interval)

    async def withdraw(self) -> None:
        async with self._guard():
            await self._settle()
            await self._set("Regulator.Feedback_Loop_Enabled", False)
            await self._set("PiezoControl.Move_Backward", True)
            await self._until_false(
                "PiezoControl.Move_Backward", self.options.withdraw_timeout, "the withdraw"
            )

    async def approach(self) -> None:
        """Auto-approach (``PiezoControl.Move_Auto``), then feedback on."""
        async with self._guard():
            await self._set("PiezoControl.Move_Auto", True)
            try:
                await self._until_false(
                    "PiezoControl.Move_Auto", self.options.approach_timeout, "the auto-approach"
                )
            except DriverTimeoutError:
                with contextlib.suppress(DriverError):
                    await self._set("PiezoControl.Move_Auto", False)
                raise
            await self._set("Regulator.Feedback_Loop_Enabled", True)
            if not await self._get("Regulator.Feedback_Loop_Enabled"):
                raise InstrumentError(
                    "PiezoControl.Move_Auto", "the approach ended without the feedback loop on"
                )

    # ------------------------------------------------------------------ position

    async def get_tip_position(self) -> TipPosition:
        self._ready()
        x, y = await self._position()
        return TipPosition(float(x), float(y), await self._float("Regulator.Z_Out"))

    async def set_tip_position(self, x: float, y: float) -> None:
        hx, hy, _ = (r / 2 for r in self._ready().piezo_range)
        if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= hx and abs(y) <= hy):
            raise LimitError(
                f"matrix: tip position ({x:.4g}, {y:.4g}) m is outside the piezo range "
                f"+-{hx:.4g} x +-{hy:.4g} m"
            )
        async with self._guard():
            await self._settle()
            await self._move(x, y)

    async def _move(self, x: float, y: float) -> None:
        cx, cy = await self._float("XYScanner.X_Offset"), await self._float("XYScanner.Y_Offset")
        w, h = await self._float("XYScanner.Width"), await self._float("XYScanner.Height")
        angle = math.radians(await self._float("XYScanner.Angle"))
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = x - cx, y - cy
        u, v = (c * dx + s * dy) / (w / 2), (-s * dx + c * dy) / (h / 2)
        if not (abs(u) <= 1 and abs(v) <= 1):  # outside the window: centre it on the target
            await self._set("XYScanner.X_Offset", float(x))
            await self._set("XYScanner.Y_Offset", float(y))
            u = v = 0.0
        await self._set("XYScanner.Trigger_Execute_At_Target_Position", False)
        await self._set("XYScanner.Target_Position", (float(u), float(v)))
        reached = await self._event("XYScanner.XY_Position_Reached")
        try:
            reached.arm()
            await self._call("XYScanner.move")
            await reached.wait(self.options.timeout, "the tip move (XY_Position_Reached)")
        finally:
            await self._cleanup(reached.close())

    async def _event(self, name: str) -> _Waiter:
        waiter = _Waiter(self, name)
        await self._observe(name, waiter.callback)
        return waiter

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        top = self.options.max_drift_velocity
        self._ready()
        for v in (vx, vy, vz):
            if not (math.isfinite(v) and abs(v) <= top):
                raise LimitError(f"matrix: drift velocity {v} m/s exceeds {top} m/s")
        if vz != 0:
            raise NotSupportedError("matrix: MATRIX's XY scanner compensates x and y drift only")
        async with self._guard():
            await self._set("XYScanner.X_Drift", float(vx))
            await self._set("XYScanner.Y_Drift", float(vy))
            await self._set("XYScanner.Enable_Drift_Compensation", bool(vx or vy))

    # ------------------------------------------------------------------ scanning

    def _check_scan(self, settings: ScanSettings) -> None:
        area, top = settings.area, self.options.max_points
        if not (2 <= area.pixels <= top and 2 <= area.lines <= top):
            raise LimitError(
                f"matrix: {area.pixels} points x {area.lines} lines: both must be in [2, {top}]"
            )
        check_scan_geometry(settings, self._ready().piezo_range, "matrix")
        degrees = math.degrees(area.angle)
        if abs(degrees - round(degrees)) > 1e-6:
            raise LimitError(f"matrix: MATRIX takes the scan angle in whole degrees, not {degrees}")

    def _recorded(self, channels: tuple[str, ...]) -> list[Recorded]:
        o = self.options
        special = {
            "Z": (o.z_channel, o.z_scale),
            "Current": (o.current_channel, o.current_scale),
        }
        out = []
        for name in dict.fromkeys(["Z", *channels]):
            matrix, scale = special.get(name, (name, 1.0))
            out.append(Recorded(name, matrix, UNITS.get(name, ""), scale))
        return out

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        self._check_scan(settings)
        async with self._guard():
            await self._settle()
            acquisition = Acquisition(self, settings, self._recorded(settings.channels))
            return await acquisition.run(progress)

    # ------------------------------------------------------------------ conditioning

    async def _execute(self, port: str) -> None:
        await self._set("XYScanner.Execute_Port_Colour", port)
        await self._call("XYScanner.execute")

    async def _crashed(self, z_before: float) -> bool:
        """True when the tip, near the surface before, is now fully retracted."""
        low, top = self._ready().z_bounds()
        margin = 1e-3 * (top - low)
        if z_before >= top - margin:
            return False  # it was withdrawn already: nothing could touch
        return await self._float("Regulator.Z_Out") >= top - margin

    async def bias_pulse(self, voltage: float, width: float) -> None:
        """A tip conditioning pulse (``Tip_Cond_Pulse``; Z held unless
        ``pulse_with_feedback``)."""
        self._check_bias(voltage, "pulse")
        top = self.options.max_pulse_width
        if not (math.isfinite(width) and 0 < width <= top):
            raise LimitError(f"matrix: pulse width {width} s is outside (0, {top}] s")
        async with self._guard():
            await self._settle()
            z_before = await self._float("Regulator.Z_Out")
            await self._set(
                "GapVoltageControl.Tip_Cond_Pulse_Preamp_Range", 1 if abs(voltage) > 1 else 0
            )
            await self._set("GapVoltageControl.Tip_Cond_Pulse_Voltage", float(voltage))
            await self._set("GapVoltageControl.Tip_Cond_Pulse_Time", float(width))
            await self._set(
                "GapVoltageControl.Tip_Cond_Enable_Feedback_Loop",
                self.options.pulse_with_feedback,
            )
            try:
                await self._execute(names.PORT_V_PULSE)
                await asyncio.sleep(width + self.options.settle_time)
                if await self._crashed(z_before):
                    raise TipCrashError(
                        "XYScanner.execute (VPulse)",
                        "the tip ended fully retracted after the pulse: it touched the surface",
                        hint="approach again and condition the tip (it is now blunt)",
                    )
            finally:
                await self._cleanup(self._quiet(self._set("XYScanner.Execute_Port_Colour", "")))

    async def dip(self, depth: float, bias: float) -> None:
        """The controlled crash: feedback off, ``bias``, a Z ramp ``depth`` into the surface
        and back, then bias and feedback as they were."""
        low, top = self._ready().z_bounds()
        z_range = top - low
        if not (math.isfinite(depth) and 0 < depth <= z_range):
            raise LimitError(f"matrix: dip depth {depth} m is outside (0, {z_range}] m")
        self._check_bias(bias, "dip bias")
        o = self.options
        async with self._guard():
            await self._settle()
            z_before = await self._float("Regulator.Z_Out")
            feedback = bool(await self._get("Regulator.Feedback_Loop_Enabled"))
            imaging_bias = await self._float("GapVoltageControl.Voltage")
            await self._set("Regulator.Enable_Z_Ramp_Slew_Rate", True)
            await self._set("Regulator.Z_Ramp_Slew_Rate", o.dip_slew_rate)
            await self._set("Regulator.Z_Ramp_Delay", o.dip_hold)
            await self._set("Regulator.Z_Ramp", o.z_ramp_sign * depth)
            await self._set("Regulator.Feedback_Loop_Enabled", False)
            crashed = False
            try:
                if bias != imaging_bias:
                    await self._set("GapVoltageControl.Voltage", float(bias))
                await self._execute(names.PORT_Z_RAMP)
                await asyncio.sleep(2 * depth / o.dip_slew_rate + o.dip_hold + o.settle_time)
                crashed = await self._crashed(z_before)
                if crashed:
                    raise TipCrashError(
                        "XYScanner.execute (ZRamp)",
                        "the tip ended fully retracted after the dip: it crashed",
                        hint="approach again and condition the tip (it is now blunt)",
                    )
            finally:
                await self._cleanup(self._restore(imaging_bias, feedback and not crashed))

    async def _restore(self, bias: float, feedback: bool) -> None:
        await self._quiet(self._set("GapVoltageControl.Voltage", bias))
        await self._quiet(self._set("XYScanner.Execute_Port_Colour", ""))
        if feedback:
            await self._quiet(self._set("Regulator.Feedback_Loop_Enabled", True))

    @staticmethod
    async def _quiet(work: Awaitable[None]) -> None:
        with contextlib.suppress(DriverError):
            await work

    async def coarse_move(self, axis: str, steps: int) -> None:
        self._ready()
        if Capability.COARSE_MOVE not in self._capabilities:
            raise self._unsupported("coarse moves (no PiezoControl in this experiment)")
        if axis not in names.COARSE:
            raise LimitError(f"matrix: unknown coarse axis {axis!r}; use {', '.join(names.COARSE)}")
        top = self.options.max_coarse_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= top:
            raise LimitError(
                f"matrix: coarse steps must be an integer in [1, {top}], got {steps!r}"
            )
        async with self._guard():
            await self._settle()
            await self._set("PiezoControl.Steps", steps)
            await self._set(names.COARSE[axis], 1)

    # ------------------------------------------------------------------ spectroscopy

    async def _max_points(self) -> int:
        try:
            return int(await self._float("Spectroscopy.Maximum_Points_1"))
        except NotSupportedError:
            return 10_000

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        """I(V) at the tip position: ``Spectroscopy`` device 1, one sweep, feedback off during
        it and on again after."""
        self._ready()
        self._check_bias(request.start, "sweep start")
        self._check_bias(request.stop, "sweep end")
        timing = (request.settle_time, request.integration_time)
        if not all(math.isfinite(t) and 0 <= t <= 10 for t in timing):
            raise LimitError(f"matrix: spectroscopy times {timing} s are outside [0, 10] s")
        unknown = [c for c in request.channels if c != "Current"]
        if unknown:
            raise NotSupportedError(f"matrix: cannot record spectrum channel(s) {unknown}")
        async with self._guard():
            await self._settle()
            top = await self._max_points()
            if request.start == request.stop or not 2 <= request.points <= top:
                raise LimitError(
                    f"matrix: a sweep needs different start and end and 2-{top} points, got "
                    f"{request.start}..{request.stop} V in {request.points}"
                )
            raster = request.settle_time + request.integration_time
            settings: dict[str, Value] = {
                "Spectroscopy.Spectroscopy_Mode": 0,
                "Spectroscopy.Device_1_Start": float(request.start),
                "Spectroscopy.Device_1_End": float(request.stop),
                "Spectroscopy.Device_1_Points": int(request.points),
                "Spectroscopy.Device_1_Repetitions": 1,
                "Spectroscopy.Enable_Device_1_Ramp_Reversal": False,
                "Spectroscopy.Raster_Time_1": raster,
            }
            data, position, bias = await self._sweep(
                settings, f"{self.options.current_channel}_V_Spec", request.points, raster
            )
        return Spectrum(
            sweep_name="Bias",
            sweep_unit="V",
            sweep=np.linspace(request.start, request.stop, request.points),
            channels={"Current": data * self.options.current_scale},
            units={"Current": "A"},
            position=position,
            metadata={
                "source": "matrix",
                "bias": bias,
                "MATRIX experiment": self.options.experiment,
            },
        )

    async def spectrum_z(
        self, start: float, stop: float, points: int, raster_time: float = 1e-3
    ) -> Spectrum:
        """I(z) at the tip position (``Spectroscopy`` device 2): z from ``start`` to ``stop``
        in m relative to the setpoint height (negative: closer, ASSUMED as MATRIX's I(Z) files
        show), never closer than ``max_z_spectroscopy_approach``. Not part of the driver
        contract, so the safety envelope does not see it: these checks are the only ones."""
        limits = self._ready()
        nearest = self.options.max_z_spectroscopy_approach
        half = limits.piezo_range[2] / 2
        for z in (start, stop):
            if not (math.isfinite(z) and -nearest <= z <= half):
                raise LimitError(f"matrix: I(z) from {z} m is outside [-{nearest}, {half}] m")
        if not (math.isfinite(raster_time) and 0 < raster_time <= 10):
            raise LimitError(f"matrix: raster time {raster_time} s is outside (0, 10] s")
        async with self._guard():
            await self._settle()
            top = await self._max_points()
            if start == stop or not 2 <= points <= top:
                raise LimitError(f"matrix: an I(z) sweep needs 2-{top} points over a range")
            settings: dict[str, Value] = {
                "Spectroscopy.Spectroscopy_Mode": 1,
                "Spectroscopy.Device_2_Start": float(start),
                "Spectroscopy.Device_2_End": float(stop),
                "Spectroscopy.Device_2_Points": int(points),
                "Spectroscopy.Device_2_Repetitions": 1,
                "Spectroscopy.Enable_Device_2_Ramp_Reversal": False,
                "Spectroscopy.Raster_Time_2": float(raster_time),
            }
            data, position, bias = await self._sweep(
                settings, f"{self.options.current_channel}_Z_Spec", points, raster_time
            )
        return Spectrum(
            sweep_name="Z",
            sweep_unit="m",
            sweep=np.linspace(start, stop, points),
            channels={"Current": data * self.options.current_scale},
            units={"Current": "A"},
            position=position,
            metadata={
                "source": "matrix",
                "bias": bias,
                "MATRIX experiment": self.options.experiment,
            },
        )

    async def _sweep(
        self, settings: dict[str, Value], view: str, points: int, raster: float
    ) -> tuple[np.ndarray, tuple[float, float], float]:
        for name, value in settings.items():
            await self._set(name, value)
        await self._set("Spectroscopy.Disable_Feedback_Loop", True)
        await self._set("Spectroscopy.Reenable_Feedback_Loop", True)
        bias = await self._float("GapVoltageControl.Voltage")
        x, y = await self._position()
        await self._set(f"View.{view}.Deliver_Data", True)
        curve = await self._event(f"View.{view}.Data")
        try:
            curve.arm()
            await self._execute(names.PORT_SPECTROSCOPY)
            event = await curve.wait(points * raster + self.options.timeout, f"the {view} curve")
        finally:
            await self._cleanup(curve.close(deliver=f"View.{view}.Deliver_Data"))
        data = np.asarray(event.values[0] if event.values else [], dtype=np.float64).ravel()
        if data.size != points:
            raise InstrumentError(f"View.{view}.Data", f"delivered {data.size} of {points} points")
        return data, (float(x), float(y)), bias


class _Waiter:
    """Waits for the next event of one observed entity after :meth:`arm` (events delivered
    before it, left over from an earlier operation, are dropped)."""

    def __init__(self, driver: MatrixDriver, name: str) -> None:
        self.driver = driver
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Event] = self.loop.create_future()
        self.armed = False  # read on the transport's thread

    def arm(self) -> None:
        self.armed = True

    def callback(self, event: Event) -> None:  # on a transport thread
        if not self.armed:
            return

        def settle() -> None:
            if not self.future.done():
                self.future.set_result(event)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(settle)

    async def wait(self, limit: float, what: str) -> Event:
        try:
            return await asyncio.wait_for(asyncio.shield(self.future), limit)
        except TimeoutError:
            raise DriverTimeoutError(f"matrix: {what} did not come within {limit:g} s") from None

    async def close(self, deliver: str | None = None) -> None:
        with contextlib.suppress(DriverError):
            await self.driver._observe(self.name, None)
        if deliver is not None:
            with contextlib.suppress(DriverError):
                await self.driver._set(deliver, False)
