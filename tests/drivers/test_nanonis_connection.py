"""The driver's connection: strict serialisation under concurrency, its exclusive-use primitive,
and the portable (non-selector) socket path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from nanonis_helpers import run, virtual_nanonis

from probepilot_nanonis.connection import Connection, Serial
from probepilot_nanonis.server import ServerThread


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with virtual_nanonis() as server:
        yield server


def test_concurrent_commands_on_one_connection_each_get_their_own_reply(
    server: ServerThread,
) -> None:
    conn = Connection("127.0.0.1", server.ports[0])

    async def set_and_get(i: int) -> tuple[float, str]:
        await conn.call("Bias.Set", {"bias": i / 100})
        reply = await conn.call("Scan.FrameDataGrab", {"channel": 7, "direction": 1})
        return (await conn.call("Bias.Get"))["bias"], reply["name"]

    async def body() -> None:
        await conn.open()
        results = await asyncio.gather(*(set_and_get(i) for i in range(40)))
        assert all(name == "Z (m)" for _, name in results)
        # Another task may set the bias between a task's Set and Get, but every reply is a
        # well-formed answer to its own request, and the last Set wins.
        assert {round(b * 100) for b, _ in results} <= set(range(40))
        assert (await conn.call("Bias.Get"))["bias"] == pytest.approx(0.39)
        await conn.call("Bias.Set", {"bias": 1.0})
        await conn.close()

    run(body)


def test_serial_is_first_come_first_served_and_survives_cancellation() -> None:
    async def body() -> None:
        serial = Serial()
        order: list[int] = []

        async def user(i: int, hold_for: float) -> None:
            await serial.hold()
            try:
                order.append(i)
                await asyncio.sleep(hold_for)
            finally:
                serial.release()

        assert serial.try_hold()
        tasks = [asyncio.create_task(user(i, 0.01)) for i in range(4)]
        await asyncio.sleep(0)
        tasks[1].cancel()  # cancelled while waiting: leaves the queue
        assert not serial.try_hold()  # held, and others wait: no barging in
        serial.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == [0, 2, 3]
        assert serial.try_hold()  # free again
        serial.release()

        # Cancelled just as the connection was handed over: it passes it on.
        assert serial.try_hold()
        waiting = asyncio.create_task(user(9, 0.0))
        after = asyncio.create_task(user(10, 0.0))
        await asyncio.sleep(0)
        serial.release()
        waiting.cancel()
        await asyncio.gather(waiting, after, return_exceptions=True)
        assert order[-1] == 10 and not serial.busy

    run(body)


def test_the_portable_socket_path_works_too(server: ServerThread) -> None:
    """What runs on loops without add_reader (Windows' proactor, uvloop): non-blocking socket,
    loop.sock_* calls, no fast path."""
    conn = Connection("127.0.0.1", server.ports[1])

    async def body() -> None:
        await conn.open()
        io = conn._io
        assert io is not None
        io.selector = False
        io.sock.settimeout(0.0)
        await conn.call("Bias.Set", {"bias": 0.125})
        assert (await conn.call("Bias.Get"))["bias"] == 0.125
        await conn.call("Scan.BufferSet", {"channels": [7], "pixels": 1024, "lines": 4})
        await conn.call("Scan.Action", {"action": 0, "direction": 0})
        await conn.call("Scan.WaitEndOfScan", {"timeout_ms": 10_000}, extra=10)
        grab = await conn.call("Scan.FrameDataGrab", {"channel": 7, "direction": 0})
        assert grab["data"].shape == (4, 1024) and np.isfinite(grab["data"]).all()
        await conn.call("Bias.Set", {"bias": 1.0})
        await conn.close()

    run(body)
