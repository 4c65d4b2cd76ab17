"""Nanonis .sxm: real files read right, the orientation rules hold, round trips are exact, an
independent reader (nanonispy2) agrees with what we write, and bad files fail cleanly."""

from __future__ import annotations

import math
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from store_helpers import SXM_FILES, assert_same_frame, real, synthetic_frame

from probepilot.errors import FormatError
from probepilot.model import Channel
from probepilot.store import decode_sxm, encode_sxm, read_sxm, write_sxm

nanonispy2 = pytest.importorskip("nanonispy2.read")


def _header(data: bytes) -> str:
    return data[: data.find(b":SCANIT_END:")].decode("latin-1")


@pytest.mark.parametrize("relative", SXM_FILES)
def test_real_file_reads_with_the_header_geometry(relative: str) -> None:
    path = real(relative)
    frame = read_sxm(path)
    header = _header(path.read_bytes())
    pixels, lines = (int(v) for v in frame.metadata["SCAN_PIXELS"].split())  # type: ignore[union-attr]
    assert (frame.area.pixels, frame.area.lines) == (pixels, lines)
    assert frame.area.size == tuple(float(v) for v in str(frame.metadata["SCAN_RANGE"]).split())
    assert frame.direction == str(frame.metadata["SCAN_DIR"])
    assert f":SCAN_DIR:\n{frame.direction}\n" in header
    assert frame.complete and frame.lines_done == lines
    assert "Z" in frame.channels and frame.topography.shape == (lines, pixels)
    for channel in frame.channels.values():
        assert channel.forward.dtype == np.float64
        assert channel.backward is not None and channel.backward.shape == (lines, pixels)
        assert channel.unit != "deg"  # degrees are made radians
    assert frame.source == str(path)
    assert math.isfinite(frame.bias) and frame.setpoint > 0
    assert frame.finished_at > frame.started_at > 1.4e9


def test_scan_angle_becomes_counter_clockwise_radians() -> None:
    frame = read_sxm(real("pynxtools-spm/Au_mica_2023_Y_A_diPAMY_195.sxm"))
    assert frame.metadata["SCAN_ANGLE"] == "1.351E+2"  # Nanonis: degrees, clockwise
    assert frame.area.angle == pytest.approx(-math.radians(135.1))
    tilted = read_sxm(real("G80SXM/example_nc-AFM.sxm"))
    assert tilted.area.angle == pytest.approx(math.radians(5.308))


def test_minimal_old_header_and_recent_header_both_read() -> None:
    old = read_sxm(real("pySPM/test.sxm"))
    new = read_sxm(real("pynxtools-spm/Au_mica_2023_Y_A_diPAMY_195.sxm"))
    assert len(old.metadata) == 17 and len(new.metadata) == 166
    assert old.metadata["COMMENT"] == "initial scan"
    assert new.metadata["COMMENT"] == "4.4 K\n1.0 E-9 mbar"  # multi-line values keep their lines
    assert old.setpoint == 2e-10 and new.setpoint == 2.49999e-11  # table vs Z-Controller>Setpoint


def test_phase_channels_are_radians() -> None:
    frame = read_sxm(real("G80SXM/example_FFT.sxm"))
    assert frame.channels["OC_D1_Phase"].unit == "rad"
    raw = nanonispy2.Scan(str(real("G80SXM/example_FFT.sxm"))).signals["OC_D1_Phase"]["forward"]
    assert np.array_equal(
        frame.channels["OC_D1_Phase"].forward, raw.astype(float) * (math.pi / 180)
    )


def test_backward_traces_are_unmirrored_to_line_up_with_forward() -> None:
    """In the file the backward line runs right to left; in the model pixel i is over pixel i."""
    frame = read_sxm(real("G80SXM/example_LineProfile.sxm"))
    z = frame.channels["Z"]
    assert z.backward is not None
    row = 128
    aligned = np.corrcoef(z.forward[row], z.backward[row])[0, 1]
    mirrored = np.corrcoef(z.forward[row], z.backward[row][::-1])[0, 1]
    assert aligned > 0.99 > 0 > mirrored


def _handmade(direction: str, lines: int = 3, pixels: int = 4, nan_rows: int = 0) -> bytes:
    """A file whose stored values say where they are: plane*1000 + row*10 + column."""
    header = (
        ":NANONIS_VERSION:\n2\n:SCANIT_TYPE:\n FLOAT MSBFIRST\n"
        f":SCAN_PIXELS:\n{pixels} {lines}\n:SCAN_RANGE:\n4E-9 3E-9\n:SCAN_DIR:\n{direction}\n"
        ":DATA_INFO:\n\tChannel\tName\tUnit\tDirection\tCalibration\tOffset\n"
        "\t14\tZ\tm\tboth\t1E+0\t0E+0\n\n:SCANIT_END:\n\n\n"
    )
    plane, row, col = np.meshgrid(range(2), range(lines), range(pixels), indexing="ij")
    values = (plane * 1000 + row * 10 + col).astype(">f4")
    if nan_rows:
        values[:, lines - nan_rows :, :] = np.nan
    return header.encode() + b"\x1a\x04" + values.tobytes()


