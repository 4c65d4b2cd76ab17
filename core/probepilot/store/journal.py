"""The run's journal: every event of a run, in order, appended to one msgpack file.

Format. ``journal.msgpack`` is a plain concatenation of msgpack maps, one per
:class:`~probepilot.events.Event`: ``{"type": str, "seq": int, "time": float, "data": map}``,
so any msgpack library can stream it (no pickle, no framing of our own). ``seq`` increases
strictly from record to record; the first record is :data:`~probepilot.events.RUN_STARTED`,
whose ``journal_version`` is :data:`JOURNAL_VERSION`.

Durability. :meth:`Journal.append` hands each record to the operating system with one
``write()`` before it returns (no user-space buffer), so a process that is killed, even with
SIGKILL, loses nothing it appended. ``fsync`` is what costs (milliseconds per call on a real
disk), so it is batched: a background thread fsyncs at most ``flush_interval`` seconds
(default 0.5 s) after the oldest record not yet synced was appended. A record is therefore on
disk, safe from a power cut or a kernel crash, within ``flush_interval`` plus one fsync of being
appended: under 1 s unless the disk itself stalls. :meth:`Journal.close` fsyncs whatever is left.

Reading. A crash can still cut the last record short (a power cut mid-write, a full disk).
:func:`read_journal` parses every complete record and reports what follows the last good one
as a :class:`JournalTail` instead of raising, so a crashed run's journal is always readable up
to its last complete record.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import msgpack
import numpy as np

from probepilot.errors import JournalError
from probepilot.events import Event
from probepilot.store._common import Source, fsync_dir, load

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "JOURNAL_VERSION",
    "Journal",
    "JournalContents",
    "JournalError",
    "JournalTail",
    "decode_journal",
    "plain",
    "read_journal",
]

#: Version of the record layout above; readers check it in the ``run.started`` record.
JOURNAL_VERSION = 1
#: Seconds a record may wait for its fsync (see the module docstring).
DEFAULT_FLUSH_INTERVAL = 0.5


# --------------------------------------------------------------------------------------------
# Writing


class Journal:
    """Appends events to a new journal file; see the module docstring for the guarantees.

    Thread-safe: the session's loop, worker threads and the flusher thread may all use it.
    A journal file is written once, by one process: the file must not exist yet, so a crashed
    run's journal (which may end in a torn record) is never appended to.

    :param flush_interval: the longest a record waits before the flusher fsyncs it, in
        seconds (0 < interval <= 1).
    :raises JournalError: the file exists or cannot be created.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, flush_interval: float = DEFAULT_FLUSH_INTERVAL
    ) -> None:
        if not 0 < flush_interval <= 1:
            raise ValueError(f"flush_interval must be in (0, 1] s, not {flush_interval!r}")
        self.path = Path(path)
        self.flush_interval = flush_interval
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise JournalError(
                f"{self.path}: cannot create the journal: {exc.strerror or exc}"
            ) from None
        fsync_dir(self.path.parent)  # the new file's name must survive a power cut too
        self._lock = threading.Condition()
        self._last_seq: int | None = None
        self._unsynced_since: float | None = None  # monotonic time of the oldest unsynced record
        self._closing = False
        self._closed = False
        self._error: OSError | None = None
        #: Number of fsyncs done, for tests and curiosity.
        self.syncs = 0
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"journal-flusher {self.path.parent.name}", daemon=True
        )
        self._flusher.start()

    @property
    def last_seq(self) -> int | None:
        """``seq`` of the last record appended (None before the first)."""
        return self._last_seq

    def emit(self, type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Append a new event numbered one past the last (the first is 1), timed now; returns
        it. Raises as :meth:`append` does."""
        with self._lock:
            seq = 1 if self._last_seq is None else self._last_seq + 1
            event = Event(type=type, seq=seq, data=dict(data or {}), time=time.time())
            self._append_locked(event)
        return event

    def append(self, event: Event) -> None:
        """Append ``event`` (already numbered, e.g. by the session's event bus).

        On return the record is in the operating system's hands: it survives the process
        being killed; it is on disk within ``flush_interval`` plus one fsync.

        :raises ValueError: ``event`` is malformed, its ``seq`` does not increase, or its
            data holds something msgpack cannot carry.
        :raises JournalError: the journal is closed, or writing or an earlier fsync failed.
        """
        with self._lock:
            self._append_locked(event)

    def _append_locked(self, event: Event) -> None:
        if self._closing or self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        self._raise_pending()
        if self._last_seq is not None and event.seq <= self._last_seq:
            raise ValueError(f"event seq {event.seq} does not follow {self._last_seq}")
        record = _pack(event)
        try:
            view = memoryview(record)
            while view:  # write() to a regular file is all-or-error in practice; be sure
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise JournalError(
                f"{self.path}: cannot append to the journal: {exc.strerror or exc}"
            ) from None
        self._last_seq = event.seq
        if self._unsynced_since is None:
            self._unsynced_since = time.monotonic()
            self._lock.notify_all()

    def sync(self) -> None:
        """fsync now (the flusher would within ``flush_interval``)."""
        with self._lock:
            self._raise_pending()
            if self._closing or self._closed:
                return  # close() syncs
            self._unsynced_since = None
        self._fsync()
        with self._lock:
            self._raise_pending()

    def close(self) -> None:
        """Stop the flusher, fsync what is left, close the file; idempotent.

        :raises JournalError: the last fsync (or an earlier one) failed.
        """
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
            self._lock.notify_all()
        self._flusher.join()
        try:
            self._fsync()
        finally:
            os.close(self._fd)
            with self._lock:
                self._closed = True
        with self._lock:
            self._raise_pending()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flush_loop(self) -> None:
        """The flusher: sleep until the oldest unsynced record is ``flush_interval`` old, then
        fsync everything written so far (outside the lock, so appends never wait for a disk)."""
        while True:
            with self._lock:
                while self._unsynced_since is None and not self._closing:
                    self._lock.wait()
                oldest = self._unsynced_since
                if self._closing or oldest is None:
                    return  # close() does the final fsync
                deadline = oldest + self.flush_interval
                while (delay := deadline - time.monotonic()) > 0 and not self._closing:
                    self._lock.wait(delay)
                # Records appended from here on start a new round; this fsync covers them too.
                # (Woken by close(): one fsync more than needed, before close's own.)
                self._unsynced_since = None
            self._fsync()

    def _fsync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            with self._lock:
                self._error = self._error or exc
            return
        with self._lock:
            self.syncs += 1

    def _raise_pending(self) -> None:
        if self._error is not None:
            exc = self._error
            raise JournalError(f"{self.path}: cannot sync the journal: {exc.strerror or exc}")


def _pack(event: Event) -> bytes:
    if not isinstance(event.type, str) or not event.type:
        raise ValueError(f"event type must be a non-empty string, not {event.type!r}")
    if not isinstance(event.seq, int) or isinstance(event.seq, bool) or event.seq < 0:
        raise ValueError(f"event seq must be a non-negative int, not {event.seq!r}")
    record = {"type": event.type, "seq": event.seq, "time": float(event.time)}
    record["data"] = plain(event.data)
    try:
        return bytes(msgpack.packb(record, use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"event {event.type!r} cannot be journaled: {exc}") from None


def plain(value: Any) -> Any:
    """``value`` as msgpack-friendly data: dataclasses (actions, findings) become maps, enums
    their values, numpy scalars and arrays numbers and lists, tuples lists, paths strings.

    :raises ValueError: something else (a journal must not carry arbitrary objects).
    """
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.generic | np.ndarray):
        return plain(value.tolist())
    if isinstance(value, PurePath):
        return value.as_posix()
    raise ValueError(f"{type(value).__name__} values cannot go into the journal: {value!r:.60}")


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, slots=True)
class JournalTail:
    """What follows the last complete record: ``size`` bytes from ``offset``, and why they are
    not a record (cut short by a crash, or damaged)."""

    offset: int
    size: int
    reason: str

    def __str__(self) -> str:
        return f"{self.size} bytes at offset {self.offset} are not a complete record: {self.reason}"


@dataclass(frozen=True, slots=True)
class JournalContents:
    """The records of a journal up to the last complete one, and the tail after it, if any."""

    events: list[Event]
    size: int
    tail: JournalTail | None = None

    @property
    def intact(self) -> bool:
        """True when every byte of the file belongs to a complete record."""
        return self.tail is None


def read_journal(source: Source, *, name: str | None = None) -> JournalContents:
    """The events in a journal file (a path or its bytes), up to the last complete record.

    A torn or damaged tail is reported in :attr:`JournalContents.tail`, never raised.

    :raises FormatError: only when the file cannot be read at all.
    """
    data, _label = load(source, name)
    return decode_journal(data)


def decode_journal(data: bytes) -> JournalContents:
    """The events in a journal's bytes (see :func:`read_journal`)."""
    events: list[Event] = []
    # The whole file is fed at once, so no length field can make msgpack allocate more than
    # the file holds: a lying length reads as a record cut short.
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1), timestamp=0
    )
    unpacker.feed(data)
    offset = 0
    reason = ""
    while offset < len(data):
        try:
            record = unpacker.unpack()
        except msgpack.OutOfData:
            reason = "the record is cut short (the writer stopped mid-record)"
            break
        # msgpack reports bad bytes as ValueError subclasses (FormatError, StackError, bad
        # UTF-8) and, for unhashable map keys, TypeError; all mean "not a record here".
        except (ValueError, TypeError, OverflowError) as exc:
            reason = f"not msgpack ({type(exc).__name__}: {exc})"
            break
        last = events[-1].seq if events else None
        event, problem = _event(record, last)
        if event is None:
            reason = problem
            break
        events.append(event)
        offset = unpacker.tell()
    tail = JournalTail(offset, len(data) - offset, reason) if offset < len(data) else None
    return JournalContents(events, len(data), tail)


def _event(record: object, last_seq: int | None) -> tuple[Event | None, str]:
    """The event a decoded record holds, or None and what is wrong with it."""
    if not isinstance(record, dict):
        return None, f"a {type(record).__name__} where an event map should be"
    kind, seq, moment, data = (record.get(k) for k in ("type", "seq", "time", "data"))
    if not isinstance(kind, str) or not kind:
        return None, f"the record has no event type ({kind!r:.40})"
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None, f"the {kind!r} record has no sequence number ({seq!r:.40})"
    if last_seq is not None and seq <= last_seq:
        return None, f"sequence number {seq} does not follow {last_seq}"
    if not isinstance(moment, float | int) or isinstance(moment, bool) or math.isnan(moment):
        return None, f"the {kind!r} record has no time ({moment!r:.40})"
    if not isinstance(data, dict):
        return None, f"the {kind!r} record's data is not a map ({type(data).__name__})"
    return Event(type=kind, seq=seq, data=data, time=float(moment)), ""
