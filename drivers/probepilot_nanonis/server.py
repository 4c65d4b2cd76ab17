"""The virtual Nanonis: any probepilot ``Driver`` served over the Nanonis TCP protocol.

Listens on several ports (by default 127.0.0.1:6501-6504), each accepting several simultaneous
connections; all of them share one :class:`~.controller.VirtualController` and so one
instrument. Each connection runs its commands in order. Wire rules kept here
(``nanonis-protocol.md``):

* every reply goes out in one ``write`` of header + body (clients read the 40-byte header in one
  ``recv`` and break on a split header);
* the reply echoes the request's exact 32-byte name field;
* a known command that fails replies with its zero-filled return values then the error section;
  an unknown command gets an error-only body; ``send_response = 0`` gets no reply at all.

Faults (:mod:`probepilot_nanonis.faults`) are applied per request, after the command ran.

Use :class:`NanonisServer` inside an event loop, or :class:`ServerThread` to run one in a
background thread (tests, benchmarks, notebooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from probepilot.contracts import Driver
from probepilot.errors import InstrumentError, ProbepilotError
from probepilot_nanonis import codec
from probepilot_nanonis.controller import VirtualController
from probepilot_nanonis.faults import Fault, FaultPlan
from probepilot_nanonis.server_wire import ClientWire
from probepilot_nanonis.wire import HEADER_SIZE, Kind, RequestHeader, nice_f32

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PORTS = (6501, 6502, 6503, 6504)
#: Larger request bodies are not Nanonis requests: the connection is closed.
MAX_REQUEST_BODY = 1 << 24
#: float32 scalar arguments of each command.
_F32_ARGS = {
    name: tuple(f.name for f in cmd.request.fields if f.kind is Kind.F32)
    for name, cmd in codec.COMMANDS.items()
}


class NanonisServer:
    """The virtual Nanonis on top of ``driver``.

    :param ports: ports to listen on; 0 picks a free one (see :attr:`ports` after start).
    :param save_dir: where completed scans are saved as ``.sxm`` (default: a new temporary
        folder).
    """

    def __init__(
        self,
        driver: Driver,
        *,
        host: str = "127.0.0.1",
        ports: Sequence[int] = DEFAULT_PORTS,
        faults: FaultPlan | Sequence[Fault] | None = None,
        save_dir: str | Path | None = None,
    ) -> None:
        self.driver = driver
        self.host = host
        self.requested_ports = tuple(ports)
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan(list(faults or []))
        self.save_dir = Path(save_dir or tempfile.mkdtemp(prefix="virtual-nanonis-"))
        self.ports: list[int] = []
        self.controller: VirtualController | None = None
        self._servers: list[asyncio.Server] = []
        self._clients: set[asyncio.Task[Any]] = set()
        #: Requests handled, by command name (diagnostics).
        self.counts: dict[str, int] = {}

    async def start(self) -> list[int]:
        """Connect the driver and listen; returns the bound ports."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        await self.driver.connect()
        self.controller = VirtualController(self.driver, self.save_dir)
        try:
            loop = asyncio.get_running_loop()
            for port in self.requested_ports:
                server = await loop.create_server(lambda: ClientWire(self._client), self.host, port)
                self._servers.append(server)
                self.ports.append(server.sockets[0].getsockname()[1])
        except OSError:
            await self.close()
            raise
        return self.ports

    async def close(self) -> None:
        """Stop listening, drop every connection, stop background work, close the driver."""
        for server in self._servers:
            server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients))
        if self.controller is not None:
            await self.controller.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await self.driver.close()

    # ------------------------------------------------------------------ connections

    async def _client(self, wire: ClientWire) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve(wire)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the server is closing
        finally:
            self._clients.discard(task)
            wire.close()

    async def _serve(self, wire: ClientWire) -> None:
        while True:
            try:
                header = codec.decode_request_header(await wire.read_exactly(HEADER_SIZE))
            except asyncio.IncompleteReadError:
                return
            if header.body_size > MAX_REQUEST_BODY:
                log.warning(
                    "virtual Nanonis: %s with a %d-byte body", header.name, header.body_size
                )
                return
            body = await wire.read_exactly(header.body_size) if header.body_size else b""
            self.counts[header.name] = self.counts.get(header.name, 0) + 1
            fault = self.faults.take(header.name)
            if fault is not None and fault.kind == "error":
                reply = self._error_reply(header, fault.message)
            else:
                reply = await self.respond(header, body)
            if not header.send_response:
                continue
            if fault is None or fault.kind == "error":
                wire.write(reply)
                await wire.drain()
            elif not await self._faulty(fault, reply, wire):
                return

    async def _faulty(self, fault: Fault, reply: bytes, wire: ClientWire) -> bool:
        """Send ``reply`` as ``fault`` says; False when the connection is finished."""
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            wire.write(reply)
            await wire.drain()
            return True
        half = HEADER_SIZE + (len(reply) - HEADER_SIZE) // 2
        wire.write(reply[:half])
        await wire.drain()
        if fault.kind == "stall":
            await wire.read_until_eof()  # hold the connection open until the client leaves
        return False

    def _error_reply(self, header: RequestHeader, message: str) -> bytes:
        if header.name in codec.COMMANDS:
            return codec.encode_reply(header.raw_name, header.name, error=message)
        return codec.encode_unknown_reply(header.raw_name, message)

    async def respond(self, header: RequestHeader, body: bytes) -> bytes:
        """The reply (header + body) to one request."""
        assert self.controller is not None
        handler = self.controller.handlers.get(header.name)
        if handler is None:
            return codec.encode_unknown_reply(
                header.raw_name, f"Unknown command: {header.name!r} is not a Nanonis command"
            )
        try:
            args = codec.decode_request(header.name, body)
            for key in _F32_ARGS.get(header.name, ()):
                # As typed by the client: 0.01 s, not 0.009999999776 s (which at a speed limit
                # would refuse a scan the user asked for within it).
                args[key] = nice_f32(args[key])
            values = await handler(args)
        except InstrumentError as exc:
            return self._error_reply(header, exc.detail)
        except ProbepilotError as exc:
            return self._error_reply(header, exc.message)
        except (ValueError, OverflowError) as exc:  # e.g. a value the wire type cannot hold
            return self._error_reply(header, f"invalid argument: {exc}")
        try:
            return codec.encode_reply(header.raw_name, header.name, values)
        except (ValueError, KeyError) as exc:  # a handler bug must not kill the connection
            log.exception("virtual Nanonis: cannot encode the reply to %s", header.name)
            return self._error_reply(header, f"internal error: {exc}")


class ServerThread:
    """A :class:`NanonisServer` running in its own thread and event loop.

    ``make_driver`` builds the driver inside that thread (drivers bind to the loop that
    connects them). Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, make_driver: Callable[[], Driver], **server_options: Any) -> None:
        self._make_driver = make_driver
        self._options = server_options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: NanonisServer | None = None

    @property
    def ports(self) -> list[int]:
        assert self.server is not None, "start() the server first"
        return self.server.ports

    @property
    def faults(self) -> FaultPlan:
        assert self.server is not None, "start() the server first"
        return self.server.faults

    def start(self, timeout: float = 30.0) -> list[int]:
        self._thread.start()

        async def start() -> list[int]:
            self.server = NanonisServer(self._make_driver(), **self._options)
            return await self.server.start()

        ports: list[int] = self.call(start(), timeout)
        return ports

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and return its result (tests inspect the
        served driver this way)."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            if self.server is not None:
                with contextlib.suppress(TimeoutError, RuntimeError):
                    self.call(self.server.close(), timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
