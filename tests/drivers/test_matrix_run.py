"""``probepilot run`` with ``driver = "matrix"`` on the simulated MATRIX, end to end: the real
session (approach, region search, scan, persist, analyse, decide, safety, act) drives MATRIX's
property tree and data callbacks, and records every frame as ``.sxm`` like any other driver's."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from probepilot.store import read_sxm
from probepilot.store.runsummary import summarise_run

CLI = Callable[..., subprocess.CompletedProcess[str]]


def test_probepilot_run_drives_the_simulated_matrix_end_to_end(
    tmp_path: Path, run_cli: CLI
) -> None:
    config_file = tmp_path / "run.toml"
    config_file.write_text(
        'driver = "matrix"\n'
        'policy = "random"\n'
        "[drivers.matrix]\n"
        'transport = "simulated"\n'
        'timeout = "5 s"\n'
        "[drivers.matrix.simulated]\n"
        "seed = 21\n"
        'tip = "double"\n'
        'result_file_name = "20250114"\n'
        "[policies.random]\n"
        "seed = 4\n"
        "[run]\n"
        'folder = "runs"\n'
        "pixels = 32\n"
        'line_time = "20 ms"\n',
        encoding="utf-8",
    )
    result = run_cli("run", "--headless", "--frames", "3", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("run completed: ")
    folder = Path(result.stdout.split(": ", 1)[1].strip())
    assert folder.parent == tmp_path / "runs"
    summary = summarise_run(folder)
    assert summary["outcome"] == "completed"
    assert summary["frames"] == {"count": 3, "complete": 3}
    assert summary["findings"]["frames_analysed"] == 3
    assert summary["driver_errors"] == 0
    for i in range(1, 4):
        frame = read_sxm(folder / "frames" / f"frame-{i:06d}.sxm")
        assert frame.complete and frame.topography.shape == (32, 32)
        assert np.isfinite(frame.topography).all()
        assert float(frame.metadata["XYScanner.Points (Count)"]) == 32
        assert str(frame.metadata["MATRIX result file"]).startswith("20250114--")


def test_the_plugin_is_listed_with_its_driver(tmp_path: Path, run_cli: CLI) -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    info = next(p for p in json.loads(result.stdout) if p["name"] == "matrix")
    assert info["provides"] == {"driver": ["matrix"]} and info["error"] is None
    assert "probepilot_register_commands" in info["hooks"]  # probepilot matrix-check
    config_file = tmp_path / "matrix.toml"
    config_file.write_text('driver = "matrix"\n', encoding="utf-8")
    shown = run_cli("config", "show", "--config", str(config_file))
    assert shown.returncode == 0, shown.stderr
    assert "[drivers.matrix]" in shown.stdout and "[drivers.matrix.simulated]" in shown.stdout
