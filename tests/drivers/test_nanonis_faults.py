"""Injected faults: each gives the documented typed error within its timeout, and the driver
recovers on the next command. Also the server's own error paths, seen from a plain socket."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from nanonis_helpers import driver, raw_exchange, run, virtual_nanonis

from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    NotConnectedError,
)
from probepilot.model import ScanArea, ScanSettings
from probepilot_nanonis import codec
from probepilot_nanonis.connection import Connection
from probepilot_nanonis.faults import Fault, parse_faults
from probepilot_nanonis.server import ServerThread

TIMEOUT = 0.5


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with virtual_nanonis() as server:
        yield server


@pytest.fixture(autouse=True)
def no_faults_left(server: ServerThread) -> Iterator[None]:
    server.faults.clear()
    yield
    server.faults.clear()


def connections(d: object) -> int:
    return d._main.connects  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    ("fault", "error", "reconnects"),
    [
        (Fault("drop", "Bias.Get"), DriverConnectionError, True),
        (Fault("stall", "Bias.Get"), DriverTimeoutError, True),
        (Fault("delay", "Bias.Get", "2"), DriverTimeoutError, True),
        (Fault("error", "Bias.Get", "Bias: controller busy (code 7)"), InstrumentError, False),
        (Fault("drop", "*"), DriverConnectionError, True),
    ],
    ids=["drop", "stall", "delay-past-timeout", "error", "drop-any"],
)
def test_each_fault_gives_its_typed_error_in_time_and_the_driver_recovers(
    server: ServerThread, fault: Fault, error: type[Exception], reconnects: bool
) -> None:
    d = driver(server, timeout=TIMEOUT)

    async def body() -> None:
        await d.connect()
        await d.set_bias(0.75)
        before = connections(d)
        server.faults.add(fault)
        t0 = time.perf_counter()
        with pytest.raises(error) as caught:
            await d.get_bias()
        assert time.perf_counter() - t0 < TIMEOUT + 0.5
        if isinstance(caught.value, InstrumentError):
            assert caught.value.detail == fault.value  # the controller's message, intact
        assert await d.get_bias() == pytest.approx(0.75)  # the next command works
        assert connections(d) == before + int(reconnects)
        await d.close()

    run(body)


def test_a_short_delay_is_only_a_slow_reply(server: ServerThread) -> None:
    d = driver(server, timeout=TIMEOUT)

    async def body() -> None:
        await d.connect()
        await d.set_bias(1.0)
        server.faults.add("delay:Bias.Get:0.1")
        t0 = time.perf_counter()
        assert await d.get_bias() == pytest.approx(1.0)
        assert time.perf_counter() - t0 >= 0.1
        await d.close()

    run(body)


def test_a_fault_during_a_scan_stops_the_controller_and_the_next_scan_works(
    server: ServerThread,
) -> None:
    d = driver(server, timeout=TIMEOUT)
    settings = ScanSettings(ScanArea((0, 0), (5e-9, 5e-9), 16, 8), 0.01)

    async def body() -> None:
        await d.connect()
        server.faults.add("stall:Scan.FrameDataGrab")
        with pytest.raises(DriverTimeoutError):
            await d.scan(settings)
        assert d.last_frame is not None and not d.last_frame.complete
        assert not (await d.call("Scan.StatusGet"))["running"]
        server.faults.add("drop:Scan.StatusGet")
        with pytest.raises(DriverConnectionError):
            await d.scan(settings)
        assert (await d.scan(settings)).complete
        await d.close()

    run(body)


def test_connection_refused_is_a_connection_error_after_backing_off() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = Connection("127.0.0.1", port, attempts=3, backoff=0.05)

    async def body() -> None:
        t0 = time.perf_counter()
        with pytest.raises(DriverConnectionError, match="after 3 attempt"):
            await conn.open()
        assert 0.15 <= time.perf_counter() - t0 < 2.0  # waited 0.05 + 0.1 between attempts
        await conn.close()
        with pytest.raises(NotConnectedError):
            await conn.call("Bias.Get")

    run(body)


def test_a_server_gone_for_good_gives_a_connection_error_not_a_hang() -> None:
    with virtual_nanonis() as server:
        d = driver(server, timeout=TIMEOUT, reconnect_attempts=2)
        ports = server.ports

        async def connect() -> None:
            await d.connect()

        run(connect)
    assert ports

    async def body() -> None:
        with pytest.raises(DriverConnectionError):
            await d.get_bias()
        with pytest.raises(DriverConnectionError):
            await d.get_bias()  # reconnecting fails too, with its own typed error
        await d.close()

    run(body)


def test_cancelling_mid_reply_leaves_the_connection_usable(server: ServerThread) -> None:
    d = driver(server, timeout=5.0)

    async def body() -> None:
        await d.connect()
        server.faults.add("delay:Bias.Get:0.3")
        task = asyncio.create_task(d.get_bias())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # the late reply must not be taken for the next one
        assert await d.get_setpoint() == pytest.approx(100e-12)
        await d.close()

    run(body)


def test_closing_the_driver_fails_a_command_in_flight_at_once(server: ServerThread) -> None:
    d = driver(server, timeout=5.0)

    async def body() -> None:
        await d.connect()
        server.faults.add("delay:Bias.Get:1")
        task = asyncio.create_task(d.get_bias())
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        await d.close()
        with pytest.raises(DriverConnectionError, match="closed"):
            await task
        assert time.perf_counter() - t0 < 0.5
        with pytest.raises(NotConnectedError):
            await d.get_bias()

    run(body)


# ---------------------------------------------------------------------- the server's error paths


def test_unknown_command_gets_an_error_only_reply(server: ServerThread) -> None:
    reply = raw_exchange(server.ports[0], b"Foo.Bar", b"\x00\x01")
    assert reply[:7] == b"Foo.Bar" and reply[7:32] == bytes(25)
    status, n = struct.unpack_from(">Ii", reply, 40)
    assert status == 1 and len(reply) == 48 + n and b"Foo.Bar" in reply[48:]


def test_out_of_range_values_give_errors_with_the_zero_filled_layout(server: ServerThread) -> None:
    port = server.ports[0]
    reply = raw_exchange(port, b"Bias.Set", struct.pack(">f", 25.0))
    decoded = codec.decode_reply("Bias.Set", reply[40:])
    assert decoded.status == 1 and "bias" in decoded.message.lower()
    bad = struct.pack(">ii", 1, 999) + struct.pack(">I", 1)
    reply = raw_exchange(port, b"Signals.ValsGet", bad)
    assert reply[40:48] == struct.pack(">iI", 0, 1)  # count 0, no values, then status 1
    decoded = codec.decode_reply("Signals.ValsGet", reply[40:])
    assert decoded.status == 1 and "999" in decoded.message
    reply = raw_exchange(port, b"Scan.FrameDataGrab", struct.pack(">II", 42, 1))
    assert reply[40:56] == bytes(16)
    assert codec.decode_reply("Scan.FrameDataGrab", reply[40:]).status == 1


def test_a_short_request_body_is_an_error_not_a_crash(server: ServerThread) -> None:
    reply = raw_exchange(server.ports[0], b"FolMe.XYPosSet", b"\x00\x01")
    decoded = codec.decode_reply("FolMe.XYPosSet", reply[40:])
    assert decoded.status == 1 and "needs" in decoded.message


def test_no_reply_when_none_is_wanted_but_the_command_runs(server: ServerThread) -> None:
    port = server.ports[0]
    assert raw_exchange(port, b"Bias.Set", struct.pack(">f", -0.5), respond=False) == b""
    reply = raw_exchange(port, b"Bias.Get")
    assert struct.unpack_from(">f", reply, 40)[0] == -0.5
    raw_exchange(port, b"Bias.Set", struct.pack(">f", 1.0))


def test_fault_specs_parse_and_bad_ones_are_explained() -> None:
    assert parse_faults("drop:Bias.Get,delay:*:0.5") == [
        Fault("drop", "Bias.Get"),
        Fault("delay", "*", "0.5"),
    ]
    assert parse_faults(["error:Scan.Action:no tip", "stall:Bias.Set"])[0].message == "no tip"
    for bad, match in (
        ("boom:Bias.Get", "unknown fault kind"),
        ("drop", "names no command"),
        ("delay:Bias.Get:soon", "not seconds"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_faults(bad)
