"""Helpers for the Nanonis tests: a virtual Nanonis on free 127.0.0.1 ports in a background
thread, and drivers pointed at it.

The served simulator is obtained by name from the plugin registry, as ``probepilot sim-server``
does, so the tests exercise the same path users do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from probepilot.contracts import Driver
from probepilot.plugins import make_plugin_manager
from probepilot_nanonis.driver import NanonisDriver
from probepilot_nanonis.options import NanonisOptions
from probepilot_nanonis.server import ServerThread
from probepilot_nanonis.wire import HEADER_SIZE, decode_reply_header, encode_request_header

T = TypeVar("T")

#: Quick, quiet, reproducible simulator settings for most tests.
SIM: dict[str, Any] = {"seed": 5, "tip": "good", "time_scale": 0.0}


def sim_factory(**overrides: Any) -> Callable[[], Driver]:
    """A factory of the registered ``sim`` driver with :data:`SIM` options (+ overrides)."""
    entry = make_plugin_manager().registry("driver").get("sim")
    assert entry.options is not None
    options = entry.options(**{**SIM, **overrides})
    return lambda: entry.factory(options)


@contextmanager
def virtual_nanonis(
    save_dir: Path | None = None, ports: int = 2, **sim: Any
) -> Iterator[ServerThread]:
    """A running virtual Nanonis on ``ports`` free ports of 127.0.0.1; its scans go to
    ``save_dir`` or to a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="virtual-nanonis-test-") as scratch:
        server = ServerThread(
            sim_factory(**sim), ports=[0] * ports, save_dir=save_dir or Path(scratch)
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


def options(server: ServerThread, **overrides: Any) -> NanonisOptions:
    """Driver options for ``server``: short timeouts, fast reconnects, quick polling."""
    base = NanonisOptions(
        ports=tuple(server.ports),
        timeout=3.0,
        connect_timeout=2.0,
        reconnect_backoff=0.02,
        poll_interval=0.005,
    )
    return dataclasses.replace(base, **overrides)


def driver(server: ServerThread, **overrides: Any) -> NanonisDriver:
    return NanonisDriver(options(server, **overrides))


def run(body: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run ``body()`` in a fresh event loop within ``timeout`` seconds."""

    async def main() -> T:
        return await asyncio.wait_for(body(), timeout)

    return asyncio.run(main())


def raw_exchange(port: int, name: bytes, body: bytes = b"", *, respond: bool = True) -> bytes:
    """Send one request over a plain socket and return the whole reply (or b"" when no reply
    is wanted and none comes within 0.3 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        header = encode_request_header(name, len(body), send_response=respond)
        sock.sendall(header + body)
        if not respond:
            sock.settimeout(0.3)
            try:
                return sock.recv(1)
            except TimeoutError:
                return b""
        data = recv_exactly(sock, HEADER_SIZE)
        _, size = decode_reply_header(data)
        return data + recv_exactly(sock, size)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def in_thread(work: Callable[[], T], deadline: float) -> T:
    """Run blocking ``work`` (a client without timeouts) in a daemon thread; fail if it takes
    longer than ``deadline`` seconds instead of hanging the test run."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test's thread)
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise TimeoutError(f"the client did not finish within {deadline} s")
    if error:
        raise error[0]
    return result[0]
