"""The virtual Nanonis's side of one client connection: whole requests in, whole replies out.

An :class:`asyncio.BufferedProtocol` receiving straight into one reusable buffer. The stream
classes would allocate the transport's 256 KiB receive buffer for every request (an mmap/munmap
pair each time, on Linux), which for a 40-byte ``Bias.Get`` costs more than answering it.
:meth:`ClientWire.write` hands each reply to the transport in one call, so it goes out in one
``send`` (clients read the 40-byte header in one ``recv``); :meth:`ClientWire.drain` waits while
the transport's buffer is full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

#: Stop reading from a client that has this much unread data (it does not wait for replies).
HIGH_WATER = 1 << 22
MIN_FREE = 1 << 12


class ClientWire(asyncio.BufferedProtocol):
    """One client connection; ``serve(wire)`` runs as a task for its lifetime."""

    def __init__(self, serve: Callable[[ClientWire], Coroutine[Any, Any, None]]) -> None:
        self._serve = serve
        self._buf = bytearray(1 << 16)
        self._start = 0  # first unread byte
        self._end = 0  # end of received data
        self._eof = False
        self._need = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused_writing = False
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.task = asyncio.get_running_loop().create_task(self._serve(self))

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._buf) - self._end < MIN_FREE:
            unread = self._end - self._start
            if self._start and unread + MIN_FREE <= len(self._buf):  # compact
                self._buf[:unread] = self._buf[self._start : self._end]
            else:  # grow
                self._buf = self._buf[self._start : self._end] + bytearray(len(self._buf))
            self._start, self._end = 0, unread
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        if self._end - self._start >= self._need:
            self._wake()
        if self._end - self._start > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the client went away"))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ------------------------------------------------------------------ for the serving task

    async def read_exactly(self, n: int) -> bytes:
        """The next ``n`` bytes; :class:`asyncio.IncompleteReadError` at end of stream."""
        while self._end - self._start < n:
            if self._eof:
                partial = bytes(self._buf[self._start : self._end])
                raise asyncio.IncompleteReadError(partial, n)
            self._need = n
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buf[self._start : self._start + n])
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
            if self.transport is not None and not self._eof:
                self.transport.resume_reading()
        return data

    async def read_until_eof(self) -> None:
        """Discard everything until the client closes (a stalled reply waits here)."""
        while not self._eof:
            self._start = self._end = 0
            self._need = 1 << 30
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client went away")
        if self._paused_writing:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