@pytest.mark.parametrize("direction", ["up", "down"])
def test_stored_row_k_is_model_row_k_and_backward_is_reversed(direction: str) -> None:
    frame = decode_sxm(_handmade(direction))
    z = frame.channels["Z"]
    assert frame.direction == direction
    assert z.forward[0].tolist() == [0, 1, 2, 3]  # first stored line = first line scanned
    assert z.forward[2].tolist() == [20, 21, 22, 23]
    assert z.backward is not None
    assert z.backward[0].tolist() == [1003, 1002, 1001, 1000]  # stored right to left


def test_aborted_frame_lines_done_comes_from_the_data() -> None:
    frame = decode_sxm(_handmade("down", lines=5, nan_rows=2))
    assert frame.lines_done == 3 and not frame.complete
    assert np.isnan(frame.channels["Z"].forward[3:]).all()
    empty = decode_sxm(_handmade("up", lines=2, nan_rows=2))
    assert empty.lines_done == 0


def test_crlf_header_and_byte_order_mark_read_the_same() -> None:
    data = real("pySPM/test.sxm").read_bytes()
    end = data.find(b":SCANIT_END:")
    crlf = data[:end].replace(b"\n", b"\r\n") + data[end:]
    reference = decode_sxm(data)
    assert_same_frame(decode_sxm(crlf), reference)
    assert_same_frame(decode_sxm(b"\xef\xbb\xbf" + data), reference)


def test_lsbfirst_data_reads_the_same() -> None:
    frame = synthetic_frame()
    data = encode_sxm(frame)
    start = data.find(b"\x1a\x04") + 2
    swapped = np.frombuffer(data, ">f4", offset=start).astype("<f4").tobytes()
    little = data[:start].replace(b"FLOAT            MSBFIRST", b"FLOAT LSBFIRST") + swapped
    assert_same_frame(decode_sxm(little), decode_sxm(data), metadata=False)


def test_non_utf8_header_bytes_are_read_as_latin1() -> None:
    data = real("pySPM/test.sxm").read_bytes().replace(b"initial scan", b"initial sc\xe4n \xb5m")
    assert read_sxm(data).metadata["COMMENT"] == "initial scän µm"


# ------------------------------------------------------------------------------------------
# Round trips and the independent reader


@pytest.mark.parametrize("relative", SXM_FILES)
def test_real_file_round_trip_is_exact(relative: str, tmp_path: Path) -> None:
    frame = read_sxm(real(relative))
    again = read_sxm(write_sxm(frame, tmp_path / "again.sxm"))
    assert_same_frame(again, frame)


@pytest.mark.parametrize(
    ("direction", "lines_done", "angle"), [("up", None, 0.3), ("down", 7, -2.1), ("up", 0, 0.0)]
)
def test_synthetic_frame_round_trip_is_exact(
    direction: str, lines_done: int | None, angle: float
) -> None:
    frame = synthetic_frame(direction=direction, lines_done=lines_done, angle=angle)
    again = decode_sxm(encode_sxm(frame))
    assert_same_frame(again, frame, metadata=False)
    assert again.channels["Input_3"].backward is None  # forward-only stays forward-only
    assert again.channels["Phase"].unit == "rad"
    assert "deg" in str(again.metadata["DATA_INFO"])  # ... stored in degrees, as Nanonis does
    assert_same_frame(decode_sxm(encode_sxm(again)), again)  # and the header is then stable


def test_changed_fields_are_rewritten_and_the_rest_of_the_header_kept() -> None:
    frame = read_sxm(real("pySPM/test.sxm"))
    frame.bias, frame.setpoint, frame.direction = 1.25, 3e-11, "down"
    again = decode_sxm(encode_sxm(frame))
    assert (again.bias, again.setpoint, again.direction) == (1.25, 3e-11, "down")
    assert again.metadata["COMMENT"] == "initial scan"
    assert again.metadata["Z-CONTROLLER"] == (
        "Name\ton\tSetpoint\tP-gain\tI-gain\tT-const\n"
        "log Current\t1\t3E-11 A\t2.937E-11 m\t3.865E-7 m/s\t7.599E-5 s"
    )


