"""Nanonis .3ds grids: the real grid, geometry, unmeasured points, round trips, nanonispy2
agreeing with what we write, bad files failing cleanly."""

from __future__ import annotations

import math
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from store_helpers import GRID_FILE, assert_same_grid, real, synthetic_grid

from probepilot.errors import FormatError
from probepilot.store import Grid, decode_3ds, encode_3ds, read_3ds, write_3ds

nanonispy2 = pytest.importorskip("nanonispy2.read")

PER_POINT = 10 + 4 * 200  # parameters + 4 channels x 200 points, in the real grid


@pytest.fixture(scope="module")
def grid_bytes() -> bytes:
    return real(GRID_FILE).read_bytes()


@pytest.fixture(scope="module")
def grid(grid_bytes: bytes) -> Grid:
    return decode_3ds(grid_bytes)


def test_real_grid_reads(grid: Grid) -> None:
    assert grid.shape == (30, 30) and grid.complete
    assert (grid.sweep_name, grid.sweep_unit) == ("Bias", "V")
    assert grid.sweep[0] == pytest.approx(-0.22) and grid.sweep[-1] == pytest.approx(0.22)
    assert list(grid.channels) == ["Current", "LockinX", "LockinY", "Bias_m"]
    assert grid.units == {"Current": "A", "LockinX": "V", "LockinY": "V", "Bias_m": "V"}
    assert all(v.shape == (30, 30, 200) for v in grid.channels.values())
    assert grid.fixed == ("Sweep Start", "Sweep End")
    assert list(grid.parameters)[:4] == ["Sweep Start", "Sweep End", "X", "Y"]
    assert grid.parameter_units["Z"] == "m" and grid.parameter_units["Z-Ctrl hold"] == ""
    assert grid.area.centre == (8.451877e-8, 6.329924e-7)
    assert grid.area.angle == pytest.approx(-math.pi / 4)  # 45 degrees clockwise
    assert grid.started_at == 1465071203.0  # "04.06.2016 20:13:23", the 2016 header's Date
    assert math.isnan(grid.finished_at)


def test_points_lie_where_the_grid_settings_put_them(grid: Grid) -> None:
    """Row 0 is the first row measured (low y in the grid's frame), column 0 its first point."""
    step = grid.area.size[0] / grid.area.pixels
    offset = np.linalg.norm(grid.positions - grid.nominal_positions(), axis=-1)
    assert offset.max() < 0.1 * step
    local = grid.positions - np.asarray(grid.area.centre)
    c, s = math.cos(grid.area.angle), math.sin(grid.area.angle)
    u = local[..., 0] * c + local[..., 1] * s  # coordinates in the rotated grid frame
    v = -local[..., 0] * s + local[..., 1] * c
    assert u[0, 0] == pytest.approx(-grid.area.size[0] / 2, abs=0.1 * step)
    assert v[0, 0] == pytest.approx(-grid.area.size[1] / 2, abs=0.1 * step)
    assert (np.diff(u, axis=1) > 0).all() and (np.diff(v, axis=0) > 0).all()


def test_unmeasured_zero_filled_points_are_masked(grid_bytes: bytes) -> None:
    unmeasured = 250
    data = bytearray(grid_bytes)
    data[len(data) - unmeasured * PER_POINT * 4 :] = bytes(unmeasured * PER_POINT * 4)
    grid = decode_3ds(bytes(data))
    assert not grid.complete and int(grid.measured.sum()) == 900 - unmeasured
    assert grid.measured.ravel()[:650].all() and not grid.measured.ravel()[650:].any()
    assert np.isnan(grid.channels["Current"][~grid.measured]).all()
    assert np.isnan(grid.parameters["X"][~grid.measured]).all()
    assert np.isfinite(grid.channels["Current"][grid.measured]).all()
    nominal = grid.nominal_positions()
    assert np.array_equal(grid.positions[~grid.measured], nominal[~grid.measured])


def test_crlf_and_lf_headers_read_the_same(grid_bytes: bytes) -> None:
    end = grid_bytes.find(b":HEADER_END:")
    lf = grid_bytes[:end].replace(b"\r\n", b"\n") + b":HEADER_END:\n" + grid_bytes[end + 14 :]
    assert_same_grid(decode_3ds(lf), decode_3ds(grid_bytes))


# ------------------------------------------------------------------------------------------
# Round trips and the independent reader


