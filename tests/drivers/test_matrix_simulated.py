"""The simulated MATRIX transport: its property tree (types, ranges, read-only and frozen
properties, constraints), functions, and the callback semantics of a real scan (asynchronous
start, lines on a transport thread, views that deliver only when asked, continuous scanning
until stopped)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from matrix_helpers import full, transport

from probepilot.errors import InstrumentError, NotSupportedError
from probepilot_matrix.simulated import SimulatedMatrixTransport
from probepilot_matrix.transport import Code, Event, MatrixRefused, MatrixUnknownName, ValueType

D, N, B, S, P, E = (
    ValueType.DOUBLE,
    ValueType.INTEGER,
    ValueType.BOOLEAN,
    ValueType.STRING,
    ValueType.PAIR,
    ValueType.ENUM,
)


@pytest.fixture
def matrix() -> Iterator[SimulatedMatrixTransport]:
    t = transport()
    t.open()
    yield t
    t.close()


class Recorder:
    """Collects events (and the threads they came on) until ``count`` have arrived."""

    def __init__(self, count: int = 1) -> None:
        self.events: list[Event] = []
        self.threads: set[int] = set()
        self.count = count
        self.done = threading.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())
        if len(self.events) >= self.count:
            self.done.set()


def small_frame(m: SimulatedMatrixTransport, points: int = 8, lines: int = 4) -> None:
    m.set(full("XYScanner.Width_Height_Constrained"), B, False)
    m.set(full("XYScanner.Points_Lines_Constrained"), B, False)
    m.set(full("XYScanner.Width"), D, 5e-9)
    m.set(full("XYScanner.Height"), D, 5e-9)
    m.set(full("XYScanner.Points"), N, points)
    m.set(full("XYScanner.Lines"), N, lines)
    m.set(full("XYScanner.Raster_Time"), D, 1e-3)


def test_properties_have_types_ranges_and_owners(matrix: SimulatedMatrixTransport) -> None:
    matrix.set(full("GapVoltageControl.Voltage"), D, -0.4)
    assert matrix.get(full("GapVoltageControl.Voltage"), D) == pytest.approx(-0.4)
    cases: list[tuple[Any, Code, Any]] = [
        (
            lambda: matrix.get(full("GapVoltageControl.Voltage"), N),
            Code.INVALIDTYPE,
            InstrumentError,
        ),
        (lambda: matrix.set(full("XYScanner.Points"), N, 1.5), Code.INVALIDTYPE, InstrumentError),
        (lambda: matrix.set(full("XYScanner.Points"), N, 5000), Code.REJECTED, InstrumentError),
        (lambda: matrix.set(full("XYScanner.Width"), D, math.nan), Code.REJECTED, InstrumentError),
        (
            lambda: matrix.set(full("GapVoltageControl.Voltage"), D, 11.0),
            Code.REJECTED,
            InstrumentError,
        ),
        (lambda: matrix.set(full("Regulator.Z_Out"), D, 0.0), Code.REJECTED, InstrumentError),
        (lambda: matrix.set(full("View.Z_Fw.Packet_Count"), N, 3), Code.REJECTED, InstrumentError),
        (lambda: matrix.get(full("Nothing.Here"), D), Code.UNKNOWNOBJECT, NotSupportedError),
        (lambda: matrix.get(full("XYScanner.Nothing"), D), Code.UNKNOWNPROPERTY, NotSupportedError),
        (
            lambda: matrix.get(full("View.Aux9_Fw.Deliver_Data"), B),
            Code.UNKNOWNOBJECT,
            NotSupportedError,
        ),
        (
            lambda: matrix.get("STM_Other::XYScanner.Width", D),
            Code.UNKNOWNOBJECT,
            NotSupportedError,
        ),
        (
            lambda: matrix.call(full("XYScanner.max"), "Nothing"),
            Code.UNKNOWNPROPERTY,
            NotSupportedError,
        ),
        (lambda: matrix.call(full("Experiment.pause")), Code.UNSUPPORTEDREQ, NotSupportedError),
    ]
    for action, code, kind in cases:
        with pytest.raises((MatrixRefused, MatrixUnknownName)) as info:
            action()
        assert info.value.code == code
        assert isinstance(info.value, kind)
    assert matrix.call(full("XYScanner.max"), "Width") == pytest.approx(1e-6)
    assert matrix.get(full("Experiment.State"), S) == "idle"


def test_width_height_and_points_lines_are_tied_until_released(
    matrix: SimulatedMatrixTransport,
) -> None:
    matrix.set(full("XYScanner.Width"), D, 20e-9)
    assert matrix.get(full("XYScanner.Height"), D) == pytest.approx(20e-9)
    matrix.set(full("XYScanner.Lines"), N, 64)
    assert matrix.get(full("XYScanner.Points"), N) == 64
    matrix.set(full("XYScanner.Width_Height_Constrained"), B, False)
    matrix.set(full("XYScanner.Points_Lines_Constrained"), B, False)
    matrix.set(full("XYScanner.Height"), D, 5e-9)
    matrix.set(full("XYScanner.Points"), N, 32)
    assert matrix.get(full("XYScanner.Width"), D) == pytest.approx(20e-9)
    assert matrix.get(full("XYScanner.Lines"), N) == 64


def test_start_returns_at_once_and_lines_arrive_on_another_thread() -> None:
    m = transport(sim_time_scale=1.0)  # real time: 8 lines of 2 x 8 ms, 128 ms a frame
    m.open()
    try:
        small_frame(m, lines=8)
        lines = Recorder(count=16)  # two frames: MATRIX scans on until stopped
        passes = Recorder(count=2)
        m.set(full("View.Z_Fw.Deliver_Data"), B, True)
        m.observe(full("View.Z_Fw.Data"), lines)
        m.observe(full("XYScanner.Y_Trace_Done"), passes)
        m.call(full("Experiment.start"))
        assert len(lines.events) < 8, "start waited for the scan"
        assert m.get(full("Experiment.State"), S) == "running"
        with pytest.raises(MatrixRefused, match="cannot change while the experiment runs"):
            m.set(full("XYScanner.Points"), N, 16)
        with pytest.raises(MatrixRefused, match="while the experiment scans"):
            m.call(full("XYScanner.execute"))
        assert lines.done.wait(10) and passes.done.wait(10)
        assert m.get(full("View.Z_Fw.Cycle_Count"), N) >= 2
        m.call(full("Experiment.stop"))
        assert m.get(full("Experiment.State"), S) == "idle"
        settled = len(lines.events)
        time.sleep(0.1)
        assert len(lines.events) == settled, "lines after stop"
    finally:
        m.close()
    assert threading.get_ident() not in lines.threads
    assert all(e.name == full("View.Z_Fw.Data") for e in lines.events)
    assert all(e.values[0].shape == (8,) and np.isfinite(e.values[0]).all() for e in lines.events)


def test_views_deliver_only_when_asked_and_observed(matrix: SimulatedMatrixTransport) -> None:
    small_frame(matrix, lines=3)
    quiet, loud, retrace = Recorder(), Recorder(count=3), Recorder(count=3)
    matrix.observe(full("View.I_Fw.Data"), quiet)  # observed, but Deliver_Data is false
    matrix.set(full("View.Z_Bw.Deliver_Data"), B, True)
    matrix.observe(full("View.Z_Bw.Data"), loud)
    matrix.observe(full("XYScanner.X_Retrace_Done"), retrace)
    matrix.call(full("Experiment.start"))
    assert loud.done.wait(10) and retrace.done.wait(10)
    matrix.call(full("Experiment.stop"))
    assert quiet.events == []
    assert matrix.get(full("View.I_Fw.Packet_Count"), N) >= 3  # measured all the same
    assert matrix.get(full("View.Z_Bw.Data_Size"), N) == 8
    matrix.observe(full("View.Z_Bw.Data"), None)
    with pytest.raises(MatrixUnknownName, match="not an observable"):
        matrix.observe(full("XYScanner.Width"), quiet)


def test_an_up_down_scan_delivers_both_passes(matrix: SimulatedMatrixTransport) -> None:
    small_frame(matrix, lines=3)
    matrix.set(full("XYScanner.Y_Retrace"), B, True)
    matrix.set(full("View.Z_Fw.Deliver_Data"), B, True)
    lines, down = Recorder(count=6), Recorder()
    matrix.observe(full("View.Z_Fw.Data"), lines)
    matrix.observe(full("XYScanner.Y_Retrace_Done"), down)
    matrix.call(full("Experiment.start"))
    assert down.done.wait(10)
    matrix.call(full("Experiment.stop"))
    assert len(lines.events) >= 6


def test_a_callback_that_raises_does_not_stop_the_instrument(
    matrix: SimulatedMatrixTransport,
) -> None:
    small_frame(matrix, lines=3)

    def explode(event: Event) -> None:
        raise RuntimeError("client bug")

    ok = Recorder(count=3)
    matrix.set(full("View.Z_Fw.Deliver_Data"), B, True)
    matrix.set(full("View.I_Fw.Deliver_Data"), B, True)
    matrix.observe(full("View.Z_Fw.Data"), explode)
    matrix.observe(full("View.I_Fw.Data"), ok)
    matrix.call(full("Experiment.start"))
    assert ok.done.wait(10)
    matrix.call(full("Experiment.stop"))


def test_move_goes_to_the_target_in_the_window_and_reports(
    matrix: SimulatedMatrixTransport,
) -> None:
    matrix.set(full("XYScanner.Width_Height_Constrained"), B, False)
    matrix.set(full("XYScanner.X_Offset"), D, 100e-9)
    matrix.set(full("XYScanner.Y_Offset"), D, -50e-9)
    matrix.set(full("XYScanner.Width"), D, 40e-9)
    matrix.set(full("XYScanner.Height"), D, 20e-9)
    matrix.set(full("XYScanner.Angle"), N, 90)
    matrix.set(full("XYScanner.Target_Position"), P, (1.0, 0.5))
    reached = Recorder()
    matrix.observe(full("XYScanner.XY_Position_Reached"), reached)
    matrix.call(full("XYScanner.move"))
    assert reached.done.wait(10)
    x, y = matrix.get(full("XYScanner.XY_Position_Report"), P)  # type: ignore[misc]
    # u along the rotated fast axis (+y), v along the rotated slow axis (-x)
    assert (x, y) == pytest.approx((100e-9 - 5e-9, -50e-9 + 20e-9), abs=1e-15)
    with pytest.raises(MatrixRefused, match=r"outside -1\.\.1"):
        matrix.set(full("XYScanner.Target_Position"), P, (1.5, 0.0))


def test_execute_ports(matrix: SimulatedMatrixTransport) -> None:
    matrix.set(full("XYScanner.Execute_Port_Colour"), S, "VPulse")
    matrix.set(full("GapVoltageControl.Tip_Cond_Pulse_Time"), D, 0.01)
    matrix.set(full("GapVoltageControl.Tip_Cond_Pulse_Preamp_Range"), E, 0)
    matrix.set(full("GapVoltageControl.Tip_Cond_Pulse_Voltage"), D, 2.0)
    with pytest.raises(MatrixRefused, match="outside the preamp range"):
        matrix.call(full("XYScanner.execute"))
    matrix.set(full("GapVoltageControl.Tip_Cond_Pulse_Preamp_Range"), E, 1)
    matrix.call(full("XYScanner.execute"))
    matrix.set(full("XYScanner.Execute_Port_Colour"), S, "Sparkle")
    with pytest.raises(MatrixRefused, match="no execute port"):
        matrix.call(full("XYScanner.execute"))
    # I(V) on the spectroscopy port, forward and reversed sweeps as two curves.
    matrix.set(full("PiezoControl.Move_Auto"), B, True)
    deadline = time.monotonic() + 10
    while matrix.get(full("PiezoControl.Move_Auto"), B) and time.monotonic() < deadline:
        time.sleep(0.01)
    curves = Recorder(count=2)
    matrix.set(full("View.I_V_Spec.Deliver_Data"), B, True)
    matrix.observe(full("View.I_V_Spec.Data"), curves)
    matrix.set(full("Spectroscopy.Device_1_Points"), N, 11)
    matrix.set(full("Spectroscopy.Raster_Time_1"), D, 1e-3)
    matrix.set(full("XYScanner.Execute_Port_Colour"), S, "")
    matrix.call(full("XYScanner.execute"))
    assert curves.done.wait(5)
    forward, backward = (e.values[0] for e in curves.events)
    assert forward.shape == backward.shape == (11,)
    assert forward[0] < 0 < forward[-1] and backward[0] > 0 > backward[-1]  # -1 V .. 1 V


def test_the_instrument_outlives_the_connection_and_a_closed_experiment_says_so() -> None:
    m = transport()
    m.open()
    m.set(full("GapVoltageControl.Voltage"), D, 0.33)
    m.close()
    m.close()
    with pytest.raises(Exception, match="not open"):
        m.get(full("GapVoltageControl.Voltage"), D)
    m.open()
    assert m.get(full("GapVoltageControl.Voltage"), D) == pytest.approx(0.33)
    m.close()
    closed = transport(sim_experiment_open=False)
    closed.open()
    try:
        assert closed.get(full("Experiment.State"), S) == "closed"
        with pytest.raises(MatrixUnknownName, match="not open"):
            closed.get(full("GapVoltageControl.Voltage"), D)
    finally:
        closed.close()
