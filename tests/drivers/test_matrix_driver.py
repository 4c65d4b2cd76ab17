"""What the MATRIX driver does beyond the shared contract suite: frame orientation (backward
traces, down frames from up-down scans), MATRIX's refusals and silences as typed errors, the
experiment check, crash detection, I(z), tip moves through the scan window, metadata."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
import pytest
from matrix_helpers import driver, full, options, run

from probepilot.errors import (
    ConfigError,
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    LimitError,
    NotSupportedError,
    TipCrashError,
)
from probepilot.model import Frame, ScanArea, ScanSettings
from probepilot_matrix.driver import MatrixDriver
from probepilot_matrix.simulated import SimulatedMatrixTransport
from probepilot_matrix.transport import Code, Event, ValueType, error_for


def settings(
    direction: str = "up", size: float = 30e-9, pixels: int = 32, **area: Any
) -> ScanSettings:
    fields = {"centre": (0.0, 0.0), "size": (size, size), "pixels": pixels, "lines": pixels}
    fields.update(area)
    return ScanSettings(ScanArea(**fields), 0.02, direction)  # type: ignore[arg-type]


def levelled(image: np.ndarray) -> np.ndarray:
    out = image - image.mean(axis=1, keepdims=True)
    return out / out.std()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(levelled(a) * levelled(b)))


def test_traces_and_passes_are_oriented_as_the_model_wants() -> None:
    d = driver(sim_surface="si111_7x7", sim_seed=8)

    async def body() -> tuple[Frame, Frame]:
        await d.connect()
        await d.approach()
        up = await d.scan(settings("up"))
        down = await d.scan(settings("down"))
        await d.close()
        return up, down

    up, down = run(body)
    z_up, z_down = up.channels["Z"], down.channels["Z"]
    assert z_up.backward is not None and z_down.backward is not None
    # Backward lines are reversed back into x order: they match the forward ones.
    assert correlation(z_up.forward, z_up.backward) > 0.5
    assert correlation(z_up.forward, z_up.backward[:, ::-1]) < correlation(
        z_up.forward, z_up.backward
    )
    # Row 0 is the first line scanned: bottom for up, top for down.
    assert correlation(z_up.forward, z_down.forward[::-1]) > 0.5
    assert correlation(z_up.forward, z_down.forward) < correlation(
        z_up.forward, z_down.forward[::-1]
    )
    assert (
        down.metadata["XYScanner.Y_Retrace"] is True and up.metadata["XYScanner.Y_Retrace"] is False
    )


def test_frame_metadata_is_keyed_like_matrix_result_files() -> None:
    d = driver(sim_result_file_name="20250101")

    async def body() -> list[Frame]:
        await d.connect()
        await d.approach()
        frames = [await d.scan(settings(pixels=16)) for _ in range(2)]
        await d.close()
        return frames

    first, second = run(body)
    assert first.source == "matrix"
    assert first.metadata["XYScanner.Width (Meter)"] == pytest.approx(30e-9)
    assert first.metadata["XYScanner.Points (Count)"] == 16
    assert first.metadata["XYScanner.Raster_Time (Second)"] == pytest.approx(0.02 / 16)
    assert first.metadata["GapVoltageControl.Voltage (Volt)"] == pytest.approx(first.bias)
    assert first.metadata["Regulator.Setpoint_1 (Ampere)"] == pytest.approx(first.setpoint)
    assert first.metadata["MATRIX channels"] == "Z,I"
    # Each frame starts a new run, as MATRIX numbers result files <name>--<run>_<cycle>.
    assert re.fullmatch(r"20250101--\d+_1\.Z_mtrx", str(first.metadata["MATRIX result file"]))
    assert first.metadata["MATRIX result file"] != second.metadata["MATRIX result file"]


class Stuck(SimulatedMatrixTransport):
    """A MATRIX whose views never deliver (an operator stopped it, a view is missing)."""

    def observe(self, name: str, callback: Any) -> None:
        if name.endswith(".Data"):
            callback = None if callback is None else (lambda event: None)
        super().observe(name, callback)


def test_a_silent_matrix_times_out_stops_the_scan_and_keeps_the_driver_usable() -> None:
    opts = options(timeout=0.3)
    transport = Stuck(opts)
    d = MatrixDriver(opts, transport=transport)

    async def body() -> None:
        await d.connect()
        await d.approach()
        with pytest.raises(DriverTimeoutError, match=r"no scan line came within 0\.3 s"):
            await d.scan(settings(pixels=8))
        assert d.last_frame is not None and d.last_frame.lines_done == 0
        state = await asyncio.to_thread(transport.get, full("Experiment.State"), ValueType.STRING)
        assert state == "idle"
        assert await d.get_bias() == pytest.approx(1.0)
        await d.close()

    run(body)


class Rounding(SimulatedMatrixTransport):
    """A MATRIX that keeps an even number of points."""

    def set(self, name: str, kind: ValueType, value: Any) -> None:
        if name.endswith("XYScanner.Points"):
            value = value + value % 2
        super().set(name, kind, value)


class WithoutPiezo(SimulatedMatrixTransport):
    """An experiment without a coarse positioner."""

    def get(self, name: str, kind: ValueType) -> Any:
        if "::PiezoControl." in name:
            raise error_for(Code.UNKNOWNOBJECT, "get", name)
        return super().get(name, kind)


def test_what_matrix_keeps_or_lacks_becomes_typed_errors() -> None:
    opts = options()
    d = MatrixDriver(opts, transport=Rounding(opts))
    nopiezo = MatrixDriver(opts, transport=WithoutPiezo(opts))

    async def body() -> None:
        await d.connect()
        await d.approach()
        with pytest.raises(InstrumentError, match="MATRIX kept 10, not the requested 9"):
            await d.scan(settings(pixels=9))
        assert (await d.scan(settings(pixels=10))).complete
        with pytest.raises(NotSupportedError, match="RMT_UNKNOWNOBJECT") as info:
            await d.scan(ScanSettings(settings().area, 0.02, "up", ("Z", "Aux1")))
        assert "View.Aux1_Fw" in str(info.value)
        with pytest.raises(NotSupportedError, match="x and y drift only"):
            await d.set_drift_compensation(0.0, 0.0, 1e-12)
        with pytest.raises(LimitError, match="whole degrees"):
            await d.scan(settings(angle=0.1))
        await d.close()
        await nopiezo.connect()
        assert "coarse_move" not in {c.value for c in nopiezo.capabilities()}
        with pytest.raises(NotSupportedError, match="coarse moves"):
            await nopiezo.coarse_move("x+", 1)
        await nopiezo.close()

    run(body)


def test_a_closed_experiment_refuses_the_connection() -> None:
    d = driver(sim_experiment_open=False)

    async def body() -> None:
        with pytest.raises(DriverConnectionError, match="'STM_AtomManipulation' is not open"):
            await d.connect()
        with pytest.raises(Exception, match="not connected"):
            await d.get_bias()

    run(body)


def test_a_crash_is_detected_and_the_tip_left_withdrawn() -> None:
    d = driver(dip_slew_rate=1e-6)

    async def body() -> None:
        await d.connect()
        await d.approach()
        with pytest.raises(TipCrashError, match="crashed"):
            await d.dip(20e-9, 0.0)  # far deeper than the simulator's crash depth
        assert await d.get_feedback() is False
        assert await d.get_bias() == pytest.approx(1.0)
        await d.approach()
        assert await d.get_feedback() is True
        await d.dip(0.5e-9, -0.5)  # a gentle one is not a crash
        assert await d.get_bias() == pytest.approx(1.0)
        await d.close()

    run(body)


def test_current_versus_z() -> None:
    d = driver()

    async def body() -> None:
        await d.connect()
        await d.approach()
        curve = await d.spectrum_z(0.5e-9, -0.5e-9, 21)
        assert curve.sweep_name == "Z" and curve.sweep_unit == "m"
        current = curve.channels["Current"]
        assert current.shape == (21,) and np.isfinite(current).all()
        assert current[-1] > 10 * current[0]  # closer, more current
        with pytest.raises(LimitError):
            await d.spectrum_z(0.0, -5e-9, 21)  # deeper than max_z_spectroscopy_approach
        await d.close()

    run(body)


def test_tip_moves_use_the_scan_window() -> None:
    d = driver()
    seen: list[Event] = []

    async def body() -> None:
        await d.connect()
        await d.scan(settings(size=40e-9, pixels=8, centre=(100e-9, 0.0)))
        await d.set_tip_position(110e-9, 10e-9)  # inside the window: it stays
        assert await d._get("XYScanner.X_Offset") == pytest.approx(100e-9)
        assert await d._get("XYScanner.Target_Position") == pytest.approx((0.5, 0.5))
        await d.set_tip_position(-300e-9, 0.0)  # outside: the window follows
        assert await d._get("XYScanner.X_Offset") == pytest.approx(-300e-9)
        pos = await d.get_tip_position()
        assert (pos.x, pos.y) == pytest.approx((-300e-9, 0.0), abs=1e-15)
        await d.close()

    run(body)
    assert seen == []


def test_options_come_from_the_config_file(tmp_path: Any) -> None:
    from probepilot.config import load_config

    good = tmp_path / "good.toml"
    good.write_text(
        'driver = "matrix"\n[drivers.matrix]\ntransport = "simulated"\ntimeout = "2 s"\n'
        'bias_limit = "5 V"\n[drivers.matrix.simulated]\nseed = 4\ntip = "double"\n',
        encoding="utf-8",
    )
    config, manager = load_config(good)
    built = config.build(manager, "driver", "matrix")
    assert isinstance(built, MatrixDriver)
    assert built.options.timeout == 2.0 and built.options.bias_limit == 5.0
    assert built.options.simulated.tip == "double"
    bad = tmp_path / "bad.toml"
    bad.write_text('driver = "matrix"\n[drivers.matrix]\nz_ramp_sign = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="z_ramp_sign"):
        load_config(bad)


def test_the_plugin_imports_no_other_plugin() -> None:
    """Plugins meet through the registry (the simulated MATRIX gets the simulator by name)."""
    import ast
    from pathlib import Path

    import probepilot_matrix

    offenders = []
    for path in Path(probepilot_matrix.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            offenders += [
                f"{path.name}: {m}"
                for m in modules
                if m.startswith("probepilot_") and not m.startswith("probepilot_matrix")
            ]
    assert offenders == []


class Stale(SimulatedMatrixTransport):
    """Hands every new observer an event left over from an earlier operation."""

    def observe(self, name: str, callback: Any) -> None:
        super().observe(name, callback)
        if callback is not None:
            callback(Event(name, (np.full(8, 1.0),) if name.endswith(".Data") else (True,)))


def test_events_left_over_from_earlier_operations_are_dropped() -> None:
    opts = options()
    d = MatrixDriver(opts, transport=Stale(opts))

    async def body() -> None:
        await d.connect()
        await d.approach()
        frame = await d.scan(settings(pixels=8))
        assert frame.complete and np.abs(frame.topography).max() < 1e-6  # not the 1 m line
        await d.set_tip_position(200e-9, 0.0)
        assert (await d.get_tip_position()).x == pytest.approx(200e-9)
        await d.close()

    run(body)