def test_real_grid_round_trip_is_exact(grid: Grid, tmp_path: Path) -> None:
    again = read_3ds(write_3ds(grid, tmp_path / "again.3ds"))
    assert_same_grid(again, grid, metadata=False)
    # the 2016 header gains the keys newer readers need, and keeps all of its own
    assert {k: again.metadata[k] for k in grid.metadata} == grid.metadata
    assert set(again.metadata) - set(grid.metadata) == {
        "Delay before measuring (s)",
        "Start time",
        "End time",
        "Comment",
    }
    assert_same_grid(decode_3ds(encode_3ds(again)), again)


@pytest.mark.parametrize("measured", [None, 7, 0])
def test_synthetic_grid_round_trip_is_exact(measured: int | None) -> None:
    grid = synthetic_grid(measured=measured)
    again = decode_3ds(encode_3ds(grid))
    expected = grid if measured != 0 else None
    if expected is not None:
        assert_same_grid(again, grid, metadata=False)
    else:  # nothing measured: no point says where the sweep went
        assert not again.measured.any() and np.isnan(again.sweep).all()
    assert_same_grid(decode_3ds(encode_3ds(again)), again)


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_nanonispy2_reads_written_files_with_the_same_arrays(source: str, tmp_path: Path) -> None:
    grid = synthetic_grid(measured=9) if source == "synthetic" else read_3ds(real(GRID_FILE))
    path = write_3ds(grid, tmp_path / "written.3ds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals = nanonispy2.Grid(str(path)).signals
    as_stored = {
        name: np.where(grid.measured[..., None], v, 0.0) for name, v in grid.channels.items()
    }
    for (name, unit), title in zip(grid.units.items(), list(signals)[1:], strict=False):
        assert title == f"{name} ({unit})"
        assert np.array_equal(signals[title].astype(np.float64), as_stored[name])
    params = np.stack(list(grid.parameters.values()), axis=-1)
    assert np.array_equal(
        signals["params"].astype(np.float64), np.where(grid.measured[..., None], params, 0)
    )


# ------------------------------------------------------------------------------------------
# Bad input


def _with(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


@pytest.fixture(scope="module")
def small() -> bytes:
    return encode_3ds(synthetic_grid())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"PK\x03\x04" + d, "not a Nanonis .3ds grid"),
        (lambda d: d[:100], "no ':HEADER_END:' line"),
        (lambda d: d[:-3], "truncated: the header promises 5x3 points of 37 float32"),
        (lambda d: d + b"\0" * 4, "unexpected bytes after the data"),
        (lambda d: _with(d, b'Grid dim="5 x 3"', b'Grid dim="50000 x 30000"'), "truncated"),
        (lambda d: _with(d, b'Grid dim="5 x 3"', b'Grid dim="5 by 3"'), "expected 'nx x ny'"),
        (lambda d: _with(d, b"Points=16", b"Points=17"), "Experiment size (bytes) says 128"),
        (lambda d: _with(d, b"Points=16", b"Points=sixteen"), "Points: 'sixteen'"),
        (lambda d: _with(d, b"(4 byte)=5", b"(4 byte)=6"), "# Parameters (4 byte) says 6"),
        (lambda d: _with(d, b"Channels=", b"Channel="), "the header has no 'Channels'"),
        (lambda d: _with(d, b"Grid settings=", b"Grid settings=1;"), "Grid settings: expected 5"),
    ],
)
def test_bad_files_raise_one_line_format_errors(small: bytes, mutate: object, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        read_3ds(mutate(small), name="broken.3ds")  # type: ignore[operator]
    text = str(caught.value)
    assert text.startswith("broken.3ds: ") and "\n" not in text
    assert message in text


def test_a_lying_size_field_allocates_nothing_big(small: bytes) -> None:
    lying = _with(small, b'Grid dim="5 x 3"', b'Grid dim="2000000000 x 2000000000"')
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="truncated"):
            read_3ds(lying)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(lying) + 100_000


def test_writer_refuses_grids_it_cannot_write() -> None:
    grid = synthetic_grid()
    grid.channels["Current"] = np.zeros((2, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        encode_3ds(grid)
    grid = synthetic_grid()
    grid.units["Semi;colon"] = "A"
    grid.channels["Semi;colon"] = grid.channels.pop("Current")
    with pytest.raises(ValueError, match="';'"):
        encode_3ds(grid)


def test_multi_line_comments_survive_a_round_trip() -> None:
    grid = synthetic_grid()
    grid.metadata = {"Comment": "tip: W\nsample: Au(111)", "User": "me"}
    again = decode_3ds(encode_3ds(grid))
    assert again.metadata["Comment"] == "tip: W\nsample: Au(111)"
    assert encode_3ds(grid).startswith(b'Grid dim="5 x 3"\r\n')  # what readers recognise
