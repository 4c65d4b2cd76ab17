"""Nanonis .dat spectra: real files, interrupted sweeps, exact round trips, nanonispy2 agreeing
with what we write, bad files failing cleanly."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from store_helpers import (
    DAT_FILES,
    DEG,
    NOT_INSTRUMENT_DAT,
    assert_same_spectrum,
    real,
    synthetic_spectrum,
)

from probepilot.errors import FormatError
from probepilot.store import decode_dat, encode_dat, read_dat, write_dat

nanonispy2 = pytest.importorskip("nanonispy2.read")


def _titles(data: bytes) -> list[str]:
    text = data.decode("utf-8-sig")
    return text[text.find("[DATA]") :].splitlines()[1].rstrip("\t").split("\t")


@pytest.mark.parametrize("relative", DAT_FILES)
def test_real_file_reads_every_column(relative: str) -> None:
    path = real(relative)
    spectrum = read_dat(path)
    titles = _titles(path.read_bytes())
    assert len(spectrum.channels) == len(titles) - 1
    assert spectrum.sweep.dtype == np.float64 and len(spectrum.sweep) > 100
    assert all(len(v) == len(spectrum.sweep) for v in spectrum.channels.values())
    assert spectrum.complete
    assert all(math.isfinite(v) for v in spectrum.position)
    assert spectrum.started_at > 1.3e9
    assert "deg" not in spectrum.units.values() and spectrum.sweep_unit != "deg"
    assert not any(key.startswith("\ufeff") for key in spectrum.metadata)


def test_names_units_and_tags() -> None:
    spectrum = read_dat(real("G80SXM/example_STS_AgRef.dat"))
    assert (spectrum.sweep_name, spectrum.sweep_unit) == ("Bias calc", "V")
    assert spectrum.units["Current"] == "A"
    assert spectrum.units["Current [bwd]"] == "A"
    assert spectrum.units["Current [bwd] [filt]"] == "A"  # "Current (A) [bwd] [filt]"
    assert spectrum.units["OC D1 Phase"] == "rad"
    assert spectrum.metadata["Bias Spectroscopy>Num Pixel"] == "401"
    assert spectrum.position == (-37.0278e-9, -55.8811e-9)


def test_degrees_become_radians() -> None:
    path = real("G80SXM/example_STS_AgRef.dat")
    spectrum = read_dat(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = nanonispy2.Spec(str(path)).signals["OC D1 Phase (deg)"]
    assert np.array_equal(spectrum.channels["OC D1 Phase"], raw * DEG, equal_nan=True)


def test_crlf_lf_and_byte_order_mark_read_the_same() -> None:
    data = real("SciFiReaders/Bias-Spectroscopy041.dat").read_bytes()
    assert b"\r\n" in data
    reference = decode_dat(data)
    assert_same_spectrum(decode_dat(data.replace(b"\r\n", b"\n")), reference)
    assert_same_spectrum(decode_dat(b"\xef\xbb\xbf" + data), reference)
    bom = read_dat(real("pynxtools-spm/STS_nanonis_generic_4_5.dat"))
    assert bom.metadata["Experiment"] == "bias spectroscopy"


def test_duplicate_header_keys_keep_one_value() -> None:
    spectrum = read_dat(real("nanonispy/duplicate_headers.dat"))
    assert spectrum.metadata["Experiment"] == "bias spectroscopy"
    assert_same_spectrum(spectrum, read_dat(real("nanonispy/Bias-Spectroscopy002.dat")))


def test_raw_array_file_with_a_dat_suffix_is_refused() -> None:
    with pytest.raises(FormatError, match=r"image_with_defects\.dat: not a Nanonis \.dat"):
        read_dat(real(NOT_INSTRUMENT_DAT))


# ------------------------------------------------------------------------------------------
# Interrupted spectra


def test_trailing_nan_rows_mark_an_interrupted_spectrum() -> None:
    data = real("G80SXM/example_STS_CuHigh.dat").read_bytes()
    head, _, table = data.partition(b"[DATA]\n")
    titles, *rows = table.decode().splitlines()
    width = len(titles.split("\t"))
    rows[-100:] = ["\t".join([r.split("\t")[0], *["NaN"] * (width - 1)]) for r in rows[-100:]]
    spectrum = decode_dat(head + b"[DATA]\n" + "\n".join([titles, *rows]).encode())
    assert not spectrum.complete
    assert len(spectrum.sweep) == 301 and len(spectrum.channels["Current"]) == 301


def test_fewer_rows_than_planned_mark_an_interrupted_spectrum() -> None:
    data = real("G80SXM/example_STS_CuHigh.dat").read_bytes()
    lines = data.split(b"\n")
    spectrum = decode_dat(b"\n".join(lines[:-150]))
    assert not spectrum.complete and len(spectrum.sweep) < 401


# ------------------------------------------------------------------------------------------
# Round trips and the independent reader


@pytest.mark.parametrize("relative", DAT_FILES)
def test_real_file_round_trip_is_exact(relative: str, tmp_path: Path) -> None:
    spectrum = read_dat(real(relative))
    assert_same_spectrum(read_dat(write_dat(spectrum, tmp_path / "again.dat")), spectrum)


@pytest.mark.parametrize("complete", [True, False])
def test_synthetic_spectrum_round_trip_is_exact(complete: bool) -> None:
    spectrum = synthetic_spectrum(complete=complete)
    again = decode_dat(encode_dat(spectrum))
    assert_same_spectrum(again, spectrum, metadata=False)
    assert again.units["Phase"] == "rad"
    assert_same_spectrum(decode_dat(encode_dat(again)), again)


def test_written_files_follow_nanonis_conventions() -> None:
    text = encode_dat(synthetic_spectrum()).decode()
    assert text.startswith("Experiment\tbias spectroscopy\t\r\n")
    titles = text[text.find("[DATA]") :].split("\r\n")[1]
    assert titles.split("\t") == [
        "Bias calc (V)",
        "Current (A)",
        "Current [bwd] (A)",
        "Phase (deg)",
        "LI Demod 1 X (A) [filt]",
    ]


@pytest.mark.parametrize(
    "source", ["synthetic", "G80SXM/example_STS_AgRef.dat", "nanonis-xarray/z.dat"]
)
def test_nanonispy2_reads_written_files_with_the_same_arrays(source: str, tmp_path: Path) -> None:
    spectrum = synthetic_spectrum() if source == "synthetic" else read_dat(real(source))
    path = write_dat(spectrum, tmp_path / "written.dat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals = nanonispy2.Spec(str(path)).signals
    titles = list(signals)
    assert len(titles) == len(spectrum.channels) + 1
    assert np.array_equal(signals[titles[0]], spectrum.sweep)
    for title, (name, values) in zip(titles[1:], spectrum.channels.items(), strict=True):
        factor = DEG if spectrum.units[name] == "rad" else 1.0
        assert np.array_equal(signals[title] * factor, values, equal_nan=True), title


# ------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "there is no [DATA] line"),
        (b"Experiment\tbias spectroscopy\t\r\n", "there is no [DATA] line"),
        (b"[DATA]\n", "there are no column titles"),
        (b"[DATA]\nBias calc (V)\tCurrent (A)\n1\t2\n3\n", "not a table of numbers"),
        (b"[DATA]\nBias calc (V)\tCurrent (A)\n1\t2\n3\tx\n", "not a table of numbers"),
        (b"[DATA]\nBias calc (V)\tCurrent (A)\n1\t2\t3\n", "the data rows have 3 numbers"),
        (b"[DATA]\nBias calc (V)\tCurrent (A)\n1\t\xff\xfe\n", "not a table of numbers"),
    ],
)
def test_bad_files_raise_one_line_format_errors(data: bytes, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        read_dat(data, name="broken.dat")
    text = str(caught.value)
    assert text.startswith("broken.dat: ") and "\n" not in text
    assert message in text


def test_header_only_spectrum_is_empty_not_an_error() -> None:
    spectrum = read_dat(b"Experiment\tbias spectroscopy\t\n\n[DATA]\nBias calc (V)\tCurrent (A)\n")
    assert len(spectrum.sweep) == 0 and spectrum.channels["Current"].shape == (0,)


def test_header_values_with_tabs_survive_a_round_trip() -> None:
    spectrum = synthetic_spectrum()
    spectrum.metadata = {"Experiment": "bias spectroscopy", "Comment": "two\tcolumns"}
    assert decode_dat(encode_dat(spectrum)).metadata["Comment"] == "two\tcolumns"
    spectrum.metadata["Bad\tkey"] = "x"
    with pytest.raises(ValueError, match=r"cannot go in a \.dat header"):
        encode_dat(spectrum)
