"""One TCP connection to a Nanonis controller port.

* Commands on one connection are strictly serialised (:class:`Serial`, a first-come,
  first-served lock): one request, then its whole reply, then the next request.
* Every exchange runs under a deadline, so a reply that never comes, stops half-way, or a peer
  that closes the socket, becomes a typed error within the timeout, never a hang:
  :class:`~probepilot.errors.DriverTimeoutError`, :class:`~probepilot.errors.DriverConnectionError`,
  or :class:`~probepilot.errors.ProtocolError` for a malformed reply.
* After any failure that may leave a reply half-read (timeout, cancellation, lost connection),
  the stream is out of step, so the socket is dropped; the next command reconnects, retrying
  with exponential backoff. A failed command is never re-sent on its own: it may have run on
  the controller already (a pulse, a motor move).
* An error section from the controller becomes :class:`~probepilot.errors.InstrumentError` with
  the controller's description intact.
* Socket I/O is :mod:`probepilot_nanonis.sockio`: asyncio, plus a blocking fast path (one read
  of at most 1 ms, rounded up to a scheduler tick) for quick commands while the controller
  answers that fast (a local one does), which halves the round trip. After a miss the fast
  path is skipped for 2, 4 ... 1024 commands, so a slow controller is rarely waited for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
import time
from collections.abc import Mapping
from typing import Any

from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    NotConnectedError,
    ProtocolError,
)
from probepilot_nanonis import codec
from probepilot_nanonis.sockio import SPIN, PeerClosed, SocketIO
from probepilot_nanonis.wire import HEADER_SIZE, NAME_SIZE

_SIZE = struct.Struct(">i")


class Serial:
    """First come, first served exclusive use of one connection (an ``asyncio.Lock`` with a
    non-waiting :meth:`try_hold`, and cheaper: every command takes it)."""

    def __init__(self) -> None:
        self.busy = False
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_hold(self) -> bool:
        if self.busy or self._queue:
            return False
        self.busy = True
        return True

    async def hold(self) -> None:
        if self.try_hold():
            return
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        try:
            await fut  # release() hands the connection over: busy stays True
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed over as we were cancelled
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._queue.remove(fut)
            raise

    def release(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.busy = False


class Connection:
    """A connection to ``host:port``; see the module docstring.

    :param timeout: seconds a reply may take (commands that wait on the instrument add their
        own expected duration through ``call(..., extra=...)``).
    :param attempts: connection attempts per (re)connect; the delay between attempts starts
        at ``backoff`` seconds and doubles up to ``backoff_max``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        connect_timeout: float = 3.0,
        attempts: int = 3,
        backoff: float = 0.1,
        backoff_max: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._io: SocketIO | None = None
        #: Receives whole small replies in one read; a large reply's first bytes.
        self._buf = bytearray(1 << 16)
        self._view = memoryview(self._buf)
        self._serial = Serial()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Fast-path bookkeeping: after a miss (no reply within SPIN), skip the fast path for
        # 2, 4 ... 1024 quick commands, so a slow controller (or a server on this very event
        # loop, which cannot answer while the loop is held) is rarely made to wait for.
        self._misses = 0
        self._skip = 0
        self._wanted = False  # open() was called and close() was not: reconnect when lost
        #: How many times the socket was (re)opened (tests and diagnostics).
        self.connects = 0

    @property
    def where(self) -> str:
        return f"Nanonis at {self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._io is not None

    # ------------------------------------------------------------------ lifecycle

    def _guard(self) -> Serial:
        """What serialises commands, for the running event loop. A connection used from
        another loop (a test's next ``asyncio.run``) starts afresh: futures and sockets belong
        to the loop that made them."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._serial = Serial()
            self._drop()
        return self._serial

    async def open(self) -> None:
        """Connect (with retries); idempotent."""
        serial = self._guard()
        await serial.hold()
        try:
            self._wanted = True
            if self._io is None:
                await self._connect()
        finally:
            serial.release()

    async def close(self) -> None:
        """Close the socket; idempotent. Later calls raise NotConnectedError."""
        self._wanted = False
        self._drop()

    def _drop(self) -> None:
        io, self._io = self._io, None
        if io is not None:
            io.close()

    async def _connect(self) -> None:
        delay = self.backoff
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.backoff_max)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    self._io = await SocketIO.connect(self.host, self.port)
            except TimeoutError:
                problem = f"no answer within {self.connect_timeout:g} s"
                continue
            except OSError as exc:
                problem = exc.strerror or str(exc)
                continue
            self.connects += 1
            return
        raise DriverConnectionError(
            f"cannot connect to the {self.where} after {self.attempts} attempt(s): {problem}",
            hint="check that the controller runs, that its TCP programming interface is enabled "
            "on this port and allows this machine's address, and that no firewall blocks it",
        )

    # ------------------------------------------------------------------ commands

    async def call(
        self,
        name: str,
        values: Mapping[str, Any] | None = None,
        *,
        extra: float = 0.0,
    ) -> dict[str, Any]:
        """Send ``name`` with ``values`` and return the reply's values.

        :param extra: seconds added to the timeout for a command that waits on the
            instrument (a pulse, a withdraw, a motor move).
        :raises InstrumentError: the controller's error section, message intact.
        :raises DriverTimeoutError: no complete reply within the timeout.
        :raises DriverConnectionError: the connection could not be made or was lost.
        :raises ProtocolError: the reply is malformed or answers another command.
        """
        request = codec.encode_request(name, values)
        serial = self._guard()
        if not serial.try_hold():
            await serial.hold()
        try:
            if not self._wanted:
                raise NotConnectedError(
                    f"{name}: the connection to the {self.where} is closed",
                    hint="await driver.connect() first",
                )
            if self._io is None:
                await self._connect()
            result = await self._exchange(name, request, self.timeout + extra, spin=not extra)
        finally:
            serial.release()
        if isinstance(result, dict):
            return result
        values = codec.quick_values(name, result)
        if values is not None:
            return values
        reply = codec.decode_reply(name, result)
        if not reply.ok:
            raise InstrumentError(name, reply.message)
        assert reply.values is not None
        return reply.values

    async def _exchange(
        self, name: str, request: bytes, seconds: float, spin: bool
    ) -> dict[str, Any] | bytes | bytearray:
        """Send ``request``; return the reply's body (header checked), or its values when the
        fast path decoded them already."""
        io, buf, view = self._io, self._buf, self._view
        assert io is not None
        start = time.perf_counter()
        deadline = start + seconds
        fast = spin and io.selector and not self._skip
        if spin and self._skip:
            self._skip -= 1
        got = 0
        try:
            if fast:
                # A blocking send and one blocking read of at most SPIN (see sockio).
                sent = io.send_now(request)
                if sent < len(request):
                    await io.send(request[sent:], deadline)
                got = io.recv_now(view)
                if got and time.perf_counter() - start < SPIN:
                    self._misses = 0
                    whole = codec.whole_reply(name, buf, got)
                    if whole is not None:
                        return whole  # the commonest case: one unpack, no copies
                else:
                    self._misses += 1
                    self._skip = 2 ** min(self._misses, 10)
            else:
                await io.send(request, deadline)
            if got < HEADER_SIZE:
                await io.recv_into(view[got:HEADER_SIZE], deadline)
                got = HEADER_SIZE
            if view[:NAME_SIZE] != codec.name_field(name):
                reply_name, _ = codec.decode_reply_header(bytes(buf[:HEADER_SIZE]))
                raise ProtocolError(
                    f"{name}: the {self.where} answered {reply_name!r} instead",
                    hint="another client may share this port; give probepilot its own port",
                )
            size = _SIZE.unpack_from(buf, NAME_SIZE)[0]
            if size < 0:
                raise ProtocolError(f"{name}: the reply announces a negative body size {size}")
            total = HEADER_SIZE + size
            if got > total:
                raise ProtocolError(f"{name}: {got - total} bytes arrived after the reply")
            if total <= len(buf):
                if got < total:
                    await io.recv_into(view[got:total], deadline)
                body: bytes | bytearray = bytes(buf[HEADER_SIZE:total])
            else:  # a large reply (a frame): straight into its own buffer, no further copies
                body = bytearray(size)
                body[: got - HEADER_SIZE] = buf[HEADER_SIZE:got]
                await io.recv_into(memoryview(body)[got - HEADER_SIZE :], deadline)
        except TimeoutError:
            self._drop()
            where = "no reply" if got == 0 else "the reply stopped part-way"
            raise DriverTimeoutError(
                f"{name}: {where} from the {self.where} within {seconds:g} s",
                hint="the controller may be busy or hung; the next command reconnects",
            ) from None
        except PeerClosed as exc:
            self._drop()
            raise DriverConnectionError(
                f"{name}: the {self.where} closed the connection after "
                f"{got + exc.got} bytes of the reply",
                hint="the next command reconnects",
            ) from None
        except OSError as exc:
            self._drop()
            raise DriverConnectionError(
                f"{name}: connection to the {self.where} lost: {exc}",
                hint="the next command reconnects",
            ) from None
        except BaseException:
            # A malformed reply, or cancelled mid-exchange: the stream is out of step (a reply
            # may still be on its way); start afresh next time.
            self._drop()
            raise
        return body
