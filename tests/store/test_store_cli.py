"""``probepilot inspect`` and ``probepilot convert``, run as a user runs them (subprocess), plus
a third-party format found through the plugin manager's format registry (in-process)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from store_helpers import (
    MATRIX_FILE,
    SXM_FILES,
    real,
    synthetic_frame,
    synthetic_spectrum,
)

import probepilot.cli as cli_module
from probepilot import hookimpl
from probepilot.cli import cli
from probepilot.events import FRAME_ANALYSED
from probepilot.model import Channel
from probepilot.plugins import make_plugin_manager
from probepilot.store import read_matrix, read_sxm, write_dat, write_sxm
from probepilot.store.png import read_png_size
from probepilot.store.runfolder import RunFolder
from probepilot.store.summary import preview

Run = Callable[..., subprocess.CompletedProcess[str]]


def _one_line_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_inspect_json_gives_each_channel_in_si_units(run_cli: Run, tmp_path: Path) -> None:
    frame = synthetic_frame(lines_done=20)
    path = write_sxm(frame, tmp_path / "a.sxm")
    result = run_cli("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["format"], summary["kind"]) == ("nanonis_sxm", "frame")
    assert (summary["pixels"], summary["lines"], summary["lines_done"]) == (40, 24, 20)
    assert summary["complete"] is False and summary["direction"] == "up"
    again = read_sxm(path)
    rows = {(c["name"], c["trace"]): c for c in summary["channels"]}
    assert len(rows) == 7  # Z, Current, Phase both ways, Input_3 forward only
    for name, channel in again.channels.items():
        for trace, values in (("forward", channel.forward), ("backward", channel.backward)):
            if values is None:
                continue
            row = rows[(name, trace)]
            assert row["unit"] == channel.unit and row["shape"] == [24, 40]
            assert row["min"] == np.nanmin(values) and row["max"] == np.nanmax(values)
            assert row["mean"] == pytest.approx(np.nanmean(values), rel=1e-12)
            assert row["nan"] == 4 * 40
    assert rows[("Phase", "forward")]["unit"] == "rad"


def test_inspect_a_real_image_with_a_preview(run_cli: Run, tmp_path: Path) -> None:
    path = real(SXM_FILES[2])
    frame = read_sxm(path)
    result = run_cli("inspect", str(path), "--png", "z.png")
    assert result.returncode == 0, result.stderr
    assert "nanonis_sxm" in result.stdout and "channels" in result.stdout
    assert "Z [backward]" in result.stdout
    assert read_png_size(tmp_path / "z.png") == (frame.area.pixels, frame.area.lines)


def test_inspect_a_matrix_file(run_cli: Run) -> None:
    result = run_cli("inspect", str(real(MATRIX_FILE)), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["format"] == "matrix" and summary["kind"] == "frames"
    assert summary["frames"][0]["channels"][0]["name"] == "Z"


def test_inspect_a_spectrum_with_a_plot(run_cli: Run, tmp_path: Path) -> None:
    path = write_dat(synthetic_spectrum(), tmp_path / "s.dat")
    result = run_cli("inspect", str(path), "--png", "s.png", "--channel", "Phase")
    assert result.returncode == 0, result.stderr
    assert "Bias calc: 64 points" in result.stdout
    assert read_png_size(tmp_path / "s.png") == (480, 320)
    bad = run_cli("inspect", str(path), "--png", "s.png", "--channel", "Nope")
    assert "no channel 'Nope'; the channels are: Current" in _one_line_error(bad)


def test_preview_puts_the_top_of_the_area_on_top() -> None:
    """Row 0 is the first line scanned: the top edge for down scans, the bottom for up."""
    for direction, bright_row in (("down", 0), ("up", -1)):
        frame = synthetic_frame(direction=direction)
        z = np.zeros((24, 40))
        z[0, :] = 1.0  # the first line scanned stands out
        frame.channels = {"Z": Channel("Z", "m", z, None)}
        rgb = preview(frame)
        brightness = rgb.astype(int).sum(axis=(1, 2))
        assert int(np.argmax(brightness)) == (bright_row % 24), direction


def test_inspect_a_run_folder(run_cli: Run, tmp_path: Path) -> None:
    with RunFolder.create(tmp_path / "runs", run_id="r1") as run:
        for k, state in enumerate(("good", "double", "good")):
            persisted = run.add_frame(synthetic_frame(seed=k))
            run.emit(FRAME_ANALYSED, {"frame": persisted.data["file"], "tip_state": state})
    text = run_cli("inspect", str(run.path))
    assert text.returncode == 0, text.stderr
    assert "run r1" in text.stdout and "outcome    completed" in text.stdout
    assert "frames     3 (3 complete)" in text.stdout
    assert "good       66.7% of analysed frames" in text.stdout
    as_json = json.loads(run_cli("inspect", str(run.path), "--json").stdout)
    assert as_json["good_frame_fraction"] == pytest.approx(2 / 3)
    assert as_json["findings"]["tip_states"] == {"double": 1, "good": 2}
    not_a_run = run_cli("inspect", str(tmp_path / "runs"))
    assert "not a run folder" in _one_line_error(not_a_run)
    assert "inspect one, e.g." in not_a_run.stderr and "r1" in not_a_run.stderr
    png = run_cli("inspect", str(run.path), "--png", "x.png")
    assert png.returncode == 2 and "Traceback" not in png.stderr


def test_convert_to_npz_keeps_arrays_and_metadata(run_cli: Run, tmp_path: Path) -> None:
    source = write_sxm(synthetic_frame(), tmp_path / "a.sxm")
    result = run_cli("convert", str(source), "a.npz")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote a.npz (npz): a frame"
    frame = read_sxm(source)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        for name, channel in frame.channels.items():
            assert np.array_equal(npz[f"forward/{name}"], channel.forward, equal_nan=True)
        assert ("backward/Input_3" in npz.files) is False
        meta = json.loads(str(npz["metadata.json"]))
    assert meta["kind"] == "frame" and meta["units"]["Phase"] == "rad"
    assert meta["area"]["pixels"] == 40 and meta["header"]["SCAN_DIR"] == "up"


def test_convert_matrix_to_sxm(run_cli: Run, tmp_path: Path) -> None:
    source = real(MATRIX_FILE)
    result = run_cli("convert", str(source), "m.sxm")
    assert result.returncode == 0, result.stderr
    written, original = read_sxm(tmp_path / "m.sxm"), read_matrix(source)[0]
    assert written.area == original.area and written.direction == original.direction
    for name, channel in original.channels.items():  # .sxm holds float32
        mine = written.channels[name]
        assert channel.backward is not None and mine.backward is not None
        for ours, theirs in ((mine.forward, channel.forward), (mine.backward, channel.backward)):
            assert np.array_equal(ours, theirs.astype(np.float32), equal_nan=True)
    beyond = run_cli("convert", str(source), "m.sxm", "--frame", "3")
    assert "there is no frame 3" in _one_line_error(beyond)


def test_user_errors_are_one_line(run_cli: Run, tmp_path: Path) -> None:
    spectrum = write_dat(synthetic_spectrum(), tmp_path / "s.dat")
    wrong_kind = run_cli("convert", str(spectrum), "s.sxm")
    assert "holds a spectrum; nanonis_sxm files hold a frame" in _one_line_error(wrong_kind)
    assert not (tmp_path / "s.sxm").exists()
    (tmp_path / "x.gwy").write_bytes(b"GWYP")
    unknown = run_cli("inspect", "x.gwy")
    assert "unknown file type '.gwy'; probepilot reads" in _one_line_error(unknown)
    missing = run_cli("inspect", "nothing.sxm")
    assert "nothing.sxm: no such file or folder" in _one_line_error(missing)
    (tmp_path / "bad.sxm").write_bytes(b"not an image")
    corrupt = run_cli("convert", "bad.sxm", "out.npz")
    assert "not a Nanonis .sxm file" in _one_line_error(corrupt)
    no_formats = run_cli("inspect", str(spectrum), env={"PROBEPILOT_DISABLE_PLUGINS": "formats"})
    assert "'formats' plugin disabled" in _one_line_error(no_formats)


def test_formats_register_like_any_plugin(run_cli: Run) -> None:
    result = run_cli("plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["formats"]["module"] == "probepilot.store.plugin"
    assert plugins["formats"]["provides"]["format"] == [
        "matrix",
        "nanonis_3ds",
        "nanonis_dat",
        "nanonis_sxm",
    ]


class _ToyFormat:
    """A third-party format: ``.toy`` files hold one number per line, read as a spectrum."""

    name = "toy"
    suffixes = (".toy",)

    def read(self, path: Path) -> Any:
        spectrum = synthetic_spectrum(points=3)
        spectrum.channels = {"Current": np.loadtxt(path)}
        spectrum.units = {"Current": "A"}
        return spectrum


class _ToyPlugin:
    @hookimpl
    def probepilot_register_formats(self, registry: Any) -> None:
        registry.register("toy", lambda _options: _ToyFormat())


def test_a_plugin_format_is_inspected_and_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cli_module, "make_plugin_manager", lambda: make_plugin_manager(extra={"toy": _ToyPlugin()})
    )
    (tmp_path / "a.toy").write_text("1e-12\n2e-12\n4e-12\n")
    runner = CliRunner()
    shown = runner.invoke(cli, ["inspect", str(tmp_path / "a.toy"), "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["format"] == "toy" and summary["channels"][0]["max"] == 4e-12
    out = tmp_path / "a.dat"
    converted = runner.invoke(cli, ["convert", str(tmp_path / "a.toy"), str(out)])
    assert converted.exit_code == 0, converted.output
    assert "wrote" in converted.output and out.is_file()
