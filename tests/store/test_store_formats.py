"""The format objects: suffix dispatch, the FileFormat contract, registry registration, and
that every real instrument file in the shared folder reads (the README's odd ones refuse)."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import STM_DATA, synthetic_frame

from probepilot.contracts import FileFormat
from probepilot.errors import FormatError
from probepilot.model import Frame, Spectrum
from probepilot.registry import Registry
from probepilot.store import (
    DAT,
    FORMATS,
    GRID_3DS,
    MATRIX,
    SXM,
    Grid,
    format_for,
    read_any,
    register_formats,
)


def test_formats_satisfy_the_file_format_contract() -> None:
    for each in FORMATS:
        assert isinstance(each, FileFormat)
        assert all(s.startswith(".") and s == s.lower() for s in each.suffixes)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan.sxm", SXM),
        ("SCAN.SXM", SXM),
        ("Bias-Spectroscopy001.dat", DAT),
        ("grid.3ds", GRID_3DS),
        ("20201111--4_1.Z_mtrx", MATRIX),
        ("20201111--9_1.I(V)_mtrx", MATRIX),
        ("20201111--9_1.Aux2(V)_mtrx", MATRIX),
    ],
)
def test_format_for_picks_by_suffix(name: str, expected: object) -> None:
    assert format_for(name) is expected


def test_unknown_suffixes_and_parameter_files_are_format_errors() -> None:
    with pytest.raises(FormatError, match=r"unknown file type '\.gwy'.*reads \.sxm"):
        format_for("image.gwy")
    with pytest.raises(FormatError, match="MATRIX parameter file holds no data"):
        read_any("20201111_0001.mtrx")


def test_write_through_the_format_object(tmp_path: Path) -> None:
    frame = synthetic_frame()
    path = SXM.write(frame, tmp_path / "frame.sxm")
    assert isinstance(read_any(path), Frame)
    with pytest.raises(FormatError, match=r"reads .* but does not write it"):
        MATRIX.write(frame, tmp_path / "x.Z_mtrx")


def test_register_formats_fills_a_registry() -> None:
    registry: Registry[FileFormat] = Registry("format")
    register_formats(registry)
    assert registry.get("nanonis_sxm").factory(None) is SXM
    assert {registry.get(f.name).name for f in FORMATS} == {f.name for f in FORMATS}


def test_every_instrument_file_in_the_shared_folder_reads() -> None:
    if not STM_DATA.is_dir():
        pytest.skip("the shared folder of real instrument files is not available")
    kinds: dict[str, int] = {}
    for path in sorted(STM_DATA.rglob("*")):
        if not path.is_file() or path.name == "README.md":
            continue
        if path.suffix == ".gwy" or path.name.endswith("_0001.mtrx") or "SPIEPy" in path.parts:
            with pytest.raises(FormatError):  # not Nanonis/MATRIX data (see the README)
                read_any(path)
            continue
        data = read_any(path)
        kind = type(data[0] if isinstance(data, list) else data).__name__
        kinds[kind] = kinds.get(kind, 0) + 1
        assert isinstance(data, Frame | Spectrum | Grid | list)
    assert kinds == {"Frame": 10, "Spectrum": 16, "Grid": 1}
