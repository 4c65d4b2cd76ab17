"""The Nanonis driver passes the shared driver-contract suite over TCP, against the virtual
Nanonis serving the simulator: the same tests that pass on the sim driver itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nanonis_helpers import driver, virtual_nanonis

from probepilot.testing import DriverConformance
from probepilot_nanonis.driver import NanonisDriver
from probepilot_nanonis.server import ServerThread


class TestNanonisConformance(DriverConformance):
    """Simulator at full speed: every scan completes between two polls."""

    scan_pixels = 32
    scan_lines = 12

    @pytest.fixture
    def server(self) -> Iterator[ServerThread]:
        with virtual_nanonis(seed=11) as server:
            yield server

    @pytest.fixture
    def driver(self, server: ServerThread) -> NanonisDriver:
        return driver(server)


class TestNanonisConformanceRealTime(DriverConformance):
    """Simulated time passing (5 ms per line): progress is followed line by line while the
    controller scans, and cancellation lands mid-frame."""

    scan_pixels = 16
    scan_lines = 8
    line_time = 0.02

    @pytest.fixture
    def server(self) -> Iterator[ServerThread]:
        with virtual_nanonis(seed=3, surface="si111_7x7", time_scale=8.0) as server:
            yield server

    @pytest.fixture
    def driver(self, server: ServerThread) -> NanonisDriver:
        return driver(server)
