"""ZeroMQ plumbing shared by the host, the remote driver, the publisher and the watcher.

- Addresses: ``tcp://HOST:PORT``; a service that needs a second socket (the host's status
  stream, the run's event stream) binds it on ``PORT + 1`` (both ephemeral with port 0 or
  ``*``), so a user names one address and opens two ports in a firewall.
- Socket options are set explicitly on every socket (high-water marks, linger, ZMTP heartbeats
  that notice a dead peer even when the network drops packets silently): nothing relies on
  ZeroMQ's defaults.
- :class:`LoopSocket` runs a socket on an asyncio event loop through the socket's file
  descriptor, without ``zmq.asyncio``'s per-call futures: a request/reply round trip through it
  costs about a third of one through ``zmq.asyncio`` (see ``benchmarks/bench_bus.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from typing import Any, cast

import zmq

from probepilot.bus.address import TCP, check_address
from probepilot.errors import ConfigError

_log = logging.getLogger(__name__)

# Plain ints: zmq's flag enums cost microseconds per operation on the hot path.
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)

#: ZMTP heartbeats: ping an idle peer every second, drop the connection after 5 s of silence.
ZMTP_HEARTBEAT_MS = 1000
ZMTP_TIMEOUT_MS = 5000


def split(address: str) -> tuple[str, str]:
    """(host, port) of a checked tcp address; port may be ``*``."""
    match = TCP.fullmatch(check_address(address))
    assert match is not None
    return match["host"], match["port"]


def bind_address(address: str) -> str:
    """The address to bind: port 0 becomes ``*`` (any free port)."""
    host, port = split(address)
    return f"tcp://{host}:{'*' if port in ('*', '0') else port}"


def companion(address: str) -> str:
    """The second socket's bind address: ``PORT + 1``, or any free port for an ephemeral one."""
    host, port = split(bind_address(address))
    if port == "*":
        return f"tcp://{host}:*"
    if int(port) >= 65535:
        raise ConfigError(
            f"{address!r}: port {port} leaves no room for the second socket on port + 1",
            source="command line",
            key="address",
        )
    return f"tcp://{host}:{int(port) + 1}"


def endpoint(sock: zmq.Socket[Any]) -> str:
    """The address a socket is bound to (the real port after binding ``*``)."""
    value = sock.getsockopt(zmq.LAST_ENDPOINT)
    return value.decode() if isinstance(value, bytes) else str(value)


def port_of(address: str) -> int:
    """The numeric port of a bound address."""
    return int(split(address)[1])


def with_port(address: str, port: int) -> str:
    """``address`` (where a client connected) with another port: how a client reaches the
    second socket of a service, whose own view of its host (``0.0.0.0``) is of no use."""
    host, _ = split(address)
    return f"tcp://{host}:{port}"


def configure(
    sock: zmq.Socket[Any],
    *,
    sndhwm: int,
    rcvhwm: int,
    linger_ms: int = 0,
    heartbeat: bool = True,
    reconnect_max_ms: int = 2000,
) -> None:
    """Set the options every probepilot socket sets explicitly. A connecting socket retries
    after 100 ms, backing off to ``reconnect_max_ms``."""
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, reconnect_max_ms)
    if heartbeat:
        sock.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, ZMTP_TIMEOUT_MS)


def send_parts(sock: zmq.Socket[Any], parts: list[Any], flags: int = _NOBLOCK) -> None:
    """``sock.send_multipart(parts, flags, copy=False)`` without its per-part type checks and
    flag enums (microseconds a message on the hot path): buffers of arrays go out from their
    own memory, small parts are copied (pyzmq's copy threshold)."""
    last = len(parts) - 1
    more = flags | _SNDMORE
    for i, part in enumerate(parts):
        sock.send(part, more if i < last else flags, copy=False)


