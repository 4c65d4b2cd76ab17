"""The sim plugin: registration, options from a config table, and `probepilot sim-preview`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from probepilot.contracts import Driver
from probepilot.errors import ConfigError
from probepilot.options import build
from probepilot.registry import Registry
from probepilot_sim import plugin
from probepilot_sim.driver import SimDriver
from probepilot_sim.options import SimOptions
from probepilot_sim.png import read_png_size


def test_the_entry_point_names_the_plugin_module() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="probepilot")}
    assert found.get("sim") == "probepilot_sim.plugin"


def test_registers_the_sim_driver_with_its_options() -> None:
    registry: Registry[Driver] = Registry("driver")
    plugin.probepilot_register_drivers(registry)
    entry = registry.get("sim")
    assert entry.options is SimOptions
    assert "simulated" in entry.description
    driver = entry.factory(SimOptions(seed=3))
    assert isinstance(driver, SimDriver) and isinstance(driver, Driver)

    async def body() -> None:
        await driver.connect()
        assert (await driver.limits()).piezo_range == (1e-6, 1e-6, 200e-9)
        await driver.close()

    asyncio.run(body())


def test_options_accept_unit_strings_and_reject_nonsense() -> None:
    table = {
        "seed": 3,
        "surface": "si111_7x7",
        "tip": "double",
        "time_scale": 10,
        "piezo_range": ["500 nm", "500 nm", "100 nm"],
        "drift_velocity": ["0.05 nm/s", "-20 pm/s", "0 nm/s"],
        "noise_current": "2 %",
        "feedback_bandwidth": "2 kHz",
        "crash_depth": "4 nm",
    }
    options = build(SimOptions, table, source="run.toml", key="drivers.sim")
    assert options.piezo_range == pytest.approx((500e-9, 500e-9, 100e-9))
    assert options.drift_velocity == pytest.approx((5e-11, -2e-11, 0.0))
    assert options.noise_current == pytest.approx(0.02)
    assert options.feedback_bandwidth == pytest.approx(2000.0)
    for bad in ({"surface": "gold"}, {"tip": "sharp"}, {"time_scale": -1}, {"bias": "3 m"}):
        with pytest.raises(ConfigError, match=r"drivers\.sim"):
            build(SimOptions, bad, source="run.toml", key="drivers.sim")


def test_plugin_import_stays_light() -> None:
    code = "import sys, probepilot_sim.plugin; print('scipy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_sim_preview_writes_four_panels_side_by_side(tmp_path: Path) -> None:
    cli = click.Group("probepilot")
    plugin.probepilot_register_commands(cli)
    out = tmp_path / "preview.png"
    result = CliRunner().invoke(
        cli, ["sim-preview", "--out", str(out), "--pixels", "48", "--size", "15", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "good, double, blunt, unstable" in result.output
    assert read_png_size(out) == (4 * 48 + 3 * 4, 48)
    bad = CliRunner().invoke(cli, ["sim-preview", "--out", str(out), "--size", "0"])
    assert bad.exit_code == 2


def test_png_round_trip(tmp_path: Path) -> None:
    import struct
    import zlib

    import numpy as np

    from probepilot_sim.png import colourise, write_png

    rgb = colourise(np.random.default_rng(0).normal(size=(7, 5)))
    path = tmp_path / "x.png"
    write_png(path, rgb)
    data = path.read_bytes()
    chunks = {}
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(7, 1 + 15)
    assert (raw[:, 0] == 0).all()
    assert np.array_equal(raw[:, 1:].reshape(7, 5, 3), rgb)
