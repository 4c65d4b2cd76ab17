"""The example third-party driver passes the same contract suite as the built-in drivers."""

from __future__ import annotations

import pytest

from probepilot.testing import DriverConformance
from probepilot_noise.driver import NoiseDriver, NoiseOptions


class TestNoiseConformance(DriverConformance):
    scan_pixels = 16
    scan_lines = 8

    @pytest.fixture
    def driver(self) -> NoiseDriver:
        return NoiseDriver(NoiseOptions(seed=5))
