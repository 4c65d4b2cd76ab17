"""What the store tests share: where the real files are, and synthetic data to write and read.

Real instrument files live outside the repository (``../shared/stm-data``); tests that need one
skip when it is absent.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from probepilot.model import Channel, Frame, ScanArea, Spectrum
from probepilot.store import Grid

DEG = math.pi / 180
STM_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "stm-data"

SXM_FILES = (
    "G80SXM/example_FFT.sxm",
    "G80SXM/example_LineProfile.sxm",
    "G80SXM/example_TOPO.sxm",
    "G80SXM/example_nc-AFM.sxm",
    "pySPM/test.sxm",
    "pynxtools-spm/A151216.123306-02602.sxm",
    "pynxtools-spm/Au_mica_2023_Y_A_diPAMY_195.sxm",
    "pynxtools-spm/Au_mica_2023_Y_A_diPAMY_20230512_058.sxm",
    "pynxtools-spm/STM_nanonis_generic_4_5.sxm",
)
DAT_FILES = (
    "G80SXM/example_STS_AgRef.dat",
    "G80SXM/example_STS_CuHigh.dat",
    "G80SXM/example_STS_CuLow.dat",
    "G80SXM/example_STS_DCACenter.dat",
    "G80SXM/example_STS_DCALobe.dat",
    "SciFiReaders/Bias-Spectroscopy041.dat",
    "nanonis-xarray/a.dat",
    "nanonis-xarray/df_v.dat",
    "nanonis-xarray/filtered.dat",
    "nanonis-xarray/i_v.dat",
    "nanonis-xarray/z.dat",
    "nanonispy/Bias-Spectroscopy002.dat",
    "nanonispy/duplicate_headers.dat",
    "pynxtools-spm/Bias-Spectroscopy00015_20230420.dat",
    "pynxtools-spm/STS_nanonis_generic_4_5.dat",
    "pynxtools-spm/STS_nanonis_generic_5e_1.dat",
)
GRID_FILE = "SciFiReaders/STS_grid_lockin.3ds"
MATRIX_FILE = "matrix-spm-rs/20201111--4_1.Z_mtrx"
MATRIX_PARAMETERS = "matrix-spm-rs/20201111_0001.mtrx"
#: Files in the folder that are not Nanonis or MATRIX files (README: raw arrays, Gwyddion).
NOT_INSTRUMENT_DAT = "SPIEPy/image_with_defects.dat"


def real(relative: str) -> Path:
    """The path of a real file, skipping the test when the shared folder is absent."""
    path = STM_DATA / relative
    if not path.is_file():
        pytest.skip(f"real instrument file {relative} is not available")
    return path


def same_array(a: object, b: object) -> bool:
    """Bitwise-equal values (NaN equal to NaN), same shape; None equals None."""
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


def same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_same_frame(a: Frame, b: Frame, *, metadata: bool = True) -> None:
    """Everything but ``source`` equal, arrays bitwise."""
    assert list(a.channels) == list(b.channels)
    for name, channel in a.channels.items():
        other = b.channels[name]
        assert (channel.name, channel.unit) == (other.name, other.unit)
        assert same_array(channel.forward, other.forward), name
        assert same_array(channel.backward, other.backward), name
    assert a.area == b.area
    assert a.direction == b.direction
    for field in ("bias", "setpoint", "line_time", "started_at", "finished_at"):
        assert same_float(getattr(a, field), getattr(b, field)), field
    assert a.lines_done == b.lines_done
    if metadata:
        assert a.metadata == b.metadata


def assert_same_spectrum(a: Spectrum, b: Spectrum, *, metadata: bool = True) -> None:
    assert (a.sweep_name, a.sweep_unit) == (b.sweep_name, b.sweep_unit)
    assert same_array(a.sweep, b.sweep)
    assert list(a.channels) == list(b.channels)
    for name in a.channels:
        assert same_array(a.channels[name], b.channels[name]), name
    assert a.units == b.units
    assert all(same_float(x, y) for x, y in zip(a.position, b.position, strict=True))
    assert same_float(a.started_at, b.started_at)
    assert a.complete == b.complete
    if metadata:
        assert a.metadata == b.metadata


def assert_same_grid(a: Grid, b: Grid, *, metadata: bool = True) -> None:
    assert (a.sweep_name, a.sweep_unit, a.fixed) == (b.sweep_name, b.sweep_unit, b.fixed)
    assert same_array(a.sweep, b.sweep)
    assert list(a.channels) == list(b.channels) and a.units == b.units
    assert all(same_array(a.channels[n], b.channels[n]) for n in a.channels)
    assert list(a.parameters) == list(b.parameters) and a.parameter_units == b.parameter_units
    assert all(same_array(a.parameters[n], b.parameters[n]) for n in a.parameters)
    assert same_array(a.measured, b.measured)
    assert a.area == b.area
    assert same_float(a.started_at, b.started_at) and same_float(a.finished_at, b.finished_at)
    if metadata:
        assert a.metadata == b.metadata


def f32(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random float32-representable values (a .sxm/.3ds round trip is exact for those)."""
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


