"""The ctypes transport (``RemoteAccess_API.dll``) without the DLL: argument marshalling against
a fake library object, the return codes as typed errors, events, timeouts, and what happens
where the DLL cannot exist. The driver contract suite also runs over it, the fake library
answering from the simulated MATRIX."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from matrix_fake_library import FakeRemoteAccess
from matrix_helpers import full, options, transport

from probepilot.errors import DriverConnectionError, DriverTimeoutError, InstrumentError
from probepilot.testing import DriverConformance
from probepilot_matrix import dll
from probepilot_matrix.dll import Buffers, RemoteAccessTransport, String
from probepilot_matrix.driver import MatrixDriver
from probepilot_matrix.transport import (
    Code,
    Event,
    MatrixRefused,
    MatrixUnknownName,
    ValueType,
)


@pytest.fixture
def fake() -> Any:
    backend = transport()
    library = FakeRemoteAccess(backend)
    yield library
    backend.close()


@pytest.fixture
def remote(fake: FakeRemoteAccess) -> Any:
    t = RemoteAccessTransport(options(poll_interval=0.001, timeout=2.0), library=fake)
    t.open()
    yield t
    t.close()


def test_the_module_imports_everywhere_and_says_why_the_dll_is_unavailable() -> None:
    t = RemoteAccessTransport(options(transport="dll"))
    if sys.platform == "win32":  # pragma: no cover - the CI runs on Linux
        pytest.skip("on Windows the DLL may exist")
    with pytest.raises(DriverConnectionError, match=r"RemoteAccess_API\.dll is unavailable"):
        t.open()
    t.close()  # closing a transport that never opened is fine


def test_a_missing_dll_on_windows_names_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(dll, "on_windows", lambda: True)
    t = RemoteAccessTransport(options(transport="dll", installation=str(tmp_path)))
    with pytest.raises(DriverConnectionError, match="does not exist") as info:
        t.open()
    assert "SDK" in str(info.value) and "RemoteAccess_API.dll" in str(info.value)


def test_a_dll_of_the_other_bitness_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(dll, "on_windows", lambda: True)
    library = tmp_path / "SDK" / "RemoteAccess" / "RemoteAccess_API.dll"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"MZ")

    def refuse(path: str) -> None:
        assert path == str(library)
        raise OSError("[WinError 193] %1 is not a valid Win32 application")

    monkeypatch.setattr(dll.ctypes, "CDLL", refuse)
    t = RemoteAccessTransport(options(transport="dll", installation=str(tmp_path)))
    with pytest.raises(DriverConnectionError, match="WinError 193") as info:
        t.open()
    assert "-bit; the DLL must be too" in str(info.value)


def test_structures_have_the_layout_mate_uses() -> None:
    assert ctypes.sizeof(String) == 4 + 256
    buffers = Buffers(2, 10)
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        # int x4, double, String**, double x2, RealArray**: 16 + 8 + 8 + 16 + 8, packed to 8
        assert ctypes.sizeof(buffers.flat_value) == 56
        assert ctypes.sizeof(buffers.real_array) == 8 + 8 * 10
    assert buffers.values.length == 2
    buffers.reset()
    assert buffers.values.values[1].realArray[0][0].length == 10
    assert buffers.values.values[1].string[0][0].length == 255


def test_properties_are_marshalled_as_the_library_expects(
    remote: RemoteAccessTransport, fake: FakeRemoteAccess
) -> None:
    remote.set(full("GapVoltageControl.Voltage"), ValueType.DOUBLE, 0.25)
    assert remote.get(full("GapVoltageControl.Voltage"), ValueType.DOUBLE) == pytest.approx(0.25)
    remote.set(full("XYScanner.Points_Lines_Constrained"), ValueType.BOOLEAN, False)
    assert remote.get(full("XYScanner.Points_Lines_Constrained"), ValueType.BOOLEAN) is False
    remote.set(full("XYScanner.Points"), ValueType.INTEGER, 64)
    assert remote.get(full("XYScanner.Points"), ValueType.INTEGER) == 64
    remote.set(full("Spectroscopy.Spectroscopy_Mode"), ValueType.ENUM, 1)
    assert remote.get(full("Spectroscopy.Spectroscopy_Mode"), ValueType.ENUM) == 1
    remote.set(full("XYScanner.Execute_Port_Colour"), ValueType.STRING, "ZRamp")
    assert remote.get(full("XYScanner.Execute_Port_Colour"), ValueType.STRING) == "ZRamp"
    remote.set(full("XYScanner.Target_Position"), ValueType.PAIR, (0.5, -0.25))
    assert remote.get(full("XYScanner.Target_Position"), ValueType.PAIR) == (0.5, -0.25)
    assert remote.call(full("XYScanner.max"), "Width") == pytest.approx(1e-6)
    assert remote.call(full("Experiment.stop")) is None
    called = [name for name, _ in fake.calls]
    assert called[:3] == ["setHost", "init", "setScopeName"]
    assert {"setDoubleProperty", "getStringPropertyByDesc", "setPairProperty"} <= set(called)
    # Every call ran on the transport's one library thread, never the caller's.
    assert threading.get_ident() not in fake.threads and len(fake.threads) == 1
    _, args = next(c for c in fake.calls if c[0] == "callFunctionByDesc")
    assert args[0] == full("XYScanner.max").encode()


def test_return_codes_become_typed_errors(
    remote: RemoteAccessTransport, fake: FakeRemoteAccess
) -> None:
    with pytest.raises(MatrixRefused) as refused:
        remote.set(full("XYScanner.Points"), ValueType.INTEGER, 100_000)
    assert isinstance(refused.value, InstrumentError)
    assert refused.value.code == Code.REJECTED and "RMT_REJECTED" in str(refused.value)
    with pytest.raises(MatrixRefused, match="RMT_INVALIDTYPE"):
        remote.get(full("XYScanner.Points"), ValueType.DOUBLE)
    with pytest.raises(MatrixUnknownName, match="RMT_UNKNOWNOBJECT"):
        remote.get(full("Nothing.Here"), ValueType.DOUBLE)
    with pytest.raises(MatrixUnknownName, match="RMT_UNKNOWNPROPERTY"):
        remote.get(full("XYScanner.Nothing"), ValueType.DOUBLE)
    fake.codes["getDoubleProperty"] = Code.DISCONNECTED
    with pytest.raises(DriverConnectionError, match="RMT_DISCONNECTED"):
        remote.get(full("GapVoltageControl.Voltage"), ValueType.DOUBLE)
    fake.codes["getDoubleProperty"] = 0x7F
    with pytest.raises(MatrixRefused, match="unknown code 0x7f"):
        remote.get(full("GapVoltageControl.Voltage"), ValueType.DOUBLE)


def test_a_failed_init_closes_cleanly() -> None:
    library = FakeRemoteAccess()
    library.codes["init"] = Code.NOSERVER
    t = RemoteAccessTransport(options(), library=library)
    with pytest.raises(DriverConnectionError, match="RMT_NOSERVER"):
        t.open()
    with pytest.raises(DriverConnectionError, match="not open"):
        t.get(full("GapVoltageControl.Voltage"), ValueType.DOUBLE)


def test_a_hanging_call_times_out(fake: FakeRemoteAccess) -> None:
    t = RemoteAccessTransport(options(timeout=0.1), library=fake)
    t.open()
    fake.delays["getDoubleProperty"] = 0.5
    started = time.monotonic()
    with pytest.raises(DriverTimeoutError, match=r"did not return within 0\.1 s"):
        t.get(full("GapVoltageControl.Voltage"), ValueType.DOUBLE)
    assert time.monotonic() - started < 0.45  # not the 0.5 s the call hangs
    fake.delays.clear()
    t.close()


def test_events_are_polled_and_delivered_on_a_transport_thread(
    remote: RemoteAccessTransport, fake: FakeRemoteAccess
) -> None:
    got: list[tuple[Event, int]] = []
    done = threading.Event()

    def callback(event: Event) -> None:
        got.append((event, threading.get_ident()))
        if len(got) == 3:
            done.set()

    remote.set(full("XYScanner.Width_Height_Constrained"), ValueType.BOOLEAN, False)
    remote.set(full("XYScanner.Points_Lines_Constrained"), ValueType.BOOLEAN, False)
    remote.set(full("XYScanner.Points"), ValueType.INTEGER, 24)
    remote.set(full("XYScanner.Lines"), ValueType.INTEGER, 3)
    remote.set(full("XYScanner.Width"), ValueType.DOUBLE, 10e-9)
    remote.set(full("XYScanner.Raster_Time"), ValueType.DOUBLE, 1e-3)
    remote.set(full("View.Z_Fw.Deliver_Data"), ValueType.BOOLEAN, True)
    remote.observe(full("View.Z_Fw.Data"), callback)
    remote.call(full("Experiment.start"))
    assert done.wait(5.0)
    remote.call(full("Experiment.stop"))
    remote.observe(full("View.Z_Fw.Data"), None)
    assert all(e.name == full("View.Z_Fw.Data") for e, _ in got)
    assert all(isinstance(e.values[0], np.ndarray) and e.values[0].shape == (24,) for e, _ in got)
    assert all(np.isfinite(e.values[0]).all() for e, _ in got)
    assert threading.get_ident() not in {thread for _, thread in got}
    observed = [args for name, args in fake.calls if name == "setObservedEntity"]
    assert [a[1].value for a in observed] == [1, 0]


def test_a_failing_callback_does_not_stop_the_poller(
    remote: RemoteAccessTransport, fake: FakeRemoteAccess
) -> None:
    seen = threading.Event()

    def explode(event: Event) -> None:
        raise RuntimeError("boom")

    remote.observe(full("XYScanner.XY_Position_Reached"), explode)
    remote.call(full("XYScanner.move"))
    deadline = time.monotonic() + 5
    while remote.dropped == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert remote.dropped == 1
    remote.observe(full("XYScanner.XY_Position_Reached"), lambda e: seen.set())
    remote.call(full("XYScanner.move"))
    assert seen.wait(5.0)


def test_close_unobserves_and_runs_down(fake: FakeRemoteAccess) -> None:
    t = RemoteAccessTransport(options(poll_interval=0.001), library=fake)
    t.open()
    t.observe(full("XYScanner.XY_Position_Reached"), lambda e: None)
    t.close()
    t.close()
    names = [name for name, _ in fake.calls]
    assert names[-2:] == ["setObservedEntity", "rundown"]
    assert fake.calls[-2][1][1].value == 0


class TestMatrixConformanceOverTheDllTransport(DriverConformance):
    """The whole driver on the ctypes transport, the fake library answering from the simulated
    MATRIX: every property, function and event crosses the ctypes marshalling."""

    scan_pixels = 16
    scan_lines = 8

    @pytest.fixture
    def driver(self) -> Any:
        opts = options(poll_interval=0.001)
        backend = transport()
        driver = MatrixDriver(
            opts, transport=RemoteAccessTransport(opts, library=FakeRemoteAccess(backend))
        )
        yield driver
        backend.close()


def test_matrix_check_reads_every_name_and_writes_nothing() -> None:
    from probepilot_matrix import names
    from probepilot_matrix.check import check

    backend = transport()
    library = FakeRemoteAccess(backend)
    opts = options(current_channel="Aux9")
    report = check(opts, RemoteAccessTransport(opts, library=library))
    backend.close()
    assert report["connected"] and report["python_bits"] in (32, 64)
    rows = {row["name"]: row for row in report["names"]}
    assert set(names.PROPERTIES) <= set(rows)
    assert all(rows[name]["status"] == "ok" for name in names.PROPERTIES)
    assert rows["XYScanner.max(Width)"]["value"] == pytest.approx(1e-6)
    assert rows["View.Aux9_Fw.Deliver_Data"]["code"] == Code.UNKNOWNOBJECT
    writes = {name for name, _ in library.calls if name.startswith(("set", "trigger"))}
    assert writes <= {"setHost", "setScopeName"}
    functions = [args[0] for name, args in library.calls if name == "callFunctionByDesc"]
    assert functions == [full("XYScanner.max").encode()] * 2
