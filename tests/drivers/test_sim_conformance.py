"""The simulated STM passes the shared driver-contract suite."""

from __future__ import annotations

import pytest

from probepilot.testing import DriverConformance
from probepilot_sim.driver import SimDriver
from probepilot_sim.options import SimOptions


class TestSimConformance(DriverConformance):
    scan_pixels = 24
    scan_lines = 16

    @pytest.fixture
    def driver(self) -> SimDriver:
        return SimDriver(SimOptions(seed=11, tip="good", time_scale=0.0))


class TestSimConformanceRealTimeScale(DriverConformance):
    """With time passing (fast but not instant), cancellation still lands between lines."""

    scan_pixels = 8
    scan_lines = 8
    line_time = 0.02

    @pytest.fixture
    def driver(self) -> SimDriver:
        return SimDriver(SimOptions(seed=3, tip="unstable", surface="si111_7x7", time_scale=50.0))
