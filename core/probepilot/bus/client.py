"""The client side of a driver host: calls with timeouts, retries and heartbeats.

:class:`HostClient` is what the remote driver (``driver = "remote"``) is built on. It runs on
the event loop that opened it, with one DEALER socket:

- a call is a ``call`` message with a fresh correlation id; its ``progress`` messages go to
  the caller's callback line by line, and its ``result``/``error``/``cancelled`` resolves it;
- short operations must be answered within ``timeout``; long ones (scans, approaches, pulses
  ...) may take as long as they take, provided the host keeps showing signs of life (its
  answers to our pings, sent every ``heartbeat``): silence for ``timeout`` fails them;
- reads (``get_bias``, ``limits`` ...) are sent again, up to ``retries`` times, after a
  timeout; nothing that changes the instrument is ever sent twice;
- the socket queues messages only on a live connection (``ZMQ_IMMEDIATE``), so nothing sent
  while the host is down is delivered, stale, after it comes back; ZeroMQ reconnects by itself
  when it does, and a host that restarted (another ``instance`` in its pongs) fails the calls
  it lost at once instead of letting them time out.
- cancelling a long call (the scan's task) tells the host to abort it and waits (up to
  ``timeout``) until the host confirms, so the instrument has stopped before the cancellation
  propagates, as the driver contract says.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from probepilot.bus import codec, wire
from probepilot.bus.address import check_address
from probepilot.bus.keys import ClientKeys, apply_client
from probepilot.bus.sockets import LoopSocket, configure
from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    NotConnectedError,
    ProbepilotError,
    ProtocolError,
)

_log = logging.getLogger(__name__)

#: Message types a client accepts from a host.
HOST_TYPES = frozenset({"welcome", "result", "error", "progress", "cancelled", "pong"})
ProgressHandler = Callable[[Any], None]


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    progress: ProgressHandler | None
    deadline: float | None  # None: a long call, bounded by the host's liveness instead
    method: str
    caller: asyncio.Task[Any] | None
    failure: BaseException | None = None
    abandoned: bool = False


class HostClient:
    """A connection to one driver host (see the module docstring)."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        heartbeat: float = 1.0,
        keys: ClientKeys | None = None,
        name: str = "probepilot",
    ) -> None:
        self.address = check_address(address, what="drivers.remote.address")
        self.timeout = timeout
        self.retries = retries
        self.heartbeat = heartbeat
        self.keys = keys
        self.name = name
        self.where = f"driver host {self.address}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.welcome: dict[str, Any] = {}
        self.instance = ""
        self.last_heard = 0.0
        self._socket: LoopSocket | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._seq = 0
        self._ticker: asyncio.TimerHandle | None = None
        self._next_ping = 0.0
        #: How often deadlines are checked: reply timeouts are kept to within a quarter.
        self._tick_every = min(heartbeat, max(timeout / 4, 0.005))

    @property
    def open(self) -> bool:
        return self._socket is not None and not self._socket.closed

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Open the socket and greet the host; returns its welcome (driver name,
        capabilities ...).

        :raises DriverConnectionError: no welcome within ``timeout`` (after ``retries``
            resends), or the host refused.
        """
        self.loop = asyncio.get_running_loop()
        sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
        configure(sock, sndhwm=1_000, rcvhwm=10_000)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if self.keys is not None:
            apply_client(sock, self.keys)
        sock.connect(self.address)
        self._socket = LoopSocket(sock, self.loop, self._on_message)
        self.last_heard = time.monotonic()
        self._ticker = self.loop.call_later(self._tick_every, self._tick)
        try:
            welcome = await self.call("hello", None, retries=self.retries, hello=True)
        except (DriverTimeoutError, DriverConnectionError) as exc:
            self.close()
            raise DriverConnectionError(
                f"no answer from the {self.where}: {exc.message}",
                hint="is `probepilot serve` running there and reachable? If it uses CurveZMQ "
                "keys, set server_key and client_key to keys it accepts",
            ) from None
        except BaseException:
            self.close()
            raise
        self._welcomed(welcome)
        return self.welcome

    def _welcomed(self, welcome: Any) -> None:
        if not isinstance(welcome, dict) or not isinstance(welcome.get("instance"), str):
            raise ProtocolError(f"{self.where}: malformed welcome {welcome!r:.80}")
        self.welcome = welcome
        self.instance = welcome["instance"]

    def close(self) -> None:
        """Say goodbye (so the host forgets us at once), fail what is pending, close."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._socket is not None and not self._socket.closed:
            with contextlib.suppress(ProtocolError):
                self._socket.send(self._frames("bye", 0, {}))
            self._socket.close(linger_ms=100)
        self._fail_all(NotConnectedError(f"{self.where}: the connection was closed"))

    # -- calls -------------------------------------------------------------------------------

    def _frames(self, type: str, cid: int, body: dict[str, Any]) -> list[Any]:
        self._seq += 1
        return wire.encode(type, body, seq=self._seq, cid=cid)

    async def _send(self, frames: list[Any], deadline: float) -> None:
        """Queue ``frames``; while the connection is not up yet (or is down), try again until
        ``deadline``."""
        while True:
            if self._socket is None or self._socket.closed:
                raise NotConnectedError(f"{self.where}: not connected")
            if self._socket.send(frames):
                return
            if time.monotonic() >= deadline:
                raise DriverConnectionError(
                    f"cannot reach the {self.where} (no connection within {self.timeout:g} s)"
                )
            await asyncio.sleep(0.005)

    async def call(
        self,
        method: str,
        args: list[Any] | None,
        *,
        progress: ProgressHandler | None = None,
        retries: int = 0,
        long: bool = False,
        hello: bool = False,
    ) -> Any:
        """Call ``method(*args)`` on the host's driver and return the result's wire value
        (the caller checks and converts it). The host's errors are raised as themselves.

        :param progress: called with each ``progress`` message's line (wire value).
        :param retries: resends after a timeout (reads only).
        :param long: no reply deadline, only the host's liveness (see the module docstring).
        """
        assert self.loop is not None
        attempts = 0
        while True:
            cid = next(self._ids)
            future: asyncio.Future[Any] = self.loop.create_future()
            started = time.monotonic()
            deadline = None if long else started + self.timeout
            pending = _Pending(future, progress, deadline, method, asyncio.current_task())
            self._pending[cid] = pending
            try:
                if hello:
                    body: dict[str, Any] = {"client": self.name, "probepilot": _version()}
                    frames = self._frames("hello", cid, body)
                else:
                    frames = self._frames("call", cid, {"m": method, "a": codec.to_wire(args)})
                socket = self._socket
                # Queued at once, mostly; a reply already there is taken before we await it.
                if socket is None or not socket.send(frames, drain_now=True):
                    await self._send(frames, started + self.timeout)
                # A reply, an error, or the ticker's TimeoutError past the deadline.
                return await future
            except TimeoutError:
                if attempts < retries:
                    attempts += 1
                    continue
                raise DriverTimeoutError(
                    f"{method}: no reply from the {self.where} within {self.timeout:g} s"
                    + (f" ({attempts + 1} attempts)" if attempts else "")
                ) from None
            except asyncio.CancelledError:
                if long and not future.done():
                    await self._abort(cid, pending)
                raise
            finally:
                self._pending.pop(cid, None)

    async def _abort(self, cid: int, pending: _Pending) -> None:
        """The caller gave up on a long call: ask the host to abort it and wait until it says
        the call ended (or ``timeout`` passes)."""
        pending.abandoned = True
        with contextlib.suppress(ProbepilotError):
            await self._send(self._frames("cancel", 0, {"target": cid}), time.monotonic() + 1.0)
            await asyncio.wait({pending.future}, timeout=self.timeout)
        if pending.future.done() and not pending.future.cancelled():
            pending.future.exception()  # retrieved: never "exception was never retrieved"

    # -- incoming ----------------------------------------------------------------------------

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        try:
            message = wire.decode(frames, expect=HOST_TYPES)
        except ProtocolError as exc:
            _log.warning("%s sent a malformed message: %s", self.where, exc)
            return
        self.last_heard = time.monotonic()
        if message.type == "pong":
            instance = message.body.get("instance")
            if isinstance(instance, str) and self.instance and instance != self.instance:
                self._restarted(instance)
            return
        pending = self._pending.get(message.cid)
        if pending is None:
            return  # a late reply to a call that timed out or was abandoned
        if message.type == "progress":
            self._progress(message.cid, pending, message)
            return
        if pending.future.done():
            return
        if pending.failure is not None:
            pending.future.set_exception(pending.failure)
        elif message.type in ("result", "welcome"):
            pending.future.set_result(
                message.body.get("value") if message.type == "result" else message.body
            )
        elif message.type == "error":
            pending.future.set_exception(codec.error_from_wire(message.body, self.where))
        else:  # cancelled, and not by us: the host stopped or thought we were gone
            pending.future.set_exception(
                DriverConnectionError(
                    f"{pending.method}: the {self.where} aborted it (the host is stopping, or "
                    "it lost contact with this client)"
                )
            )

    def _progress(self, cid: int, pending: _Pending, message: wire.Message) -> None:
        if pending.progress is None or pending.abandoned or pending.failure is not None:
            return
        if pending.caller is not None and pending.caller.cancelling():
            return  # cancelled (maybe by the previous line's callback): no more lines
        try:
            pending.progress(message.body.get("line"))
        # The caller's callback failed (or rejected a malformed line): the scan is aborted on
        # the host and the call raises this exception once the host confirms.
        except BaseException as exc:  # noqa: BLE001
            pending.failure = exc
            frames = self._frames("cancel", 0, {"target": cid})
            if self._socket is not None:
                self._socket.send(frames)

    def _restarted(self, instance: str) -> None:
        """The host restarted: what was in flight is lost; fail it now, greet the new one."""
        _log.warning("%s restarted; failing the calls in flight", self.where)
        self.instance = instance
        self._fail_all(
            DriverConnectionError(f"the {self.where} restarted; the call in flight was lost")
        )

    def _fail_all(self, error: ProbepilotError) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
                pending.future.exception()  # retrieved by whoever awaits, or nobody

    def _tick(self) -> None:
        """Ping the host every heartbeat; fail short calls past their deadline (one timer for
        all calls, rather than one per call) and long calls once the host has been silent
        for ``timeout``."""
        if self._socket is None or self._socket.closed or self.loop is None:
            return
        now = time.monotonic()
        if now >= self._next_ping:
            with contextlib.suppress(ProtocolError):
                self._socket.send(self._frames("ping", 0, {}))
            self._next_ping = now + self.heartbeat
        silent = now - self.last_heard
        for pending in list(self._pending.values()):
            if pending.future.done():
                continue
            if pending.deadline is not None and now >= pending.deadline:
                pending.future.set_exception(TimeoutError())
            elif pending.deadline is None and silent > self.timeout:
                pending.future.set_exception(
                    DriverTimeoutError(
                        f"{pending.method}: no word from the {self.where} for {silent:.1f} s"
                    )
                )
            else:
                continue
            pending.future.exception()
        self._ticker = self.loop.call_later(self._tick_every, self._tick)


def probe(address: str, *, keys: ClientKeys | None = None, timeout: float = 2.0) -> dict[str, Any]:
    """The host's welcome, fetched synchronously (no event loop needed): for the rare question
    asked before any connection, such as a remote driver's capabilities.

    :raises DriverConnectionError: no welcome within ``timeout``.
    """
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    try:
        configure(sock, sndhwm=10, rcvhwm=100, heartbeat=False)
        if keys is not None:
            apply_client(sock, keys)
        sock.connect(check_address(address))
        sock.send_multipart(wire.encode("hello", {"client": "probe", "probepilot": _version()}))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000) + 1):
                break
            try:
                message = wire.decode(sock.recv_multipart(copy=False), expect=HOST_TYPES)
            except ProtocolError:
                continue
            if message.type == "welcome":
                sock.send_multipart(wire.encode("bye", {}))
                return message.body
            if message.type == "error":
                raise codec.error_from_wire(message.body, f"driver host {address}")
        raise DriverConnectionError(
            f"no answer from the driver host {address} within {timeout:g} s"
        )
    finally:
        sock.close(linger=100)


def _version() -> str:
    from probepilot import __version__

    return __version__
