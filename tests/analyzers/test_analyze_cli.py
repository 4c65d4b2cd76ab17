"""`probepilot analyze` and `probepilot replay`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from analyzer_helpers import STM_DATA, double_apex, microscope, scan

from probepilot.store import write_sxm
from probepilot.store.runfolder import RunFolder

CLI = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two consecutive frames of a drifting double tip, written as .sxm files."""
    folder = tmp_path_factory.mktemp("scans")
    scope = microscope("au111", seed=6, feature_density=3.0, drift_walk=0.0, creep=0.0)
    scope.apex = double_apex(1.3e-9, 0.6e-9, 0.02e-9)
    paths = []
    for k in range(2):
        frame = scan(scope, 20e-9, 128)
        frame.started_at += 1.7e9  # files carry wall-clock times
        paths.append(write_sxm(frame, folder / f"scan{k}.sxm"))
    return paths


def test_analyze_json_one_object_per_file(run_cli: CLI, scans: list[Path]) -> None:
    result = run_cli("analyze", *map(str, scans), "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["file"] == str(scans[0]) and first["format"] == "nanonis_sxm"
    kinds = {f["kind"]: f for f in second["findings"]}
    assert set(kinds) >= {"double_tip", "drift", "tip_change", "roughness"}
    assert kinds["double_tip"]["confidence"] > 0.5
    assert kinds["double_tip"]["values"]["offset_x"] == pytest.approx(1.3e-9, abs=0.2e-9)
    # The second file is measured against the first: drift 20 pm/s along x (the default).
    assert kinds["drift"]["values"]["status"] == "ok"
    assert kinds["drift"]["values"]["vx"] == pytest.approx(20e-12, abs=5e-12)
    assert {f["kind"]: f for f in first["findings"]}["drift"]["confidence"] == 0.0


def test_analyze_text_and_errors(run_cli: CLI, scans: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.sxm"
    result = run_cli("analyze", str(scans[0]), str(missing), "-a", "double_tip")
    assert result.returncode == 1
    assert "double_tip" in result.stdout and "P(double)" in result.stdout
    assert "nope.sxm: error:" in result.stderr
    unknown = run_cli("analyze", str(scans[0]), "-a", "nonsense")
    assert unknown.returncode != 0
    assert "nonsense" in unknown.stderr


@pytest.mark.skipif(not STM_DATA.is_dir(), reason="../shared/stm-data is absent")
def test_analyze_real_spectrum_and_matrix(run_cli: CLI) -> None:
    spectrum = STM_DATA / "nanonispy" / "Bias-Spectroscopy002.dat"
    matrix = STM_DATA / "matrix-spm-rs" / "20201111--4_1.Z_mtrx"
    result = run_cli("analyze", str(spectrum), str(matrix), "--json")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.strip().splitlines())
    assert first["frames"] == 0 and first["findings"] == []
    assert second["frames"] >= 1
    assert {f["frame"] for f in second["findings"]} == set(range(1, second["frames"] + 1))


def test_replay_reruns_a_recorded_run(run_cli: CLI, tmp_path: Path) -> None:
    scope = microscope("si111_7x7", seed=2, drift_walk=0.0, creep=0.0)
    with RunFolder.create(tmp_path / "runs", run_id="run-1") as run:
        for _ in range(3):
            event = run.add_frame(scan(scope, 20e-9, 96))
            run.emit("frame.analysed", {"frame": event.data["file"], "tip_state": "good"})
    result = run_cli("replay", str(run.path), "--json", "-a", "drift", "-a", "roughness")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["frame"] for r in records] == [f"frames/frame-00000{k}.sxm" for k in (1, 2, 3)]
    assert all(r["recorded_tip_state"] == "good" for r in records)
    drift = next(f for f in records[-1]["findings"] if f["kind"] == "drift")
    assert drift["values"]["status"] == "ok"
    assert drift["values"]["vx"] == pytest.approx(20e-12, abs=3e-12)
    text = run_cli("replay", str(run.path))
    assert text.returncode == 0, text.stderr
    assert "frame-000003.sxm (recorded: good)" in text.stdout
    not_a_run = run_cli("replay", str(tmp_path))
    assert not_a_run.returncode != 0
    assert "not a run folder" in not_a_run.stderr