def synthetic_frame(
    *,
    lines: int = 24,
    pixels: int = 40,
    direction: str = "up",
    lines_done: int | None = None,
    angle: float = 0.3,
    seed: int = 1,
) -> Frame:
    """A non-square frame with Z (both traces), Current (both), a phase in rad (both) and a
    forward-only channel; rows past ``lines_done`` NaN."""
    rng = np.random.default_rng(seed)
    shape = (lines, pixels)
    done = lines if lines_done is None else lines_done
    channels = {
        "Z": Channel("Z", "m", f32(rng, shape, 1e-9), f32(rng, shape, 1e-9)),
        "Current": Channel("Current", "A", f32(rng, shape, 1e-10), f32(rng, shape, 1e-10)),
        # phases in rad that are float32 numbers of degrees, as a file holds them
        "Phase": Channel("Phase", "rad", f32(rng, shape, 30) * DEG, f32(rng, shape, 30) * DEG),
        "Input_3": Channel("Input_3", "V", f32(rng, shape, 1.0), None),
    }
    for channel in channels.values():
        channel.forward[done:] = np.nan
        if channel.backward is not None:
            channel.backward[done:] = np.nan
    return Frame(
        channels=channels,
        area=ScanArea((1.25e-8, -3.5e-8), (4e-8, 2.4e-8), pixels, lines, angle),
        direction="up" if direction == "up" else "down",
        bias=-0.35,
        setpoint=1.5e-10,
        line_time=0.128,
        started_at=1_700_000_000.0,
        finished_at=1_700_000_321.5,
        lines_done=done,
    )


def synthetic_spectrum(*, points: int = 64, complete: bool = True, seed: int = 2) -> Spectrum:
    rng = np.random.default_rng(seed)
    sweep = np.linspace(-0.5, 0.5, points)
    channels = {
        "Current": rng.standard_normal(points) * 1e-10,
        "Current [bwd]": rng.standard_normal(points) * 1e-10,
        "Phase": rng.standard_normal(points) * 30 * DEG,  # radians that came from degrees
        "LI Demod 1 X [filt]": rng.standard_normal(points) * 1e-12,
    }
    units = {"Current": "A", "Current [bwd]": "A", "Phase": "rad", "LI Demod 1 X [filt]": "A"}
    return Spectrum(
        sweep_name="Bias calc",
        sweep_unit="V",
        sweep=sweep,
        channels=channels,
        units=units,
        position=(3.25e-9, -1.5e-8),
        started_at=1_650_000_000.0,
        complete=complete,
    )


def synthetic_grid(
    *, nx: int = 5, ny: int = 3, points: int = 16, measured: int | None = None
) -> Grid:
    """A non-square grid; the first ``measured`` points (row by row) measured, the rest not."""
    rng = np.random.default_rng(3)
    area = ScanArea((2e-8, 3e-8), (5e-9, 3e-9), nx, ny, -0.5)
    mask = np.zeros(ny * nx, dtype=bool)
    mask[: ny * nx if measured is None else measured] = True
    mask = mask.reshape(ny, nx)
    sweep = np.linspace(-1.0, 1.0, points)  # what the reader rebuilds from start and end
    parameters = {
        "Sweep Start": np.full((ny, nx), sweep[0]),
        "Sweep End": np.full((ny, nx), sweep[-1]),
        "X": f32(rng, (ny, nx), 1e-9),
        "Y": f32(rng, (ny, nx), 1e-9),
        "Z": f32(rng, (ny, nx), 1e-9),
    }
    channels = {
        "Current": f32(rng, (ny, nx, points), 1e-10),
        "LIX 1 omega": f32(rng, (ny, nx, points), 1e-12),
    }
    for array in [*parameters.values(), *channels.values()]:
        array[~mask] = np.nan
    return Grid(
        sweep_name="Bias",
        sweep_unit="V",
        sweep=sweep,
        channels=channels,
        units={"Current": "A", "LIX 1 omega": "A"},
        parameters=parameters,
        parameter_units={"Sweep Start": "", "Sweep End": "", "X": "m", "Y": "m", "Z": "m"},
        measured=mask,
        area=area,
        fixed=("Sweep Start", "Sweep End"),
        started_at=1_600_000_000.0,
        finished_at=1_600_003_600.0,
    )