def _nanonispy2_frame(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nanonispy2.Scan(str(path)).signals  # type: ignore[no-any-return]


def _expected_from_file(channel: Channel, raw: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """What our reader must make of nanonispy2's raw arrays: float64, un-mirrored, SI."""
    factor = math.pi / 180 if channel.unit == "rad" else 1.0
    forward = raw["forward"].astype(np.float64) * factor
    backward = raw["backward"].astype(np.float64)[:, ::-1] * factor
    return forward, backward


@pytest.mark.parametrize("source", ["synthetic", "pySPM/test.sxm", "G80SXM/example_FFT.sxm"])
def test_nanonispy2_reads_written_files_with_the_same_arrays(source: str, tmp_path: Path) -> None:
    if source == "synthetic":
        frame = synthetic_frame(lines=12, pixels=20, lines_done=9)
        frame.channels.pop("Input_3")  # nanonispy2 only reads files where every channel has both
    else:
        frame = read_sxm(real(source))
    path = write_sxm(frame, tmp_path / "written.sxm")
    signals = _nanonispy2_frame(path)
    assert list(signals) == list(frame.channels)
    for name, channel in frame.channels.items():
        forward, backward = _expected_from_file(channel, signals[name])
        assert np.array_equal(forward, channel.forward, equal_nan=True), name
        assert np.array_equal(backward, channel.backward, equal_nan=True), name


@pytest.mark.parametrize("relative", SXM_FILES)
def test_nanonispy2_and_probepilot_agree_on_real_files(relative: str) -> None:
    path = real(relative)
    frame, signals = read_sxm(path), _nanonispy2_frame(path)
    for name, channel in frame.channels.items():
        forward, backward = _expected_from_file(channel, signals[name])
        assert np.array_equal(forward, channel.forward) and np.array_equal(
            backward, channel.backward
        )


# ------------------------------------------------------------------------------------------
# Bad input


def _with(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


@pytest.fixture(scope="module")
def small() -> bytes:
    return encode_sxm(synthetic_frame(lines=6, pixels=8))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"GIF89a" + d, "not a Nanonis .sxm file"),
        (lambda d: d[:200], "no ':SCANIT_END:' line"),
        (lambda d: d[: d.find(b"\x1a\x04")], "marker"),
        (lambda d: d[:-5], "truncated: the header promises 7 images of 8x6 float32"),
        (lambda d: d + b"\0" * 8, "unexpected bytes after the data"),
        (lambda d: _with(d, b"8         6\n", b"100000 100000\n"), "truncated"),
        (lambda d: _with(d, b"8         6\n", b"8 -6\n"), "SCAN_PIXELS: -6 is out of range"),
        (lambda d: _with(d, b"8         6\n", b"8 six\n"), "SCAN_PIXELS: 'six' is not a whole"),
        (
            lambda d: _with(d, b":SCAN_RANGE:\n", b":SCAN_RANGE:\nx"),
            "SCAN_RANGE: 'x4E-08' is not a",
        ),
        (lambda d: _with(d, b"\tboth\t", b"\tsideways\t"), "unknown direction 'sideways'"),
        (lambda d: _with(d, b"MSBFIRST", b"MSB\xffIRST"), "SCANIT_TYPE"),
        (lambda d: _with(d, b":DATA_INFO:", b":DATA_INF0:"), "no DATA_INFO"),
        (lambda d: _with(d, b":SCAN_DIR:\nup", b":SCAN_DIR:\nsideways"), "SCAN_DIR"),
    ],
)
def test_bad_files_raise_one_line_format_errors_naming_the_file(
    small: bytes, mutate: object, message: str
) -> None:
    with pytest.raises(FormatError) as caught:
        read_sxm(mutate(small), name="broken.sxm")  # type: ignore[operator]
    text = str(caught.value)
    assert text.startswith("broken.sxm: ") and "\n" not in text
    assert message in text


def test_a_lying_size_field_allocates_nothing_big(small: bytes) -> None:
    lying = _with(small, b"8         6\n", b"2000000000 2000000000\n")
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="truncated"):
            read_sxm(lying)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(lying)


def test_unreadable_path_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot be read"):
        read_sxm(tmp_path / "missing.sxm")


def test_writer_refuses_frames_it_cannot_write() -> None:
    frame = synthetic_frame()
    frame.channels["Z"].forward = np.zeros((3, 3))
    with pytest.raises(ValueError, match="shape"):
        encode_sxm(frame)
    frame = synthetic_frame()
    frame.channels = {"Bad\tname": Channel("Bad\tname", "m", frame.topography)}
    with pytest.raises(ValueError, match="tab"):
        encode_sxm(frame)
