"""The SR570 preamplifier driver (listen-only) over a pseudo-terminal with a simulated SR570."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

pytest.importorskip("serial")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("the simulated devices use POSIX pseudo-terminals", allow_module_level=True)

from probepilot.contracts import Preamplifier
from probepilot.errors import DriverConnectionError, LimitError, NotConnectedError
from probepilot_serial.options import Sr570Options
from probepilot_serial.simulated import PtyDevice, Sr570Simulator
from probepilot_serial.sr570 import SENSITIVITIES, Sr570, sensitivity_index

T = TypeVar("T")


def run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(work(), 20))


def wait_for(check: Callable[[], bool], timeout: float = 2.0) -> bool:
    """The SR570 never answers: wait until the simulated one has read what was sent."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_sensitivity_table_and_gain_ranges() -> None:
    assert len(SENSITIVITIES) == 28
    assert SENSITIVITIES[0] == 1e-12 and SENSITIVITIES[-1] == 1e-3
    assert sensitivity_index(1e9) == 9  # 1 nA/V
    assert sensitivity_index(1e12) == 0 and sensitivity_index(1e3) == 27
    assert sensitivity_index(4e8) == 10  # closest on a log scale: 2 nA/V (5e8 V/A)
    for bad in (1e14, 10.0, 0.0, -1e9, float("nan")):
        with pytest.raises(LimitError):
            sensitivity_index(bad)


def test_gain_is_sent_on_connect_and_when_set() -> None:
    sim = Sr570Simulator()
    with PtyDevice(sim) as device:
        preamp = Sr570(Sr570Options(port=device.port, gain=1e8, timeout=0.5))
        assert isinstance(preamp, Preamplifier)

        async def go() -> tuple[float, float]:
            await preamp.connect()
            first = await preamp.get_gain()
            await preamp.set_gain(1e10)
            second = await preamp.get_gain()
            await preamp.send("GNMD 2")
            await preamp.close()
            return first, second

        assert run(go) == (1e8, 1e10)
        assert wait_for(lambda: sim.log == ["SENS 12", "SENS 6", "GNMD 2"])
    assert sim.sensitivity == 6 and sim.settings == {"GNMD": 2} and sim.errors == 0


def test_an_unknown_gain_and_use_before_connect() -> None:
    with PtyDevice(Sr570Simulator()) as device:
        preamp = Sr570(Sr570Options(port=device.port, gain=None))
        with pytest.raises(NotConnectedError):
            run(preamp.get_gain)

        async def go() -> None:
            await preamp.connect()
            with pytest.raises(NotConnectedError, match="unknown until it is set"):
                await preamp.get_gain()
            with pytest.raises(LimitError):
                await preamp.set_gain(1e15)
            await preamp.close()

        run(go)


def test_a_dead_line_is_a_disconnect() -> None:
    device = PtyDevice(Sr570Simulator())
    preamp = Sr570(Sr570Options(port=device.port))

    async def go() -> None:
        await preamp.connect()
        device.hangup()
        with pytest.raises(DriverConnectionError):
            # Writes into a dead terminal fail at once or after the kernel buffer is full.
            for _ in range(10_000):
                await preamp.set_gain(1e9)
        await preamp.close()

    run(go)


def test_the_sim_port() -> None:
    preamp = Sr570(Sr570Options(port="sim"))

    async def go() -> None:
        await preamp.connect()
        assert await preamp.get_gain() == 1e9
        assert preamp.device is not None
        await preamp.close()

    run(go)
