"""The remote driver passes the shared driver-contract suite over TCP loopback, against a
driver host serving the simulator: the same tests the sim driver passes on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probepilot.bus.host import HostThread
from probepilot.testing import DriverConformance
from probepilot_remote.driver import RemoteDriver
from probepilot_remote.options import RemoteOptions
from probepilot_sim.driver import SimDriver
from probepilot_sim.options import SimOptions


class TestRemoteConformance(DriverConformance):
    """Simulator at full speed behind the host."""

    scan_pixels = 24
    scan_lines = 16
    timeout = 30.0

    @pytest.fixture(scope="class")
    def host(self) -> Iterator[HostThread]:
        with HostThread(SimDriver(SimOptions(seed=11, tip="good", time_scale=0.0))) as host:
            yield host

    @pytest.fixture
    def driver(self, host: HostThread) -> RemoteDriver:
        return RemoteDriver(RemoteOptions(address=host.address, timeout=5.0, heartbeat=0.2))


class TestRemoteConformanceRealTime(DriverConformance):
    """Simulated time passing: progress arrives line by line while the host scans, and a
    cancellation reaches the host mid-frame."""

    scan_pixels = 8
    scan_lines = 8
    line_time = 0.02
    timeout = 30.0

    @pytest.fixture(scope="class")
    def host(self) -> Iterator[HostThread]:
        options = SimOptions(seed=3, tip="unstable", surface="si111_7x7", time_scale=50.0)
        with HostThread(SimDriver(options)) as host:
            yield host

    @pytest.fixture
    def driver(self, host: HostThread) -> RemoteDriver:
        return RemoteDriver(RemoteOptions(address=host.address, timeout=5.0, heartbeat=0.2))


def test_the_remote_driver_is_a_plugin_configured_like_any_other(tmp_path: Path) -> None:
    from probepilot.config import load_config
    from probepilot.errors import ConfigError

    good = tmp_path / "good.toml"
    good.write_text(
        'driver = "remote"\n[drivers.remote]\naddress = "tcp://10.0.0.2:5570"\ntimeout = "2 s"\n',
        encoding="utf-8",
    )
    config, manager = load_config(good)
    driver = config.build(manager, "driver", "remote")
    assert isinstance(driver, RemoteDriver) and driver.options.timeout == 2.0
    bad = tmp_path / "bad.toml"
    bad.write_text('driver = "remote"\n[drivers.remote]\naddress = "10.0.0.2"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"drivers\.remote: address '10\.0\.0\.2' is not tcp://"):
        load_config(bad)
    half = tmp_path / "half.toml"
    half.write_text('driver = "remote"\n[drivers.remote]\nserver_key = "s.key"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="server_key and client_key go together"):
        load_config(half)
