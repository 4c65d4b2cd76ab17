"""``probepilot serve``: one driver hosted for clients on other machines.

The host runs on the instrument PC and stays light: it only relays calls to the driver. It binds

- a ROUTER socket at its address (requests: ``hello``, ``call``, ``cancel``, ``ping``, ``bye``;
  replies ``welcome``, ``progress`` (one per scanned line), ``result``, ``error``,
  ``cancelled``, ``pong``), and
- a PUB socket at port + 1 publishing its ``status`` every heartbeat (driver, clients, what is
  running since when, calls served): for monitoring, and as a heartbeat anyone can watch.

Every call runs as its own task, so a client can ping, cancel or read while a scan goes on (the
driver itself serialises what must be serialised). Heartbeats go both ways: a client pings
every heartbeat and the host answers; a client silent for ``client_timeout`` is gone. If it
was mid-command, its scan is aborted (a cancelled scan leaves the instrument consistent, as the
driver contract guarantees), any other command runs to its end, and with ``withdraw_on_loss``
the tip is then withdrawn, so a crashed or unplugged client never leaves the instrument in a
half state.

A malformed message is answered with a ``ProtocolError`` (where the sender can be told) and
logged; the host keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import zmq

from probepilot import __version__
from probepilot.bus import codec, wire
from probepilot.bus.calls import CALLS
from probepilot.bus.keys import Authenticator, ServerKeys, apply_server
from probepilot.bus.sockets import LoopSocket, bind, bind_address, companion, configure
from probepilot.contracts import Driver
from probepilot.errors import ProbepilotError, ProtocolError
from probepilot.model import LineProgress

_log = logging.getLogger(__name__)

#: Message types a host accepts from clients.
CLIENT_TYPES = frozenset({"hello", "call", "cancel", "ping", "bye"})
DEFAULT_ADDRESS = "tcp://127.0.0.1:5570"


@dataclass
class _Running:
    method: str
    task: asyncio.Task[None] | None  # None while it runs eagerly (see start_eagerly)
    started: float
    abortable: bool

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


@dataclass
class _Client:
    identity: bytes
    name: str
    last_seen: float
    calls: dict[int, _Running] = field(default_factory=dict)


class DriverHost:
    """Serves ``driver`` at ``address`` until :meth:`stop`; see the module docstring.

    :param keys: CurveZMQ server keys; only allow-listed clients get in (None: no encryption,
        anyone who can reach the port may use the driver; keep it on 127.0.0.1 then).
    :param heartbeat: seconds between status messages (and the ping interval clients are told).
    :param client_timeout: a client silent this long is gone.
    :param withdraw_on_loss: withdraw the tip after a client is lost mid-command.
    :param log: where one-line notes go (client lost, command aborted ...).
    """

    def __init__(
        self,
        driver: Driver,
        address: str = DEFAULT_ADDRESS,
        *,
        keys: ServerKeys | None = None,
        heartbeat: float = 1.0,
        client_timeout: float = 5.0,
        withdraw_on_loss: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.driver = driver
        self.requested = address
        self.keys = keys
        self.heartbeat = heartbeat
        self.client_timeout = client_timeout
        self.withdraw_on_loss = withdraw_on_loss
        self.note = log or _log.info
        self.instance = secrets.token_hex(8)
        self.address = ""
        self.status_address = ""
        self.clients: dict[bytes, _Client] = {}
        self.served = 0
        self.errors = 0
        self.malformed = 0
        self._seq = 0
        self._context: zmq.Context[Any] | None = None
        self._auth: Authenticator | None = None
        self._router: LoopSocket | None = None
        self._status: zmq.Socket[Any] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Task[Any]] = set()
        self._stopped: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the driver, then bind (so a host that cannot reach its instrument says so
        before anyone connects)."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self.driver.connect()
        context: zmq.Context[Any] = zmq.Context()
        self._context = context
        try:
            if self.keys is not None:
                self._auth = Authenticator(context, self.keys)
            router = context.socket(zmq.ROUTER)
            configure(router, sndhwm=10_000, rcvhwm=1_000)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            status = context.socket(zmq.PUB)
            configure(status, sndhwm=100, rcvhwm=100)
            if self.keys is not None:
                apply_server(router, self.keys)
                apply_server(status, self.keys)
            self._status = status
            self._router = LoopSocket(router, loop, self._on_message)
            self.address = bind(router, bind_address(self.requested))
            self.status_address = bind(status, companion(self.requested))
        except BaseException:
            self._close_sockets()
            raise
        self._ticker = loop.create_task(self._tick())

    async def serve_forever(self) -> None:
        """Wait until :meth:`stop` is called."""
        assert self._stopped is not None, "start() first"
        await self._stopped.wait()

    async def stop(self) -> None:
        """Abort what is abortable, let the rest finish (up to 10 s), close everything."""
        if self._ticker is not None:
            self._ticker.cancel()
        running = [r for c in self.clients.values() for r in c.calls.values()]
        for r in running:
            if r.abortable:
                r.cancel()
        tasks = [r.task for r in running if r.task is not None] + list(self._chores)
        if tasks:
            await asyncio.wait(tasks, timeout=10.0)
        self._close_sockets()
        with contextlib.suppress(ProbepilotError, OSError):
            await asyncio.wait_for(self.driver.close(), 10.0)
        if self._stopped is not None:
            self._stopped.set()

    def _close_sockets(self) -> None:
        if self._router is not None:
            self._router.close()
        if self._status is not None:
            self._status.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        if self._context is not None:
            self._context.term()
            self._context = None

    # -- messages ----------------------------------------------------------------------------

    def _send(self, identity: bytes, type: str, cid: int, body: dict[str, Any]) -> bool:
        assert self._router is not None
        self._seq += 1
        try:
            frames = wire.encode(type, body, seq=self._seq, cid=cid)
        except ProtocolError as exc:
            # Our own bug (a driver returning something that cannot travel): tell the client.
            _log.error("cannot encode a %r reply: %s", type, exc)
            frames = wire.encode("error", codec.error_to_wire(exc), seq=self._seq, cid=cid)
        return self._router.send([identity, *frames])

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        if len(frames) < 2:
            self.malformed += 1
            return  # no identity and header: nobody to answer
        identity = frames[0].bytes
        try:
            message = wire.decode(frames[1:], expect=CLIENT_TYPES)
        except ProtocolError as exc:
            self.malformed += 1
            self.note(f"malformed message from a client: {exc}")
            self._send(identity, "error", 0, codec.error_to_wire(exc))
            return
        now = time.monotonic()
        client = self.clients.get(identity)
        if client is None:
            client = self.clients[identity] = _Client(identity, "", now)
        client.last_seen = now
        try:
            self._dispatch(client, message)
        except ProtocolError as exc:
            self.malformed += 1
            self.note(f"malformed {message.type!r} from client {client.name or '?'}: {exc}")
            self._send(identity, "error", message.cid, codec.error_to_wire(exc))

    def _dispatch(self, client: _Client, message: wire.Message) -> None:
        kind = message.type
        if kind == "ping":
            self._send(client.identity, "pong", message.cid, self._status_body())
        elif kind == "call":
            self._start_call(client, message)
        elif kind == "cancel":
            target = wire.field_of(message, "target", int)
            running = client.calls.get(target)
            if running is not None and running.abortable:
                running.cancel()
        elif kind == "hello":
            name = message.body.get("client")
            client.name = name[:64] if isinstance(name, str) else "?"
            self._chore(self._hello(client, message.cid))
        elif kind == "bye":
            self._lost(client.identity, "closed its connection")

    async def _hello(self, client: _Client, cid: int) -> None:
        """Make sure the driver is connected (the client is (re)connecting, maybe after the
        driver lost its instrument), then say who we are."""
        try:
            await self.driver.connect()
        except ProbepilotError as exc:
            self._send(client.identity, "error", cid, codec.error_to_wire(exc))
            return
        self._send(
            client.identity,
            "welcome",
            cid,
            {
                "instance": self.instance,
                "driver": self.driver.name,
                "capabilities": sorted(c.value for c in self.driver.capabilities()),
                "heartbeat": self.heartbeat,
                "client_timeout": self.client_timeout,
                "probepilot": __version__,
            },
        )

    def _start_call(self, client: _Client, message: wire.Message) -> None:
        method = wire.field_of(message, "m", str)
        spec = CALLS.get(method)
        if spec is None:
            raise ProtocolError(f"unknown driver operation {method!r}")
        raw = wire.field_of(message, "a", list)
        if len(raw) != len(spec.args):
            raise ProtocolError(f"{method} takes {len(spec.args)} arguments, not {len(raw)}")
        args = [
            codec.from_wire(value, tp, f"{method} argument {i + 1}")
            for i, (value, tp) in enumerate(zip(raw, spec.args, strict=True))
        ]
        if message.cid in client.calls:
            raise ProtocolError(f"correlation id {message.cid} is already in use")
        running = _Running(method, None, time.monotonic(), spec.abortable)
        client.calls[message.cid] = running
        running.task = start_eagerly(self._run_call(client, message.cid, method, args))

    async def _run_call(self, client: _Client, cid: int, method: str, args: list[Any]) -> None:
        identity = client.identity
        try:
            if method == "scan":

                def progress(line: LineProgress) -> None:
                    self._send(identity, "progress", cid, {"line": codec.to_wire(line)})

                result: Any = await self.driver.scan(args[0], progress)
            else:
                result = await getattr(self.driver, method)(*args)
            self.served += 1
            self._send(identity, "result", cid, {"value": codec.to_wire(result)})
        except asyncio.CancelledError:
            self._send(identity, "cancelled", cid, {})
        except ProbepilotError as exc:
            self.errors += 1
            self._send(identity, "error", cid, codec.error_to_wire(exc))
        # A driver bug must reach the client as an error, not kill the host.
        except Exception as exc:  # noqa: BLE001
            self.errors += 1
            _log.exception("driver %r raised in %s", self.driver.name, method)
            self._send(identity, "error", cid, codec.error_to_wire(exc))
        finally:
            client.calls.pop(cid, None)

    def _chore(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # -- liveness ----------------------------------------------------------------------------

    def _lost(self, identity: bytes, why: str) -> None:
        client = self.clients.pop(identity, None)
        if client is None or not client.calls:
            return
        running = list(client.calls.values())
        aborted = [r.method for r in running if r.abortable]
        finishing = [r.method for r in running if not r.abortable]
        for r in running:
            if r.abortable:
                r.cancel()
        self.note(
            f"client {client.name or '?'} {why} during {', '.join(r.method for r in running)}: "
            + (f"aborted {', '.join(aborted)}" if aborted else "")
            + ("; " if aborted and finishing else "")
            + (f"letting {', '.join(finishing)} finish" if finishing else "")
        )
        if self.withdraw_on_loss:
            self._chore(self._withdraw_after([r.task for r in running if r.task is not None]))

    async def _withdraw_after(self, tasks: list[asyncio.Task[None]]) -> None:
        if tasks:
            await asyncio.wait(tasks, timeout=60.0)
        try:
            await self.driver.withdraw()
        except ProbepilotError as exc:
            self.note(f"withdraw after losing a client failed: {exc}")
            return
        self.note("withdrew the tip after losing a client mid-command")

    def _status_body(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "instance": self.instance,
            "driver": self.driver.name,
            "clients": len(self.clients),
            "busy": [
                {"method": r.method, "client": c.name, "seconds": now - r.started}
                for c in self.clients.values()
                for r in c.calls.values()
            ],
            "served": self.served,
            "errors": self.errors,
            "malformed": self.malformed,
            "heartbeat": self.heartbeat,
        }

    async def _tick(self) -> None:
        """Publish the status and forget silent clients, every heartbeat."""
        while True:
            await asyncio.sleep(self.heartbeat)
            if self._status is not None:
                self._seq += 1
                frames = wire.encode("status", self._status_body(), seq=self._seq)
                with contextlib.suppress(zmq.Again):
                    self._status.send_multipart([b"status", *frames], zmq.NOBLOCK, copy=False)
            deadline = time.monotonic() - self.client_timeout
            for identity, client in list(self.clients.items()):
                if client.last_seen < deadline:
                    self._lost(identity, f"fell silent for {self.client_timeout:g} s")


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, up to its first suspension, as Python 3.12's eager tasks do; None if
    it finished there, else the task that carries it on.

    Most reads of most drivers (a cached bias, the simulator's state) never suspend, so they
    are answered without a task's creation and scheduling: a third of a small call's round
    trip. What suspends goes on in a task with the usual semantics (cancelling the task
    cancels the future the coroutine waits on, and the coroutine sees the cancellation).
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_carry_on(coro, yielded))


async def _carry_on(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Drive a coroutine started by :func:`start_eagerly` from where it suspended."""
    while True:
        if yielded is None:  # a bare yield (asyncio.sleep(0)): give the loop a turn
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
                continue
        else:
            # Wait for the future it waits on; it reads the outcome (or the cancellation that
            # cancelling this task puts into that future) itself when resumed.
            # As a task's step does on taking a yielded future (else awaiting it again fails).
            yielded._asyncio_future_blocking = False
            try:
                await yielded
            except asyncio.CancelledError as exc:
                if not yielded.cancelled():  # cancelled after that future was done: pass it on
                    try:
                        yielded = coro.throw(exc)
                    except StopIteration:
                        return
                    continue
            except BaseException:  # noqa: BLE001 (the coroutine raises it itself, from the future)
                pass
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class HostThread:
    """A :class:`DriverHost` on an event loop of its own thread (tests, embedding)."""

    def __init__(self, driver: Driver, address: str = "tcp://127.0.0.1:0", **options: Any):
        self.host = DriverHost(driver, address, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="driver-host", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> str:
        return self.host.address

    def start(self, timeout: float = 30.0) -> HostThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the driver host did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                await self.host.start()
            # Whatever stopped the start is handed to the thread that called start().
            except BaseException as exc:  # noqa: BLE001
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self.host.serve_forever()

        asyncio.run(main())

    def stop(self, timeout: float = 20.0) -> None:
        if self._loop is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.host.stop(), self._loop)
            with contextlib.suppress(TimeoutError, RuntimeError):
                future.result(timeout)
        self._thread.join(timeout)

    def __enter__(self) -> HostThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
