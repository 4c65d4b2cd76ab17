"""The MATRIX driver passes the shared driver-contract suite on the simulated MATRIX: the same
tests that pass on the sim and Nanonis drivers, through MATRIX's property tree and data
callbacks."""

from __future__ import annotations

import pytest
from matrix_helpers import driver

from probepilot.testing import DriverConformance
from probepilot_matrix.driver import MatrixDriver


class TestMatrixConformance(DriverConformance):
    """Simulator at full speed: lines arrive as fast as the callbacks carry them."""

    scan_pixels = 16
    scan_lines = 12

    @pytest.fixture
    def driver(self) -> MatrixDriver:
        return driver()


class TestMatrixConformanceRealTime(DriverConformance):
    """Simulated time passing (50x): lines arrive over time, cancellation lands mid-frame."""

    scan_pixels = 8
    scan_lines = 8
    line_time = 0.02

    @pytest.fixture
    def driver(self) -> MatrixDriver:
        return driver(sim_seed=3, sim_surface="si111_7x7", sim_tip="unstable", sim_time_scale=50.0)
