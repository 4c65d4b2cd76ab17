"""``probepilot run`` with ``driver = "nanonis"``, end to end over TCP against the virtual
Nanonis: the real session (approach, region search, scan, persist, analyse, decide, safety, act)
drives the controller through the Nanonis driver, as it would drive a real one."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from nanonis_helpers import virtual_nanonis

from probepilot.store import read_sxm
from probepilot.store.runsummary import summarise_run


def test_probepilot_run_drives_the_virtual_nanonis_end_to_end(
    tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    with virtual_nanonis(tmp_path / "controller", seed=21, tip="double") as server:
        config_file = tmp_path / "run.toml"
        config_file.write_text(
            'driver = "nanonis"\n'
            'policy = "random"\n'
            "[drivers.nanonis]\n"
            'host = "127.0.0.1"\n'
            f"ports = {list(server.ports)}\n"
            'timeout = "5 s"\n'
            'poll_interval = "5 ms"\n'
            "[policies.random]\n"
            "seed = 4\n"
            "[run]\n"
            'folder = "runs"\n'
            "pixels = 32\n"
            'line_time = "20 ms"\n',
            encoding="utf-8",
        )
        result = run_cli("run", "--headless", "--frames", "4", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("run completed: ")
    folder = Path(result.stdout.split(": ", 1)[1].strip())
    assert folder.parent == tmp_path / "runs"
    summary = summarise_run(folder)
    assert summary["outcome"] == "completed"
    assert summary["frames"] == {"count": 4, "complete": 4}
    assert summary["findings"]["frames_analysed"] == 4
    assert summary["driver_errors"] == 0
    for i in range(1, 5):
        frame = read_sxm(folder / "frames" / f"frame-{i:06d}.sxm")
        assert frame.complete and frame.topography.shape == (32, 32)
        assert np.isfinite(frame.topography).all()
    # The controller saved its own copy of each frame too, as a real Nanonis does.
    assert len(list((tmp_path / "controller").glob("*.sxm"))) == 4
    # The progress display showed every frame.
    assert result.stderr.count("frame ") >= 4


def test_the_plugin_is_listed_with_its_driver_and_command(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    info = next(p for p in json.loads(result.stdout) if p["name"] == "nanonis")
    assert info["provides"] == {"driver": ["nanonis"]} and info["error"] is None
    assert "probepilot_register_commands" in info["hooks"]
    help_text = run_cli("sim-server", "nanonis", "--help").stdout
    assert "--faults" in help_text and "--ports" in help_text
