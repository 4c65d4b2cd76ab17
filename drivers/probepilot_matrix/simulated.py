"""A simulated MATRIX: MATRIX's property tree, functions and data events on top of probepilot's
simulated microscope, behind the same :class:`~probepilot_matrix.transport.MatrixTransport`
interface as the real library.

The microscope is the registered ``sim`` driver, obtained by name from the plugin registry (this
package never imports another plugin) and driven through the ``Driver`` contract, on an event
loop in a thread of the transport's own, the way the real MATRIX runs beside its clients:

* properties have types and ranges: a wrong type is ``RMT_INVALIDTYPE``, a value out of range,
  or a scan parameter changed while the experiment runs, ``RMT_REJECTED``, an unknown element
  ``RMT_UNKNOWNOBJECT``, an unknown property ``RMT_UNKNOWNPROPERTY``; a read-only one cannot be
  written. ``XYScanner.Width_Height_Constrained`` and ``Points_Lines_Constrained`` (true at
  start, as in MATRIX) tie width to height and points to lines;
* ``Experiment.start`` returns at once; the XY scanner then scans in the background, up (and
  down again with ``Y_Retrace``), frame after frame (MATRIX scans on until stopped; each frame
  is a new *cycle* of the run), and every line goes to the observed ``View.<channel>.Data``
  entities whose ``Deliver_Data`` is true: forward lines left to right, backward lines (with
  ``X_Retrace``) right to left as acquired, plus ``X_Trace_Done``/``X_Retrace_Done`` per line
  and ``Y_Trace_Done``/``Y_Retrace_Done`` per pass;
* ``XYScanner.move`` goes to ``Target_Position`` (normalised to the scan window) in the
  background and then sends ``XY_Position_Reached``; ``XYScanner.execute`` runs the execute port
  where the tip is (``ZRamp``: a dip of ``-Regulator.Z_Ramp``; ``VPulse``: the
  ``Tip_Cond_Pulse``; ``""``: the spectroscopy of ``Spectroscopy_Mode``, its curve going to
  ``View.I_V_Spec.Data`` or ``View.I_Z_Spec.Data``) and returns when it is over;
* ``PiezoControl.Move_Auto`` (auto-approach) and ``Move_Backward`` (withdraw) read true while
  they run; writing ``n`` to a coarse property moves ``n`` times ``PiezoControl.Steps`` steps;
* like an instrument, it reports no tip crash: a crash leaves the tip withdrawn (Z_Out at the
  top of its range) and feedback off.

It implements the assumptions listed in :mod:`probepilot_matrix.names`; it tests the driver's
logic against them, not the assumptions against a real MATRIX.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from probepilot.contracts import Driver
from probepilot.errors import (
    DriverConnectionError,
    DriverError,
    DriverTimeoutError,
    InstrumentError,
    LimitError,
    NotSupportedError,
    TipCrashError,
)
from probepilot.model import LineProgress, ScanArea, ScanDirection, ScanSettings, SpectrumRequest
from probepilot_matrix import names
from probepilot_matrix.names import Prop
from probepilot_matrix.options import MatrixOptions
from probepilot_matrix.transport import Code, Event, EventCallback, Value, ValueType, error_for

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The simulated experiment's channels (views ``<channel>_Fw``/``_Bw``) and the model's names.
CHANNELS = {"Z": "Z", "I": "Current"}
SPECTRUM_VIEWS = ("I_V_Spec", "I_Z_Spec")
VIEWS = (*(f"{c}_{d}" for c in CHANNELS for d in ("Fw", "Bw")), *SPECTRUM_VIEWS)
PREAMP_RANGES = {0: 1.0, 1: 10.0}  # Tip_Cond_Pulse_Preamp_Range -> largest |V|
MAX_POINTS = 4096
MAX_CURRENT = 3.33e-7  # the preamp's range in the real parameter file
READ_ONLY = {
    "Regulator.Z_Out",
    "XYScanner.XY_Position_Report",
    "Spectroscopy.Maximum_Points_1",
    "Experiment.State",
    "Experiment.Result_File_Name",
    "Experiment.Result_File_Path",
}
#: Scan parameters MATRIX does not take while the experiment runs.
FROZEN_WHILE_RUNNING = {
    "XYScanner.Points",
    "XYScanner.Lines",
    "XYScanner.Raster_Time",
    "XYScanner.X_Retrace",
    "XYScanner.Y_Retrace",
    "XYScanner.Points_Lines_Constrained",
}
COARSE_AXES = {prop: axis for axis, prop in names.COARSE.items()}
#: Decay constant of the tunnelling current for I(z), 1/m (4.5 eV barrier).
KAPPA = 1.0867e10


class Refusal(Exception):
    """A request the simulated MATRIX refuses, with the code the library would return."""

    def __init__(self, code: Code, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(detail)


def _initial_values(options: MatrixOptions) -> dict[str, Value]:
    """Stored properties and their values at start (mostly those of the real parameter
    file in ../shared/stm-data/matrix-spm-rs)."""
    sim = options.simulated
    values: dict[str, Value] = {
        "GapVoltageControl.Tip_Cond_Pulse_Voltage": 2.2,
        "GapVoltageControl.Tip_Cond_Pulse_Time": 0.05,
        "GapVoltageControl.Tip_Cond_Enable_Feedback_Loop": True,
        "GapVoltageControl.Tip_Cond_Pulse_Preamp_Range": 1,
        "Regulator.Z_Ramp": 0.0,
        "Regulator.Z_Ramp_Delay": 0.0,
        "Regulator.Enable_Z_Ramp_Slew_Rate": False,
        "Regulator.Z_Ramp_Slew_Rate": 1e-7,
        "XYScanner.Width": 1e-7,
        "XYScanner.Height": 1e-7,
        "XYScanner.Width_Height_Constrained": True,
        "XYScanner.Points": 400,
        "XYScanner.Lines": 400,
        "XYScanner.Points_Lines_Constrained": True,
        "XYScanner.X_Offset": 0.0,
        "XYScanner.Y_Offset": 0.0,
        "XYScanner.Angle": 0,
        "XYScanner.Raster_Time": 0.0005,
        "XYScanner.X_Retrace": True,
        "XYScanner.Y_Retrace": False,
        "XYScanner.Target_Position": (0.0, 0.0),
        "XYScanner.Trigger_Execute_At_Target_Position": False,
        "XYScanner.Return_To_Stored_Position": False,
        "XYScanner.Execute_Port_Colour": "",
        "XYScanner.Enable_Drift_Compensation": False,
        "XYScanner.X_Drift": 0.0,
        "XYScanner.Y_Drift": 0.0,
        "PiezoControl.Steps": 1,
        "Spectroscopy.Spectroscopy_Mode": 0,
        "Spectroscopy.Device_1_Start": -1.0,
        "Spectroscopy.Device_1_End": 1.0,
        "Spectroscopy.Device_1_Points": 101,
        "Spectroscopy.Device_1_Repetitions": 1,
        "Spectroscopy.Enable_Device_1_Ramp_Reversal": True,
        "Spectroscopy.Raster_Time_1": 0.02,
        "Spectroscopy.Device_2_Start": 1e-9,
        "Spectroscopy.Device_2_End": -4e-9,
        "Spectroscopy.Device_2_Points": 101,
        "Spectroscopy.Device_2_Repetitions": 1,
        "Spectroscopy.Enable_Device_2_Ramp_Reversal": True,
        "Spectroscopy.Raster_Time_2": 0.001,
        "Spectroscopy.Disable_Feedback_Loop": True,
        "Spectroscopy.Reenable_Feedback_Loop": True,
        "Spectroscopy.Maximum_Points_1": 500,
        "Experiment.Result_File_Name": sim.result_file_name or time.strftime("%Y%m%d"),
        "Experiment.Result_File_Path": "",
    }
    for prop in names.COARSE.values():
        values[prop] = 0
    for view in VIEWS:
        values[f"View.{view}.Deliver_Data"] = False
        for counter in ("Data_Size", "Run_Count", "Cycle_Count", "Packet_Count"):
            values[f"View.{view}.{counter}"] = 0
    return values


def as_float(value: Value) -> float:
    """A stored number (the tree holds what ``_typed`` accepted)."""
    assert isinstance(value, int | float), value
    return float(value)


def as_int(value: Value) -> int:
    assert isinstance(value, int), value
    return int(value)


def _number(value: Value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refusal(Code.INVALIDTYPE, f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise Refusal(Code.REJECTED, f"{value!r} is not a finite number")
    return number


class SimulatedMatrix:
    """The simulated instrument; every coroutine runs on the transport's event loop."""

    def __init__(self, options: MatrixOptions, inner: Driver) -> None:
        self.options = options
        self.experiment = options.experiment
        self.inner = inner
        self.values = _initial_values(options)
        self.observers: dict[str, EventCallback] = {}
        self.scanning: asyncio.Task[None] | None = None
        self.busy: dict[str, asyncio.Task[None]] = {}  # Move_Auto, Move_Backward, move
        self.last_error = ""  # why the last background scan ended early, if it failed
        self._rng = np.random.default_rng(options.simulated.seed + 7)
        sim = options.simulated
        self.piezo_range = sim.piezo_range
        self.elements = {n.partition(".")[0] for n in names.PROPERTIES} | {"View"}

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.stop()
        for task in list(self.busy.values()):
            task.cancel()
        if self.busy:
            await asyncio.wait(list(self.busy.values()))
        self.busy.clear()
        self.observers.clear()
        await self.inner.close()

    @property
    def running(self) -> bool:
        return self.scanning is not None and not self.scanning.done()

    # ------------------------------------------------------------------ names

    def relative(self, name: str) -> str:
        experiment, relative = names.split(name)
        if not self.options.simulated.experiment_open:
            if relative == "Experiment.State" and experiment in ("", self.experiment):
                return relative
            raise Refusal(Code.UNKNOWNOBJECT, f"experiment {self.experiment!r} is not open")
        if experiment not in ("", self.experiment):
            raise Refusal(Code.UNKNOWNOBJECT, f"no experiment {experiment!r} is open")
        return relative

    def prop(self, relative: str) -> Prop:
        element, _, rest = relative.partition(".")
        if element == "View":
            view = rest.partition(".")[0]
            if view not in VIEWS:
                raise Refusal(Code.UNKNOWNOBJECT, f"no view {view!r} in this experiment")
        elif element not in self.elements:
            raise Refusal(Code.UNKNOWNOBJECT, f"no element {element!r} in this experiment")
        try:
            return names.prop(relative)
        except KeyError:
            raise Refusal(Code.UNKNOWNPROPERTY, f"{element} has no property {rest!r}") from None

    # ------------------------------------------------------------------ properties

    async def get(self, name: str, kind: ValueType) -> Value:
        relative = self.relative(name)
        prop = self.prop(relative)
        if prop.kind is not kind:
            raise Refusal(Code.INVALIDTYPE, f"{relative} is {prop.kind.name}, not {kind.name}")
        match relative:
            case "GapVoltageControl.Voltage":
                return await self.inner.get_bias()
            case "Regulator.Setpoint_1":
                return await self.inner.get_setpoint()
            case "Regulator.Feedback_Loop_Enabled":
                return await self.inner.get_feedback()
            case "Regulator.Z_Out":
                low, high = (await self.inner.limits()).z_bounds()
                return (await self.inner.get_tip_position()).z - (low + high) / 2
            case "XYScanner.XY_Position_Report":
                pos = await self.inner.get_tip_position()
                return (pos.x, pos.y)
            case "PiezoControl.Move_Auto" | "PiezoControl.Move_Backward":
                task = self.busy.get(relative)
                return task is not None and not task.done()
            case "Experiment.State":
                if not self.options.simulated.experiment_open:
                    return "closed"
                return "running" if self.running else "idle"
        return self.values[relative]

    async def set(self, name: str, kind: ValueType, value: Value) -> None:
        relative = self.relative(name)
        prop = self.prop(relative)
        if prop.kind is not kind:
            raise Refusal(Code.INVALIDTYPE, f"{relative} is {prop.kind.name}, not {kind.name}")
        if relative in READ_ONLY or relative.rpartition(".")[2] in (
            "Data_Size",
            "Run_Count",
            "Cycle_Count",
            "Packet_Count",
        ):
            raise Refusal(Code.REJECTED, f"{relative} is read-only")
        if relative in FROZEN_WHILE_RUNNING and self.running:
            raise Refusal(Code.REJECTED, f"{relative} cannot change while the experiment runs")
        value = self._typed(prop, value)
        await self._apply(relative, value)

    def _typed(self, prop: Prop, value: Value) -> Value:
        kind = prop.kind
        if kind is ValueType.DOUBLE:
            return _number(value)
        if kind in (ValueType.INTEGER, ValueType.ENUM):
            if isinstance(value, bool) or not isinstance(value, int):
                raise Refusal(Code.INVALIDTYPE, f"{value!r} is not an integer")
            return value
        if kind is ValueType.BOOLEAN:
            if not isinstance(value, bool):
                raise Refusal(Code.INVALIDTYPE, f"{value!r} is not a boolean")
            return value
        if kind is ValueType.STRING:
            if not isinstance(value, str):
                raise Refusal(Code.INVALIDTYPE, f"{value!r} is not a string")
            return value
        if not (isinstance(value, tuple) and len(value) == 2):
            raise Refusal(Code.INVALIDTYPE, f"{value!r} is not a pair")
        return (_number(value[0]), _number(value[1]))

    async def _apply(self, relative: str, value: Value) -> None:
        hx, hy, hz = (r / 2 for r in self.piezo_range)

        def within(low: float, high: float) -> None:
            number = as_float(value)
            if not low <= number <= high:
                raise Refusal(Code.REJECTED, f"{relative} {value!r} is outside [{low}, {high}]")

        match relative:
            case "GapVoltageControl.Voltage":
                await self._inner(self.inner.set_bias(as_float(value)))
                return
            case "Regulator.Setpoint_1":
                within(0.0, MAX_CURRENT)
                await self._inner(self.inner.set_setpoint(as_float(value)))
                return
            case "Regulator.Feedback_Loop_Enabled":
                await self._inner(self.inner.set_feedback(bool(value)))
                return
            case "PiezoControl.Move_Auto" | "PiezoControl.Move_Backward":
                if value and not (relative in self.busy and not self.busy[relative].done()):
                    work = (
                        self.inner.approach()
                        if relative.endswith("Auto")
                        else self.inner.withdraw()
                    )
                    self.busy[relative] = asyncio.create_task(self._background(work, relative))
                return
            case _ if relative in COARSE_AXES:
                if as_int(value) < 0:
                    raise Refusal(Code.REJECTED, f"{relative} {value} is negative")
                steps = as_int(value) * as_int(self.values["PiezoControl.Steps"])
                if steps:
                    await self._inner(self.inner.coarse_move(COARSE_AXES[relative], steps))
                return
            case "XYScanner.Width" | "XYScanner.Height":
                within(1e-12, 2 * (hx if relative.endswith("Width") else hy))
            case "XYScanner.X_Offset":
                within(-hx, hx)
            case "XYScanner.Y_Offset":
                within(-hy, hy)
            case "XYScanner.Points" | "XYScanner.Lines":
                within(2, MAX_POINTS)
            case "XYScanner.Angle":
                within(-180, 180)
            case "XYScanner.Raster_Time":
                within(1e-6, 10.0)
            case "XYScanner.Target_Position":
                assert isinstance(value, tuple)
                if not all(-1.0 <= v <= 1.0 for v in value):
                    raise Refusal(Code.REJECTED, f"target {value} is outside -1..1")
            case "GapVoltageControl.Tip_Cond_Pulse_Voltage":
                within(-10.0, 10.0)
            case "GapVoltageControl.Tip_Cond_Pulse_Time":
                within(1e-6, 10.0)
            case "GapVoltageControl.Tip_Cond_Pulse_Preamp_Range":
                within(0, 1)
            case "Regulator.Z_Ramp":
                within(-2 * hz, 2 * hz)
            case "Regulator.Z_Ramp_Slew_Rate":
                within(1e-12, 1.0)
            case "Regulator.Z_Ramp_Delay":
                within(0.0, 10.0)
            case "PiezoControl.Steps":
                within(1, 65535)
            case "Spectroscopy.Spectroscopy_Mode":
                within(0, 1)
            case "Spectroscopy.Device_1_Start" | "Spectroscopy.Device_1_End":
                within(-10.0, 10.0)
            case "Spectroscopy.Device_2_Start" | "Spectroscopy.Device_2_End":
                within(-1e-7, 1e-7)
            case "Spectroscopy.Device_1_Points" | "Spectroscopy.Device_2_Points":
                within(2, as_int(self.values["Spectroscopy.Maximum_Points_1"]))
            case "Spectroscopy.Device_1_Repetitions" | "Spectroscopy.Device_2_Repetitions":
                within(1, 100)
            case "Spectroscopy.Raster_Time_1" | "Spectroscopy.Raster_Time_2":
                within(0.0, 10.0)
            case "XYScanner.X_Drift" | "XYScanner.Y_Drift" | "XYScanner.Enable_Drift_Compensation":
                await self._drift(relative, value)
        self.values[relative] = value
        pairs = {
            "XYScanner.Width_Height_Constrained": ("XYScanner.Width", "XYScanner.Height"),
            "XYScanner.Points_Lines_Constrained": ("XYScanner.Points", "XYScanner.Lines"),
        }
        for constraint, tied in pairs.items():
            if relative in tied and self.values[constraint]:
                for name in tied:
                    self.values[name] = value

    async def _drift(self, relative: str, value: Value) -> None:
        state = {
            k: self.values[f"XYScanner.{k}"]
            for k in ("Enable_Drift_Compensation", "X_Drift", "Y_Drift")
        }
        state[relative.partition(".")[2]] = value
        on = bool(state["Enable_Drift_Compensation"])
        vx, vy = (as_float(state[k]) if on else 0.0 for k in ("X_Drift", "Y_Drift"))
        await self._inner(self.inner.set_drift_compensation(vx, vy, 0.0))

    async def _inner(self, work: Awaitable[T], *, conditioning: bool = False) -> T | None:
        """Run an operation of the microscope; its refusals become MATRIX's, and a crash is
        silent, as on an instrument (the tip ends withdrawn). The simulator reports a crash by
        a dip as an ``InstrumentError``: silent too, for ``conditioning`` actions."""
        try:
            return await work
        except TipCrashError as exc:
            log.warning("simulated MATRIX: %s", exc)
            return None
        except InstrumentError as exc:
            if not conditioning:
                raise Refusal(Code.INTERNALFAILURE, str(exc)) from None
            log.warning("simulated MATRIX: %s", exc)
            return None
        except LimitError as exc:
            raise Refusal(Code.REJECTED, exc.message) from None
        except NotSupportedError as exc:
            raise Refusal(Code.UNSUPPORTEDREQ, exc.message) from None
        except DriverError as exc:
            raise Refusal(Code.INTERNALFAILURE, str(exc)) from None

    async def _background(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        try:
            await self._inner(work)
        except Refusal as exc:
            log.warning("simulated MATRIX: %s failed: %s", what, exc.detail)

    # ------------------------------------------------------------------ events

    def observe(self, name: str, callback: EventCallback | None) -> None:
        relative = self.relative(name)
        element, _, rest = relative.partition(".")
        known = relative in names.EVENTS or (
            element == "View" and rest.partition(".")[0] in VIEWS and rest.endswith(".Data")
        )
        if not known:
            self.prop(relative)  # unknown element or property: its code
            raise Refusal(Code.UNSUPPORTEDREQ, f"{relative} is not an observable entity")
        if callback is None:
            self.observers.pop(relative, None)
        else:
            self.observers[relative] = callback

    def emit(self, relative: str, *values: Value) -> None:
        callback = self.observers.get(relative)
        if callback is None:
            return
        try:
            callback(Event(names.full(self.experiment, relative), values))
        except Exception:
            log.exception("simulated MATRIX: the callback for %s failed", relative)

    def deliver(self, view: str, data: np.ndarray) -> None:
        """Send ``data`` from ``view`` if it delivers; count the packet either way."""
        prefix = f"View.{view}."
        self.values[prefix + "Packet_Count"] = as_int(self.values[prefix + "Packet_Count"]) + 1
        self.values[prefix + "Data_Size"] = len(data)
        if self.values[prefix + "Deliver_Data"]:
            self.emit(prefix + "Data", np.array(data, dtype=np.float64))

    # ------------------------------------------------------------------ functions

    async def call(self, name: str, args: tuple[Value, ...]) -> Value | None:
        relative = self.relative(name)
        element, _, function = relative.partition(".")
        if element not in self.elements:
            raise Refusal(Code.UNKNOWNOBJECT, f"no element {element!r} in this experiment")
        match relative:
            case "Experiment.start":
                self.start()
                return None
            case "Experiment.stop":
                await self.stop()
                return None
            case "Experiment.pause" | "Experiment.resume":
                raise Refusal(Code.UNSUPPORTEDREQ, "the simulated MATRIX does not pause scans")
            case "XYScanner.move":
                self._idle("move the tip")
                task = self.busy.get("move")
                if task is not None and not task.done():
                    raise Refusal(Code.REJECTED, "the tip is still moving")
                self.busy["move"] = asyncio.create_task(self._move())
                return None
            case "XYScanner.execute":
                self._idle("execute")
                await self._execute()
                return None
            case "XYScanner.max" | "XYScanner.min":
                return self._bound(function, args)
        raise Refusal(Code.UNKNOWNPROPERTY, f"{element} has no function {function!r}")

    def _idle(self, what: str) -> None:
        if self.running:
            raise Refusal(Code.REJECTED, f"cannot {what} while the experiment scans")

    def _bound(self, which: str, args: tuple[Value, ...]) -> float:
        if len(args) != 1 or not isinstance(args[0], str):
            raise Refusal(Code.REJECTED, f"XYScanner.{which} takes one property name")
        hx, hy, _ = self.piezo_range
        bounds = {
            "Width": (1e-12, hx),
            "Height": (1e-12, hy),
            "X_Offset": (-hx / 2, hx / 2),
            "Y_Offset": (-hy / 2, hy / 2),
            "Points": (2.0, float(MAX_POINTS)),
            "Lines": (2.0, float(MAX_POINTS)),
            "Raster_Time": (1e-6, 10.0),
            "Angle": (-180.0, 180.0),
        }
        if args[0] not in bounds:
            raise Refusal(Code.UNKNOWNPROPERTY, f"XYScanner has no bounded property {args[0]!r}")
        low, high = bounds[args[0]]
        return low if which == "min" else high

    def window(self) -> tuple[float, float, float, float, float]:
        v = self.values
        return (
            as_float(v["XYScanner.X_Offset"]),
            as_float(v["XYScanner.Y_Offset"]),
            as_float(v["XYScanner.Width"]),
            as_float(v["XYScanner.Height"]),
            math.radians(as_float(v["XYScanner.Angle"])),
        )

    async def _move(self) -> None:
        cx, cy, w, h, angle = self.window()
        target = self.values["XYScanner.Target_Position"]
        assert isinstance(target, tuple)
        u, v = target
        dx, dy = u * w / 2, v * h / 2
        c, s = math.cos(angle), math.sin(angle)
        x, y = cx + c * dx - s * dy, cy + s * dx + c * dy
        try:
            await self._inner(self.inner.set_tip_position(x, y))
            if self.values["XYScanner.Trigger_Execute_At_Target_Position"]:
                await self._execute()
        except Refusal as exc:
            log.warning("simulated MATRIX: the move failed: %s", exc.detail)
        self.emit("XYScanner.XY_Position_Reached", True)

    async def _execute(self) -> None:
        port = self.values["XYScanner.Execute_Port_Colour"]
        v = self.values
        if port == names.PORT_Z_RAMP:
            depth = -as_float(v["Regulator.Z_Ramp"])
            if depth > 0:
                bias = await self.inner.get_bias()
                await self._inner(self.inner.dip(depth, bias), conditioning=True)
        elif port == names.PORT_V_PULSE:
            voltage = as_float(v["GapVoltageControl.Tip_Cond_Pulse_Voltage"])
            top = PREAMP_RANGES[as_int(v["GapVoltageControl.Tip_Cond_Pulse_Preamp_Range"])]
            if abs(voltage) > top:
                raise Refusal(
                    Code.REJECTED, f"pulse of {voltage} V is outside the preamp range +-{top} V"
                )
            width = as_float(v["GapVoltageControl.Tip_Cond_Pulse_Time"])
            await self._inner(self.inner.bias_pulse(voltage, width), conditioning=True)
        elif port == names.PORT_SPECTROSCOPY:
            await self._spectroscopy()
        else:
            raise Refusal(Code.REJECTED, f"no execute port {port!r}")

    # ------------------------------------------------------------------ spectroscopy

    async def _spectroscopy(self) -> None:
        v = self.values
        if v["Spectroscopy.Spectroscopy_Mode"] == 0:
            device, view = "Device_1", "I_V_Spec"
        else:
            device, view = "Device_2", "I_Z_Spec"
        start = as_float(v[f"Spectroscopy.{device}_Start"])
        end = as_float(v[f"Spectroscopy.{device}_End"])
        points = as_int(v[f"Spectroscopy.{device}_Points"])
        raster = as_float(v[f"Spectroscopy.Raster_Time_{device[-1]}"])
        reverse = bool(v[f"Spectroscopy.Enable_{device}_Ramp_Reversal"])
        for _ in range(as_int(v[f"Spectroscopy.{device}_Repetitions"])):
            sweeps = [(start, end), (end, start)] if reverse else [(start, end)]
            for a, b in sweeps:
                if device == "Device_1":
                    request = SpectrumRequest(a, b, points, raster / 2, raster / 2, ("Current",))
                    spectrum = await self._inner(self.inner.spectrum(request))
                    data = (
                        spectrum.channels["Current"] if spectrum is not None else np.zeros(points)
                    )
                else:
                    data = await self._current_vs_z(a, b, points)
                self.deliver(view, data)

    async def _current_vs_z(self, start: float, end: float, points: int) -> np.ndarray:
        """I(z): the ideal exponential from the setpoint at z = 0 (negative z is closer to
        the surface), 3 % noise, clipped to the preamp's range; nothing when withdrawn."""
        pos = await self.inner.get_tip_position()
        top = (await self.inner.limits()).z_bounds()[1]
        if pos.z >= top - 1e-12:
            return np.zeros(points)
        z = np.linspace(start, end, points)
        current = await self.inner.get_setpoint() * np.exp(-2 * KAPPA * z)
        current *= 1 + 0.03 * self._rng.standard_normal(points)
        return np.asarray(np.clip(current, 0.0, MAX_CURRENT), dtype=np.float64)

    # ------------------------------------------------------------------ scanning

    def start(self) -> None:
        if self.running:
            return
        # Refuse at once what the microscope would refuse (scan speed, frame outside the
        # range), as MATRIX refuses impossible scanner settings, rather than failing later.
        # The simulator's own check is used where it offers one (duck-typed, no import).
        validate = getattr(getattr(self.inner, "microscope", None), "validate_scan", None)
        if callable(validate):
            try:
                validate(self._settings("up"))
            except LimitError as exc:
                raise Refusal(
                    Code.REJECTED, f"the XY scanner cannot scan so: {exc.message}"
                ) from None
        self.last_error = ""
        for view in VIEWS:
            prefix = f"View.{view}."
            self.values[prefix + "Run_Count"] = as_int(self.values[prefix + "Run_Count"]) + 1
            self.values[prefix + "Cycle_Count"] = 0
        self.scanning = asyncio.create_task(self._scan_frames(), name="simulated-matrix-scan")

    async def stop(self) -> None:
        task = self.scanning
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    def _settings(self, direction: ScanDirection) -> ScanSettings:
        cx, cy, w, h, angle = self.window()
        points = as_int(self.values["XYScanner.Points"])
        lines = as_int(self.values["XYScanner.Lines"])
        raster = as_float(self.values["XYScanner.Raster_Time"])
        area = ScanArea((cx, cy), (w, h), points, lines, angle)
        return ScanSettings(area, raster * points, direction, ("Z", "Current"))

    async def _scan_frames(self) -> None:
        """Frame after frame until stopped, as MATRIX's XY scanner does."""
        try:
            while True:
                for view in VIEWS:
                    prefix = f"View.{view}."
                    self.values[prefix + "Cycle_Count"] = (
                        as_int(self.values[prefix + "Cycle_Count"]) + 1
                    )
                    self.values[prefix + "Packet_Count"] = 0
                passes: list[ScanDirection] = ["up"]
                if self.values["XYScanner.Y_Retrace"]:
                    passes.append("down")
                for direction in passes:
                    settings = self._settings(direction)
                    await self.inner.scan(settings, self._line)
                    done = "Y_Trace_Done" if direction == "up" else "Y_Retrace_Done"
                    self.emit(f"XYScanner.{done}", True)
                # The scanner returns to the start of the frame before the next cycle.
                scale = self.options.simulated.time_scale
                line_time = settings.line_time
                await asyncio.sleep(2 * line_time / scale if scale > 0 else 0.02)
        except asyncio.CancelledError:
            raise
        except DriverError as exc:
            self.last_error = str(exc)
            log.warning("simulated MATRIX: the scan stopped: %s", exc)

    def _line(self, progress: LineProgress) -> None:
        retrace = bool(self.values["XYScanner.X_Retrace"])
        for channel, model in CHANNELS.items():
            self.deliver(f"{channel}_Fw", progress.forward[model])
        self.emit("XYScanner.X_Trace_Done", True)
        if retrace:
            for channel, model in CHANNELS.items():
                # As acquired: the backward line runs right to left.
                self.deliver(f"{channel}_Bw", progress.backward[model][::-1])
            self.emit("XYScanner.X_Retrace_Done", True)


def make_inner(options: MatrixOptions) -> Driver:
    """The simulated microscope: the registered ``sim`` driver, built through the registry."""
    from probepilot.config import load_config

    sim = options.simulated
    config, manager = load_config(None)
    inner: Driver = config.build(
        manager,
        "driver",
        "sim",
        overrides={
            "seed": sim.seed,
            "surface": sim.surface,
            "tip": sim.tip,
            "time_scale": sim.time_scale,
            "piezo_range": list(sim.piezo_range),
        },
    )
    return inner


class SimulatedMatrixTransport:
    """The simulated MATRIX behind the :class:`~probepilot_matrix.transport.MatrixTransport`
    interface, running on an event loop in a thread of its own.

    Like MATRIX itself, the instrument outlives a client's connection: :meth:`close` ends the
    thread, and :meth:`open` again finds the same microscope and properties.

    :param make_driver: builds the microscope (default: the registered ``sim`` driver).
    """

    def __init__(
        self,
        options: MatrixOptions | None = None,
        *,
        make_driver: Callable[[MatrixOptions], Driver] = make_inner,
    ) -> None:
        self.options = options or MatrixOptions(transport="simulated")
        self.description = f"simulated MATRIX (seed {self.options.simulated.seed})"
        self._make_driver = make_driver
        self.matrix: SimulatedMatrix | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _run(self, work: Coroutine[Any, Any, T], what: str, timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None:
            work.close()
            raise DriverConnectionError(f"matrix: {what}: the simulated MATRIX is not open")
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, loop)
        try:
            return future.result(self.options.timeout if timeout is None else timeout)
        except TimeoutError:
            future.cancel()
            raise DriverTimeoutError(
                f"matrix: {what} did not return within {self.options.timeout:g} s"
            ) from None
        except Refusal as exc:
            raise error_for(
                exc.code, what.partition(" ")[0], what.partition(" ")[2], exc.detail
            ) from None

    def open(self) -> None:
        if self._loop is not None:
            return
        if self.matrix is None:
            self.matrix = SimulatedMatrix(self.options, self._make_driver(self.options))
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="simulated-matrix", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self.matrix.open(), "init", max(self.options.timeout, 30.0))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self.matrix is not None:
            with contextlib.suppress(DriverError, RuntimeError):
                self._run(self.matrix.close(), "rundown")
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10.0)
        if not loop.is_running():
            loop.close()

    def _matrix(self) -> SimulatedMatrix:
        if self.matrix is None:
            raise DriverConnectionError("matrix: the simulated MATRIX is not open")
        return self.matrix

    def get(self, name: str, kind: ValueType) -> Value:
        return self._run(self._matrix().get(name, kind), f"get {name}")

    def set(self, name: str, kind: ValueType, value: Value) -> None:
        self._run(self._matrix().set(name, kind, value), f"set {name}")

    def call(self, name: str, *args: Value) -> Value | None:
        return self._run(self._matrix().call(name, args), f"call {name}")

    def observe(self, name: str, callback: EventCallback | None) -> None:
        matrix = self._matrix()

        async def observe() -> None:
            matrix.observe(name, callback)

        self._run(observe(), f"observe {name}")

    def inspect(self, work: Callable[[SimulatedMatrix], Awaitable[T]]) -> T:
        """Run ``work(matrix)`` on the instrument's loop (tests look at the ground truth)."""

        async def run() -> T:
            return await work(self._matrix())

        return self._run(run(), "inspect")