# ------------------------------------------------------------------------------------------
# Minimal MATRIX files, written the way MATRIX lays them out (see probepilot.store.matrix)


def _string(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def _value(value: bool | int | float | str) -> bytes:
    if isinstance(value, bool):
        return b"LOOB" + struct.pack("<I", value)
    if isinstance(value, int):
        return b"GNOL" + struct.pack("<i", value)
    if isinstance(value, float):
        return b"BUOD" + struct.pack("<d", value)
    return b"GRTS" + _string(value)


def _block(tag: bytes, content: bytes, *, timed: bool = True) -> bytes:
    stamp = struct.pack("<Q", 1_600_000_000) if timed else b""
    return tag + struct.pack("<I", len(content)) + stamp + content


def matrix_files(
    result_file: str,
    channel: str,
    unit: str,
    parameters: dict[str, tuple[bool | int | float | str, str]],
    raw: np.ndarray,
    bricklet_size: int,
    marks: tuple[str, ...] = (),
) -> tuple[bytes, bytes]:
    """``(result file, parameter log)`` bytes for one channel with a linear transfer
    (physical = raw / 1e12)."""
    channel_id = bytes.fromhex("4300440002000000")
    groups: dict[str, list[tuple[str, bool | int | float | str, str]]] = {}
    for key, (value, its_unit) in parameters.items():
        group, name = key.split(".", 1)
        groups.setdefault(group, []).append((name, value, its_unit))
    eepa = b"\0" * 4 + struct.pack("<I", len(groups))
    for group, entries in groups.items():
        eepa += _string(group) + struct.pack("<I", len(entries))
        for name, value, its_unit in entries:
            eepa += _string(name) + _string(its_unit) + b"\0" * 4 + _value(value)
    dictionary = b"\0" * 8 + struct.pack("<I", 0)
    dictionary += struct.pack("<I", 1) + b"\0" * 4 + struct.pack("<I", 7) + b"\0" * 8
    dictionary += _string(channel) + _string(unit)
    dictionary += struct.pack("<I", 1) + channel_id + b"\0" * 4 + struct.pack("<I", 7)
    dictionary += _string("ChannelData")
    transfer = b"\0" * 4 + struct.pack("<I", 7) + _string("TFF_Linear1D") + _string(unit)
    transfer += struct.pack("<I", 2) + _string("Factor") + _value(1e12)
    transfer += _string("Offset") + _value(0.0)
    system = b"\0" * 4 + _block(b"TCID", dictionary, timed=False)
    system += _block(b"REFX", transfer, timed=False)
    log = b"ONTMATRX0101" + _block(b"APEE", eepa) + _block(b"YSCC", system)
    log += b"".join(_block(b"KRAM", _string(mark)) for mark in marks)
    log += _block(b"FERB", b"\0" * 4 + _string(result_file))
    values = np.asarray(raw, dtype="<i4")
    description = channel_id + b"\0" * 12 + struct.pack("<ii", bricklet_size, len(values))
    inner = _block(b"CSED", description, timed=False) + _block(
        b"ATAD", values.tobytes(), timed=False
    )
    result = b"ONTMATRX0101" + _block(b"TLKB", b"\0" * 4 + inner)
    return result, log


def matrix_image_parameters(
    points: int, lines: int, *, x_retrace: bool, y_retrace: bool
) -> dict[str, tuple[bool | int | float | str, str]]:
    return {
        "XYScanner.Points": (points, "Count"),
        "XYScanner.Lines": (lines, "Count"),
        "XYScanner.X_Retrace": (x_retrace, "--"),
        "XYScanner.Y_Retrace": (y_retrace, "--"),
        "XYScanner.Width": (2e-8, "Meter"),
        "XYScanner.Height": (1e-8, "Meter"),
        "XYScanner.X_Offset": (1e-9, "Meter"),
        "XYScanner.Y_Offset": (-2e-9, "Meter"),
        "XYScanner.Angle": (0, "Degree"),
        "XYScanner.Raster_Time": (0.001, "Second"),
        "XYScanner.Enable_Subgrid": (False, "--"),
        "GapVoltageControl.Voltage": (0.5, "Volt"),
        "Regulator.Setpoint_1": (1e-10, "Ampere"),
    }
