"""The ANC300 positioner driver over a real pseudo-terminal with a simulated controller on the
other end: commands, controller errors, garbage, timeouts and a line that goes dead."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

pytest.importorskip("serial")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("the simulated devices use POSIX pseudo-terminals", allow_module_level=True)

from probepilot.actions import perform
from probepilot.contracts import Positioner
from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    LimitError,
    NotConnectedError,
    ProtocolError,
)
from probepilot.instruments import Instruments
from probepilot.model import CoarseStep
from probepilot_serial.anc300 import Anc300
from probepilot_serial.options import Anc300Options
from probepilot_serial.simulated import Anc300Simulator, PtyDevice

T = TypeVar("T")


def run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(work(), 20))


@pytest.fixture
def device() -> Iterator[PtyDevice]:
    with PtyDevice(Anc300Simulator(time_scale=0.01)) as dev:
        yield dev


def anc(device: PtyDevice, **options: object) -> Anc300:
    table = {"port": device.port, "timeout": 0.3, "voltage": 30.0, "frequency": 1000.0}
    return Anc300(Anc300Options(**{**table, **options}))  # type: ignore[arg-type]


def test_connect_sets_the_axes_up_for_stepping(device: PtyDevice) -> None:
    positioner = anc(device)
    assert isinstance(positioner, Positioner)
    assert positioner.axes() == ("x+", "x-", "y+", "y-", "z+", "z-")

    async def go() -> None:
        await positioner.connect()
        assert (await positioner.identify()).startswith("attocube ANC300")
        for axis in "xyz":
            assert await positioner.get_mode(axis) == "stp"
            assert await positioner.get_voltage(axis) == 30.0
            assert await positioner.get_frequency(axis) == 1000.0
        await positioner.close()

    run(go)
    log = device.simulator.log
    assert log[:2] == ["echo off", "ver"]
    assert {"setm 1 stp", "setv 2 30.000", "setf 3 1000"} <= set(log)
    # Closing grounds the axes.
    assert all(axis.mode == "gnd" for axis in device.simulator.axes.values())


def test_steps_go_to_the_configured_axis_and_direction(device: PtyDevice) -> None:
    positioner = anc(device, axis_x=2, axis_y=1, invert=["z"])

    async def go() -> None:
        await positioner.connect()
        await positioner.step("x+", 40)
        await positioner.step("y-", 7)
        await positioner.step("z+", 5)  # inverted: z+ (retract) is the controller's step down
        await positioner.stop()
        await positioner.close()

    run(go)
    axes = device.simulator.axes
    assert (axes[1].position, axes[2].position, axes[3].position) == (-7, 40, -5)
    assert "stepu 2 40" in device.simulator.log and "stepw 2" in device.simulator.log


def test_a_move_waits_for_the_steps(device: PtyDevice) -> None:
    device.simulator.time_scale = 1.0  # 100 steps at 1 kHz: 0.1 s
    positioner = anc(device)

    async def go() -> float:
        await positioner.connect()
        started = time.monotonic()
        await positioner.step("x-", 100)
        elapsed = time.monotonic() - started
        await positioner.close()
        return elapsed

    assert run(go) >= 0.09


def test_coarse_steps_of_a_run_go_to_the_positioner(device: PtyDevice) -> None:
    positioner = anc(device)

    class NoCoarseDriver:
        async def coarse_move(self, axis: str, steps: int) -> None:
            raise AssertionError("the controller must not step when a positioner is there")

    async def go() -> None:
        instruments = Instruments({"anc300": positioner})
        await instruments.connect()
        assert instruments.positioner is positioner and instruments.lockin is None
        await perform(NoCoarseDriver(), CoarseStep("y+", 12), instruments)  # type: ignore[arg-type]
        await instruments.close()

    run(go)
    assert device.simulator.axes[2].position == 12


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.step("w+", 1), "no axis 'w'; configured: x, y, z"),
        (lambda p: p.step("x", 1), "axis 'x' is not one of"),
        (lambda p: p.step("x+", 0), "steps must be a positive integer"),
        (lambda p: p.step("x+", 20000), "exceed max_steps 10000"),
        (lambda p: p.set_voltage("x", 151.0), "step voltage 151.0 V is outside 0 to 150 V"),
        (lambda p: p.set_frequency("y", 0.5), "step frequency 0.5 Hz is outside 1 to 10000 Hz"),
    ],
)
def test_values_outside_the_controllers_ranges_are_refused_before_sending(
    device: PtyDevice, call: Callable[[Anc300], Awaitable[object]], message: str
) -> None:
    positioner = anc(device)

    async def go() -> None:
        await positioner.connect()
        sent = len(device.simulator.log)
        with pytest.raises(LimitError, match=message):
            await call(positioner)
        assert len(device.simulator.log) == sent
        await positioner.close()

    run(go)


def test_controller_errors_carry_its_message(device: PtyDevice) -> None:
    positioner = anc(device)

    async def go() -> None:
        await positioner.connect()
        with pytest.raises(InstrumentError, match="Unknown command: frob") as info:
            await positioner.command("frob 1")
        assert info.value.detail == "Unknown command: frob"
        with pytest.raises(InstrumentError, match="Wrong axis type"):
            await positioner.command("getm 6")
        await positioner.command("setm 1 gnd")
        with pytest.raises(InstrumentError, match="Axis in wrong mode"):
            await positioner.step("x+", 3)
        await positioner.close()

    run(go)
    # A configured axis without a module fails the connection, naming the controller's reply.
    missing = anc(device, axis_z=5)
    with pytest.raises(InstrumentError, match="getm 5: the instrument reported: Wrong axis type"):
        run(missing.connect)


def test_garbled_replies_are_protocol_errors_and_the_link_recovers(device: PtyDevice) -> None:
    positioner = anc(device)

    async def go() -> None:
        await positioner.connect()
        device.garble()
        with pytest.raises(ProtocolError, match="garbled reply to 'getv 1'"):
            await positioner.get_voltage("x")
        assert await positioner.get_voltage("x") == 30.0
        await positioner.close()

    run(go)


def test_a_silent_controller_is_a_timeout_and_the_link_recovers(device: PtyDevice) -> None:
    positioner = anc(device, timeout=0.15)

    async def go() -> None:
        await positioner.connect()
        device.mute()
        started = time.monotonic()
        with pytest.raises(DriverTimeoutError, match=r"no complete reply to 'getf 2' within 0\.15"):
            await positioner.get_frequency("y")
        assert time.monotonic() - started < 1.0
        assert await positioner.get_frequency("y") == 1000.0
        await positioner.close()

    run(go)


def test_a_line_that_goes_dead_is_a_disconnect(device: PtyDevice) -> None:
    positioner = anc(device)

    async def go() -> None:
        await positioner.connect()
        device.hangup()
        with pytest.raises(DriverConnectionError, match="was lost"):
            await positioner.step("x+", 1)
        with pytest.raises(NotConnectedError):
            await positioner.get_voltage("x")
        with pytest.raises(DriverConnectionError, match="cannot open"):
            await positioner.connect()  # the port is gone
        await positioner.close()

    run(go)


def test_cancelling_a_move_stops_the_axis(device: PtyDevice) -> None:
    device.simulator.time_scale = 1.0  # 5000 steps at 1 kHz: 5 s
    positioner = anc(device)

    async def go() -> None:
        await positioner.connect()
        task = asyncio.ensure_future(positioner.step("z-", 5000))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await positioner.close()

    started = time.monotonic()
    run(go)
    assert "stop 3" in device.simulator.log
    assert "stepw 3" not in device.simulator.log
    assert time.monotonic() - started < 3


def test_unopenable_port() -> None:
    positioner = Anc300(Anc300Options(port=os.devnull + "-no-such-port", timeout=0.1))
    with pytest.raises(DriverConnectionError, match="cannot open"):
        run(positioner.connect)
    with pytest.raises(NotConnectedError):
        run(lambda: positioner.step("x+", 1))


def test_the_sim_port_serves_a_simulated_controller() -> None:
    positioner = Anc300(Anc300Options(port="sim", voltage=20.0))

    async def go() -> None:
        await positioner.connect()
        await positioner.step("x+", 3)
        assert await positioner.get_voltage("x") == 20.0
        await positioner.close()

    run(go)
