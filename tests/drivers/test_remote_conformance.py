"""The remote driver passes the shared driver-contract suite over TCP loopback, against a
driver host serving the simulator: the same tests the sim driver passes on its own."""

from __future__ import annotations

from collections.abc import Iterator

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
