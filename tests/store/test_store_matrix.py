"""Omicron MATRIX: the real topography, access2thematrix agreeing with us on it and on
synthetic files (both scan passes, aborted scans, I(V) curves), bad files failing cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_helpers import (
    MATRIX_FILE,
    MATRIX_PARAMETERS,
    matrix_files,
    matrix_image_parameters,
    real,
)

from probepilot.errors import FormatError
from probepilot.model import Frame, Spectrum
from probepilot.store import read_any, read_matrix

a2m = pytest.importorskip("access2thematrix")


def _frames(result: list[Frame] | Spectrum) -> list[Frame]:
    assert isinstance(result, list)
    return result


def test_real_topography_reads() -> None:
    (frame,) = _frames(read_matrix(real(MATRIX_FILE)))
    assert frame.direction == "up" and frame.complete
    assert (frame.area.pixels, frame.area.lines) == (400, 400)
    assert frame.area.size == (1e-7, 1e-7) and frame.area.angle == 0.0
    z = frame.channels["Z"]
    assert z.unit == "m" and z.backward is not None
    assert -6e-7 < float(np.nanmean(z.forward)) < -4e-7
    assert frame.bias == pytest.approx(0.6) and frame.setpoint == pytest.approx(3e-10)
    assert frame.line_time == pytest.approx(0.2)  # 400 points x 0.5 ms raster time
    assert frame.started_at == 1605085646.0  # 2020-11-11 09:07:26 UTC, the bricklet's time
    assert frame.metadata["MATRIX result file"] == "20201111--4_1.Z_mtrx"
    assert frame.metadata["XYScanner.Raster_Time (Second)"] == 0.0005


def test_real_topography_matches_access2thematrix() -> None:
    path = real(MATRIX_FILE)
    (frame,) = _frames(read_matrix(path))
    reference = a2m.MtrxData()
    _, message = reference.open(str(path))
    assert "Successfully" in message
    forward, _ = reference.select_image("forward/up")
    backward, _ = reference.select_image("backward/up")
    assert np.array_equal(forward.data, frame.channels["Z"].forward)
    assert np.array_equal(backward.data, frame.channels["Z"].backward)


def test_bytes_and_paths_read_the_same() -> None:
    data, log = real(MATRIX_FILE).read_bytes(), real(MATRIX_PARAMETERS).read_bytes()
    (from_bytes,) = _frames(read_matrix(data, parameters=log, name="20201111--4_1.Z_mtrx"))
    (from_path,) = _frames(read_any(real(MATRIX_FILE)))  # type: ignore[arg-type]
    assert np.array_equal(from_bytes.topography, from_path.topography)
    with pytest.raises(ValueError, match="parameters= and name="):
        read_matrix(data)


def test_missing_or_unrelated_parameter_file(tmp_path: Path) -> None:
    lonely = tmp_path / "20201111--4_1.Z_mtrx"
    lonely.write_bytes(real(MATRIX_FILE).read_bytes())
    with pytest.raises(FormatError, match=r"parameter file 20201111_0001\.mtrx is missing"):
        read_matrix(lonely)
    log = real(MATRIX_PARAMETERS).read_bytes()
    with pytest.raises(FormatError, match=r"no record of result file 'other--1_1\.Z_mtrx'"):
        read_matrix(lonely.read_bytes(), parameters=log, name="other--1_1.Z_mtrx")


# ------------------------------------------------------------------------------------------
# Synthetic files, checked against access2thematrix


def _write(tmp_path: Path, result: bytes, log: bytes, name: str) -> Path:
    (tmp_path / "s_0001.mtrx").write_bytes(log)
    path = tmp_path / name
    path.write_bytes(result)
    return path


def _image(points: int, lines: int, recorded: int | None = None) -> tuple[bytes, bytes, np.ndarray]:
    """Both retraces: values tell trace, line and point: 10000*line + 1000*trace + point."""
    total = points * lines * 2 * 2
    stream = np.arange(total).reshape(2, lines, 2, points)  # pass, line, trace, point
    line = np.arange(lines)[None, :, None, None] + lines * np.arange(2)[:, None, None, None]
    raw = (line * 10000 + np.arange(2)[None, None, :, None] * 1000 + np.arange(points)).ravel()
    assert raw.size == stream.size
    parameters = matrix_image_parameters(points, lines, x_retrace=True, y_retrace=True)
    result, log = matrix_files("s--1_1.Z_mtrx", "Z", "m", parameters, raw[:recorded], total)
    return result, log, raw / 1e12


def test_up_and_down_passes_become_two_frames_in_scan_order(tmp_path: Path) -> None:
    result, log, physical = _image(points=5, lines=3)
    path = _write(tmp_path, result, log, "s--1_1.Z_mtrx")
    up, down = _frames(read_matrix(path))
    assert (up.direction, down.direction) == ("up", "down")
    stream = physical.reshape(2, 3, 2, 5)
    z_up, z_down = up.channels["Z"], down.channels["Z"]
    assert np.array_equal(z_up.forward, stream[0, :, 0])
    assert np.array_equal(z_up.backward, stream[0, :, 1, ::-1])  # un-mirrored
    assert np.array_equal(z_down.forward, stream[1, :, 0])  # row 0: first line of the down pass
    assert (up.area.pixels, up.area.lines) == (5, 3) and down.complete
    reference = a2m.MtrxData()
    reference.open(str(path))
    for trace, image in [
        ("forward/up", z_up.forward),
        ("backward/up", z_up.backward),
        ("forward/down", z_down.forward[::-1]),  # access2thematrix flips down to match up
        ("backward/down", z_down.backward[::-1]),  # type: ignore[index]
    ]:
        assert np.array_equal(reference.select_image(trace)[0].data, image), trace


def test_aborted_scan_has_nan_lines_and_lines_done(tmp_path: Path) -> None:
    points, lines = 6, 4
    result, log, physical = _image(points, lines, recorded=2 * points * 2 + 3)
    (up,) = _frames(read_matrix(result, parameters=log, name="s--1_1.Z_mtrx"))
    assert up.lines_done == 3 and not up.complete  # two full lines and three points
    z = up.channels["Z"].forward
    assert np.array_equal(z[:2], physical.reshape(2, lines, 2, points)[0, :2, 0])
    assert np.isfinite(z[2, :3]).all() and np.isnan(z[2, 3:]).all() and np.isnan(z[3]).all()


def _curve(recorded: int | None = None) -> tuple[bytes, bytes, np.ndarray]:
    points = 11
    parameters: dict[str, tuple[bool | int | float | str, str]] = {
        "XYScanner.Enable_Subgrid": (False, "--"),
        "Spectroscopy.Device_1_Start": (-1.0, "Volt"),
        "Spectroscopy.Device_1_End": (1.0, "Volt"),
        "Spectroscopy.Device_1_Points": (points, "Count"),
        "Spectroscopy.Enable_Device_1_Ramp_Reversal": (True, "--"),
        "Spectroscopy.Device_2_Start": (0.0, "Meter"),
    }
    raw = np.arange(2 * points) * 1000 - 7000
    result, log = matrix_files(
        "s--2_1.I(V)_mtrx",
        "I(V)",
        "A",
        parameters,
        raw[:recorded],
        2 * points,
        marks=("MTRX$STS_LOCATION-12,34;1.5e-009,-2.5e-009%%200440043-3-2-0%%",),
    )
    return result, log, raw / 1e12


def test_iv_curve_reads_as_a_spectrum(tmp_path: Path) -> None:
    result, log, physical = _curve()
    path = _write(tmp_path, result, log, "s--2_1.I(V)_mtrx")
    spectrum = read_matrix(path)
    assert isinstance(spectrum, Spectrum) and spectrum.complete
    assert (spectrum.sweep_name, spectrum.sweep_unit) == ("Bias", "V")
    assert np.array_equal(spectrum.sweep, np.linspace(-1, 1, 11))
    assert np.array_equal(spectrum.channels["I(V)"], physical[:11])
    assert np.array_equal(spectrum.channels["I(V) [bwd]"], physical[11:][::-1])
    assert spectrum.units["I(V)"] == "A" and spectrum.position == (1.5e-9, -2.5e-9)
    reference = a2m.MtrxData()
    reference.open(str(path))
    trace, _ = reference.select_curve("trace")
    retrace, _ = reference.select_curve("retrace")
    assert np.array_equal(trace.data[1], spectrum.channels["I(V)"])
    assert np.array_equal(retrace.data[1], spectrum.channels["I(V) [bwd]"])


def test_interrupted_curve_is_incomplete() -> None:
    result, log, physical = _curve(recorded=7)
    spectrum = read_matrix(result, parameters=log, name="s--2_1.I(V)_mtrx")
    assert isinstance(spectrum, Spectrum) and not spectrum.complete
    assert len(spectrum.sweep) == 7 and np.array_equal(spectrum.channels["I(V)"], physical[:7])


# ------------------------------------------------------------------------------------------
# Bad input


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    result, log, _ = _image(points=4, lines=2)
    return result, log


def _read(result: bytes, log: bytes) -> None:
    read_matrix(result, parameters=log, name="s--1_1.Z_mtrx")


@pytest.mark.parametrize(
    ("mutate_result", "mutate_log", "message"),
    [
        (lambda d: b"NOTMATRIX000" + d[12:], None, "not a MATRIX result file"),
        (None, lambda d: b"NOTMATRIX000" + d[12:], "not a MATRIX parameter file"),
        (lambda d: d[:-10], None, "block b'TLKB' at byte 12 claims"),
        (lambda d: d[:18], None, "truncated block header at byte 12"),
        (None, lambda d: d[:-4], "claims"),
        (lambda d: d.replace(b"TLKB", b"XXXX"), None, "holds no bricklet"),
        (
            lambda d: d[:12] + d[12:16] + b"\xff\xff\xff\x7f" + d[20:],
            None,
            "claims 2147483647 bytes",
        ),
        (None, lambda d: d.replace(b"GNOL", b"GNOX", 1), "unknown value type"),
    ],
)
def test_bad_files_raise_one_line_format_errors(
    pair: tuple[bytes, bytes], mutate_result: object, mutate_log: object, message: str
) -> None:
    result, log = pair
    result = mutate_result(result) if mutate_result else result  # type: ignore[operator]
    log = mutate_log(log) if mutate_log else log  # type: ignore[operator]
    with pytest.raises(FormatError) as caught:
        _read(result, log)
    assert "\n" not in str(caught.value) and message in str(caught.value)


def test_parameters_that_disagree_with_the_bricklet_are_refused() -> None:
    parameters = matrix_image_parameters(4, 2, x_retrace=True, y_retrace=True)
    parameters["XYScanner.Lines"] = (200000, "Count")  # lying; the bricklet holds 32 values
    result, log = matrix_files("s--1_1.Z_mtrx", "Z", "m", parameters, np.arange(32), 32)
    with pytest.raises(FormatError, match="describe 2 pass"):
        _read(result, log)
    result, log = matrix_files(
        "s--1_1.Z_mtrx",
        "Z",
        "m",
        {**parameters, "XYScanner.Lines": (2**20, "Count")},
        np.arange(32),
        2**30,
    )
    with pytest.raises(FormatError, match="bricklet holds 1073741824"):
        _read(result, log)