def recv_parts(sock: zmq.Socket[Any], flags: int = _NOBLOCK) -> list[zmq.Frame]:
    """``sock.recv_multipart(flags, copy=False)`` without a socket option read per part."""
    frame = sock.recv(flags, copy=False)
    parts = [frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        parts.append(frame)
    return parts


def bind(sock: zmq.Socket[Any], address: str) -> str:
    """Bind ``sock``; a clear error when the port is taken or the host is not this machine's."""
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError(
            f"cannot listen on {address}: {why}",
            source="command line",
            key="address",
            hint="choose another port, or stop what listens there",
        ) from None
    return endpoint(sock)


class LoopSocket:
    """A ZeroMQ socket served by an asyncio event loop.

    Every message that arrives is handed to ``on_message(frames)`` (``zmq.Frame`` objects: zero
    copy) on the loop, in order; it must not block (start a task for slow work). :meth:`send`
    never blocks: it returns False when the message cannot be queued now (high-water mark
    reached, peer gone). A socket's descriptor only signals *changes* (it is edge-triggered), so
    after every send, which may have consumed the signal, the socket is asked whether a message
    waits and, if one does, drained: on the loop's next turn, or, with ``drain_now``, before
    :meth:`send` returns (a caller that only awaits a reply afterwards saves a turn of the
    loop; handlers then run inside ``send``, so only a caller whose state is settled before it
    sends may ask for it).
    """

    #: Messages handled per turn of the loop before other callbacks get theirs.
    BATCH = 256

    def __init__(
        self,
        sock: zmq.Socket[Any],
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[list[zmq.Frame]], None] | None,
    ) -> None:
        self.sock = sock
        self.loop = loop
        self.on_message = on_message
        self.closed = False
        self._draining = False
        self._drain_pending = False
        self._poll_handle: asyncio.TimerHandle | None = None
        self._fd: int = int(sock.getsockopt(zmq.FD))
        if on_message is not None:
            try:
                loop.add_reader(self._fd, self._readable_fd)
            except NotImplementedError:
                # Windows' proactor loop has no add_reader: poll instead (1 ms granularity).
                self._poll_handle = loop.call_later(0.001, self._poll)
            self._schedule_drain()

    def _poll(self) -> None:
        if not self.closed:
            self._drain()
            self._poll_handle = self.loop.call_later(0.001, self._poll)

    def _schedule_drain(self) -> None:
        if not self._drain_pending and self.on_message is not None and not self.closed:
            self._drain_pending = True
            self.loop.call_soon(self._drain)

    def _readable_fd(self) -> None:
        # The descriptor fired: nearly always for a message that has just arrived (an ack, a
        # reply), so the drain takes it without asking first.
        self._drain(ask=False)

    def _drain(self, ask: bool = True) -> None:
        self._drain_pending = False
        if self._draining or self.on_message is None:
            return
        self._draining = True
        try:
            self._drain_batch(ask)
        finally:
            self._draining = False

    def _drain_batch(self, ask: bool = True) -> None:
        assert self.on_message is not None
        sock = self.sock
        for i in range(self.BATCH):
            if self.closed:
                return
            try:
                # Asking is several times cheaper than the exception of an empty recv (and
                # both process the socket's pending commands, re-arming its descriptor); a
                # receive the descriptor has just announced goes without asking.
                if (ask or i) and not cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:
                    return
                frames = recv_parts(sock)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                _log.warning("receive failed: %s", exc)
                return
            try:
                self.on_message(frames)
            # A handler bug must not stop the socket from serving the next message.
            except Exception:  # noqa: BLE001
                _log.exception("message handler failed")
        self._schedule_drain()  # more waiting: let other callbacks have a turn first

    def send(self, frames: list[Any], *, drain_now: bool = False) -> bool:
        """Queue ``frames`` without blocking (arrays are sent from their own memory); False
        when the high-water mark is reached or (ROUTER) the peer is gone."""
        if self.closed:
            return False
        try:
            send_parts(self.sock, frames)
            sent = True
        except zmq.Again:
            sent = False
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                _log.warning("send failed: %s", exc)
            sent = False
        if self._draining or self.on_message is None:
            pass  # the drain loop under way checks the socket again; or nothing to receive
        elif drain_now:
            self._drain()
        elif self._readable():
            self._schedule_drain()
        return sent

    def _readable(self) -> bool:
        """Whether a message waits. Asking also re-arms the descriptor, so when none waits the
        loop hears of the next one: no turn of the loop is spent on an empty drain."""
        try:
            return bool(cast(int, self.sock.getsockopt(_EVENTS)) & _POLLIN)
        except zmq.ZMQError:
            return True  # let the drain find out

    def close(self, linger_ms: int = 0) -> None:
        """Stop serving and close the socket; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        elif self.on_message is not None and not self.loop.is_closed():
            with contextlib.suppress(ValueError, OSError, NotImplementedError):
                self.loop.remove_reader(self._fd)
        self.sock.close(linger=linger_ms)
