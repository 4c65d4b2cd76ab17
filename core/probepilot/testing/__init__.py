"""Test helpers for probepilot and its plugins (imported by test suites only; needs pytest).

:class:`DriverConformance` is the shared driver-contract suite: a driver's tests subclass it and
provide a ``driver`` fixture returning a fresh, not yet connected driver.
"""

from probepilot.testing.driver_conformance import DriverConformance, run_with

__all__ = ["DriverConformance", "run_with"]
