"""Helpers for the MATRIX tests: drivers and transports on the simulated MATRIX."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from probepilot_matrix.driver import MatrixDriver
from probepilot_matrix.options import MatrixOptions, SimulatedMatrixOptions
from probepilot_matrix.simulated import SimulatedMatrixTransport

T = TypeVar("T")
EXPERIMENT = "STM_AtomManipulation"


def options(**overrides: Any) -> MatrixOptions:
    """Simulated-MATRIX options: a good tip, as fast as possible, short timeouts.
    ``sim_*`` keys go to ``[drivers.matrix.simulated]``."""
    sim = {k[4:]: overrides.pop(k) for k in list(overrides) if k.startswith("sim_")}
    simulated = SimulatedMatrixOptions(**{"seed": 5, "tip": "good", **sim})
    base = MatrixOptions(transport="simulated", timeout=3.0, simulated=simulated)
    return dataclasses.replace(base, **overrides)


def driver(**overrides: Any) -> MatrixDriver:
    return MatrixDriver(options(**overrides))


def transport(**overrides: Any) -> SimulatedMatrixTransport:
    return SimulatedMatrixTransport(options(**overrides))


def full(name: str) -> str:
    """``"XYScanner.Width"`` -> ``"STM_AtomManipulation::XYScanner.Width"``."""
    element, _, rest = name.partition(".")
    element = EXPERIMENT if element == "Experiment" else element
    return f"{EXPERIMENT}::{element}.{rest}"


def run(body: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run ``body()`` in a fresh event loop within ``timeout`` seconds."""

    async def main() -> T:
        return await asyncio.wait_for(body(), timeout)

    return asyncio.run(main())
