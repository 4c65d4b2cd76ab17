"""The user story "install a vendor driver plugin", with the example distribution in examples/.

The test command installs ``examples/probepilot-noise`` into the test environment the way a user
installs a third-party driver (pip, entry point metadata); these tests use it only through what
probepilot discovers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest

from probepilot.config import load_config
from probepilot.contracts import Capability, Driver
from probepilot.errors import NotConnectedError, NotSupportedError
from probepilot.model import LineProgress, ScanArea, ScanSettings

CLI = Callable[..., subprocess.CompletedProcess[str]]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    try:
        dist = distribution("probepilot-noise")
    except PackageNotFoundError:
        pytest.fail("probepilot-noise is not installed; run the README's test command")
    eps = [ep for ep in dist.entry_points if ep.group == "probepilot"]
    assert [(ep.name, ep.value) for ep in eps] == [("noise", "probepilot_noise.plugin")]


def test_listed_by_probepilot_plugins(run_cli: CLI) -> None:
    result = run_cli("plugins", "--json")
    noise = {p["name"]: p for p in json.loads(result.stdout)}["noise"]
    assert noise["distribution"] == "probepilot-noise"
    assert noise["version"] == "0.1.0"
    assert noise["provides"] == {"driver": ["noise"]}
    assert noise["error"] is None


def test_selected_by_config(run_cli: CLI) -> None:
    path = REPO / "examples" / "configs" / "noise.toml"
    result = run_cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    config, manager = load_config(path)
    options = config.options("driver", "noise")
    assert options.amplitude == pytest.approx(80e-12)
    driver = manager.registry("driver").get("noise").factory(options)
    assert isinstance(driver, Driver)


def test_noise_driver_scans_line_by_line() -> None:
    config, manager = load_config(REPO / "examples" / "configs" / "noise.toml")
    driver = manager.registry("driver").get("noise").factory(config.options("driver", "noise"))
    settings = ScanSettings(ScanArea((0.0, 0.0), (20e-9, 10e-9), pixels=32, lines=16), 0.1)
    seen: list[LineProgress] = []

    async def scenario() -> None:
        with pytest.raises(NotConnectedError):
            await driver.scan(settings)
        await driver.connect()
        frame = await driver.scan(settings, seen.append)
        assert frame.complete
        z = frame.channels["Z"].forward
        assert z.shape == (16, 32)
        assert np.std(z) == pytest.approx(80e-12, rel=0.2)
        assert Capability.BIAS_PULSE not in driver.capabilities()
        with pytest.raises(NotSupportedError, match="does not support bias pulses"):
            await driver.bias_pulse(2.0, 0.1)
        await driver.close()

    asyncio.run(scenario())
    assert [p.index for p in seen] == list(range(16))
