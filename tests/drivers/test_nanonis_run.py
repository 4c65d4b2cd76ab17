"""A minimal autonomous run over TCP: a config selects ``driver = "nanonis"`` pointed at the
virtual Nanonis, and a small loop (approach, pick region, scan, persist, analyse, decide, act)
acquires several frames end to end. Stands in for ``probepilot run`` until the session exists."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from nanonis_helpers import run, virtual_nanonis

from probepilot.config import load_config
from probepilot.contracts import Driver
from probepilot.model import Dip, Move, Pulse, ScanArea, ScanSettings
from probepilot.store import read_sxm, write_sxm
from probepilot_nanonis.options import NanonisOptions


def autopilot(driver: Driver, folder: Path, frames: int) -> list[str]:
    """Scan ``frames`` regions; condition the tip when a frame looks rough. Returns the log."""
    log: list[str] = []
    size = 20e-9

    async def loop() -> None:
        await driver.connect()
        await driver.approach()
        half = (await driver.limits()).piezo_range[0] / 2
        centres = [(x, 0.0) for x in np.linspace(-half / 2, half / 2, frames)]
        for i, centre in enumerate(centres):
            settings = ScanSettings(ScanArea(centre, (size, size), 32, 24), 0.02)
            lines: list[int] = []
            frame = await driver.scan(settings, lines.append)
            path = write_sxm(frame, folder / f"frame_{i:03d}.sxm")  # persisted before analysis
            log.append(f"scan {i}: {frame.lines_done}/{len(lines)} lines -> {path.name}")
            roughness = float(np.nanstd(frame.topography))
            # A toy policy: dip once, pulse whenever a frame is rough.
            action = Dip(0.5e-9) if i == 1 else Pulse(2.5, 0.05) if roughness > 0.5e-9 else None
            if isinstance(action, Pulse):
                await driver.bias_pulse(action.voltage, action.width)
            elif isinstance(action, Dip):
                await driver.dip(action.depth, action.bias)
            log.append(f"decide {i}: {type(action).__name__ if action else 'keep imaging'}")
            move = Move(*centres[(i + 1) % frames])
            await driver.set_tip_position(move.x, move.y)
        await driver.close()

    run(loop, timeout=60)
    return log


def test_a_run_configured_for_nanonis_acquires_frames_end_to_end(tmp_path: Path) -> None:
    with virtual_nanonis(tmp_path / "controller", seed=21, tip="double") as server:
        config_file = tmp_path / "run.toml"
        config_file.write_text(
            'driver = "nanonis"\n[drivers.nanonis]\nhost = "127.0.0.1"\n'
            f'ports = {list(server.ports)}\ntimeout = "2 s"\npoll_interval = "5 ms"\n',
            encoding="utf-8",
        )
        config, manager = load_config(config_file)
        options = config.options("driver", "nanonis")
        assert isinstance(options, NanonisOptions) and options.timeout == 2.0
        driver = manager.registry("driver").get(config.driver).factory(options)
        folder = tmp_path / "run"
        folder.mkdir()
        log = autopilot(driver, folder, frames=4)

    assert [line.split(":")[0] for line in log[::2]] == [f"scan {i}" for i in range(4)]
    assert all("24/24 lines" in line for line in log[::2])
    assert "decide 1: Dip" in log
    for i in range(4):
        frame = read_sxm(folder / f"frame_{i:03d}.sxm")
        assert frame.complete and frame.topography.shape == (24, 32)
        assert np.isfinite(frame.topography).all()
    # The controller saved its own copy of each frame too.
    assert len(list((tmp_path / "controller").glob("*.sxm"))) == 4


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
