"""The watcher's side of a run's stream: :class:`RemoteLink`, a
:class:`~probepilot.link.RunLink` over ZeroMQ.

``probepilot watch ADDR`` hands one to the dashboard, which then cannot tell it from a run in
its own process: ``subscribe`` delivers the run's events (as :class:`~probepilot.events.Event`,
in ``seq`` order, none missing) and live :class:`~probepilot.session.ScanLine`\\ s,
``snapshot()`` the run's latest state, ``await command(...)`` steers it.

A thread of its own does the networking (a DEALER to the run's ROUTER, a SUB to its stream;
see :mod:`probepilot.bus.publisher`), so it keeps up with the run whatever the watcher's own
loop is busy with, and works with any event loop, or none. Each subscriber is called on the
event loop it subscribed from (or, subscribed outside any loop, on that thread), in batches;
what it has not taken yet waits in a mailbox where scan lines beyond a bound give way (the
whole frame follows anyway) and frames replace older ones: newest frame wins, events are never
dropped.

Ordering and gaps: the welcome's snapshot says which ``seq`` it reflects; events after it come
from the stream, and any gap (the stream's first messages, lost while the subscription was
being set up, or messages dropped by a high-water mark) is filled by asking the run to replay
them. Frames arrive over the DEALER with credit (an ``ack`` per frame); rows of a frame that
the line stream did not deliver are handed to subscribers as scan lines when the frame comes,
so a live image is always complete (when any row is missing, the whole frame is handed over
again as lines), and a watcher that attaches late is sent the latest frame at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from probepilot import __version__
from probepilot.bus import codec, wire
from probepilot.bus.address import check_address
from probepilot.bus.heap import keep_frame_buffers
from probepilot.bus.keys import ClientKeys, apply_client
from probepilot.bus.sockets import configure, recv_parts, send_parts, with_port
from probepilot.errors import ProtocolError, RemoteError
from probepilot.events import RUN_FINISHED, Event
from probepilot.model import ScanArea
from probepilot.session import ScanLine

_log = logging.getLogger(__name__)

# Plain ints: zmq's flag enums cost microseconds per operation on the hot path.
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)

#: Message types a watcher accepts on each socket.
CONTROL_TYPES = frozenset({"welcome", "frame", "events", "reply", "error", "pong"})
STREAM_TYPES = frozenset({"event", "line", "state"})
#: Scan lines a subscriber's mailbox holds before the oldest give way.
MAILBOX_LINES = 4096


@dataclass(frozen=True, slots=True)
class RemoteFrame:
    """A frame as the stream carries it: float32 channels for display (the run folder has the
    full data). ``event`` is the ``frame.persisted`` event's data."""

    index: int
    area: ScanArea
    lines_done: int
    complete: bool
    channels: dict[str, tuple[np.ndarray, np.ndarray | None]]
    event: dict[str, Any] = field(default_factory=dict)


class _Mailbox:
    """What one subscriber has not taken yet; emptied on its loop."""

    def __init__(self, callback: Callable[[Any], None], loop: asyncio.AbstractEventLoop | None):
        self.callback = callback
        self.loop = loop
        self.items: deque[Any] = deque()
        self.lines = 0
        self.scheduled = False
        self.lock = threading.Lock()
        self.active = True
        #: Not yet handed the run's latest frame (done on the network thread, in order).
        self.fresh = True

    def put(self, item: Any, *, newest_wins: bool = False) -> None:
        if self.loop is None:
            self._call(item)
            return
        with self.lock:
            if newest_wins:
                self.items = deque(i for i in self.items if not isinstance(i, RemoteFrame))
            self.items.append(item)
            if isinstance(item, ScanLine):
                self.lines += 1
                if self.lines > MAILBOX_LINES:
                    self._drop_oldest_line()
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.flush)
        except RuntimeError:  # the subscriber's loop is closed
            self.active = False

    def _drop_oldest_line(self) -> None:
        for i, item in enumerate(self.items):
            if isinstance(item, ScanLine):
                del self.items[i]
                self.lines -= 1
                return

    def flush(self) -> None:
        with self.lock:
            items, self.items = self.items, deque()
            self.lines = 0
            self.scheduled = False
        for item in items:
            if not self.active:
                return
            self._call(item)

    def _call(self, item: Any) -> None:
        try:
            self.callback(item)
        # A broken subscriber is dropped, as Session drops one; the others go on.
        except Exception:  # noqa: BLE001
            _log.exception("watcher subscriber %r failed; unsubscribed", self.callback)
            self.active = False


class RemoteLink:
    """A run on another machine, as a :class:`~probepilot.link.RunLink` (see the module
    docstring). ``start()``, use, ``close()``.

    :param address: the run's ``--publish`` address, ``tcp://HOST:PORT``.
    :param keys: CurveZMQ client keys, when the run uses keys.
    :param timeout: how long ``start`` waits for the run, and a command for its reply.
    :param window: frames in flight (more hides latency on a slow link; memory is one frame
        each).
    """

    def __init__(
        self,
        address: str,
        *,
        keys: ClientKeys | None = None,
        timeout: float = 10.0,
        window: int = 2,
        heartbeat: float = 1.0,
    ) -> None:
        self.address = check_address(address, what="address")
        self.keys = keys
        self.timeout = timeout
        self.window = window
        self.heartbeat = heartbeat
        #: Set when the run's ``run.finished`` event has been delivered; ``outcome`` says how.
        self.finished = threading.Event()
        self.outcome: str | None = None
        #: Index of the last frame received, and of the last frame the run persisted.
        self.frames_received = 0
        self.last_frame_persisted = 0
        #: Events the run had already dropped from its replay ring when asked (never expected).
        self.lost_events = 0
        self.malformed = 0
        self.connected = threading.Event()
        self._snapshot: dict[str, Any] = {}
        self._instance = ""
        self._next_seq = 1
        self._early: dict[int, dict[str, Any]] = {}
        self._announced = 0  # the last seq the run said it had published
        self._replaying_since = 0.0
        self._rows: dict[int, set[int]] = {}
        self._last_area: tuple[Any, ScanArea] = (None, ScanArea((0.0, 0.0), (1.0, 1.0), 1, 1))
        self._mailboxes: list[_Mailbox] = []
        self._frame_mailboxes: list[_Mailbox] = []
        self._latest: RemoteFrame | None = None  # the newest frame, for late subscribers
        self._lock = threading.Lock()
        self._outbox: deque[tuple[list[Any], concurrent.futures.Future[str] | None, int]] = deque()
        self._replies: dict[int, concurrent.futures.Future[str]] = {}
        self._ids = itertools.count(1)
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="remote-link", daemon=True)
        self._context: zmq.Context[Any] = zmq.Context()
        self._wake_address = f"inproc://remote-link-{id(self)}"
        self._wake_in = self._context.socket(zmq.PAIR)
        self._wake_in.bind(self._wake_address)
        self._wake_out = self._context.socket(zmq.PAIR)
        self._wake_out.connect(self._wake_address)
        self._wake_lock = threading.Lock()

    # -- RunLink -------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` with every event and live scan line, on the event loop this is
        called from (or on the network thread outside any loop: then it must be quick)."""
        return self._add(self._mailboxes, callback)

    def subscribe_frames(self, callback: Callable[[RemoteFrame], None]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`RemoteFrame` (newest wins if it falls behind)."""
        return self._add(self._frame_mailboxes, callback)

    def _add(self, boxes: list[_Mailbox], callback: Callable[[Any], None]) -> Callable[[], None]:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        box = _Mailbox(callback, loop)
        with self._lock:
            boxes.append(box)
        # A subscriber that comes after the latest frame is handed it by the network thread
        # (so it can never overtake a newer one): a dashboard opened on a running link shows
        # the current image at once.
        if self._thread.is_alive():
            self._wake()

        def unsubscribe() -> None:
            box.active = False
            with self._lock, contextlib.suppress(ValueError):
                boxes.remove(box)

        return unsubscribe

    def snapshot(self) -> dict[str, Any]:
        """The run's latest state (refreshed every heartbeat and by every state event)."""
        with self._lock:
            return dict(self._snapshot)

    async def command(self, name: str, /, **args: Any) -> str:
        """Send an operator command to the run; its one-line reply.

        :raises ProbepilotError: the run refused it (as the run raised it).
        :raises RemoteError: no reply within ``timeout``.
        """
        future = self.post(name, **args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise RemoteError(
                f"{name}: no reply from the run at {self.address} within {self.timeout:g} s"
            ) from None

    def post(self, name: str, /, **args: Any) -> concurrent.futures.Future[str]:
        """:meth:`command` from any thread, without waiting."""
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        cid = next(self._ids)
        try:
            frames = wire.encode("command", {"name": name, "args": args}, cid=cid)
        except ProtocolError as exc:
            future.set_exception(exc)
            return future
        self._queue(frames, future, cid)
        return future

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start the network thread and wait (up to ``timeout``) for the run's welcome;
        returns the snapshot.

        :raises RemoteError: no run answered within ``timeout``.
        """
        keep_frame_buffers()  # frames arrive in fresh 1 MiB buffers: keep their pages mapped
        self._thread.start()
        if not self.connected.wait(self.timeout):
            self.close()
            raise RemoteError(
                f"no run answers at {self.address} within {self.timeout:g} s",
                hint="is `probepilot run --publish` running there? With CurveZMQ keys, give "
                "--server-key and --client-key",
            )
        return self.snapshot()

    def close(self) -> None:
        """Say goodbye and stop the network thread; idempotent."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        if not self._thread.is_alive():
            with self._wake_lock:
                self._wake_in.close(linger=0)
                self._wake_out.close(linger=0)
            self._context.term()

    def __enter__(self) -> RemoteLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until the run has finished and its last frame has arrived (or ``timeout``)."""
        if not self.finished.wait(timeout):
            return False
        deadline = time.monotonic() + 3.0
        while self.frames_received < self.last_frame_persisted and time.monotonic() < deadline:
            time.sleep(0.01)
        return True

    # -- the network thread ------------------------------------------------------------------

    def _queue(
        self, frames: list[Any], future: concurrent.futures.Future[str] | None, cid: int
    ) -> None:
        with self._lock:
            self._outbox.append((frames, future, cid))
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(zmq.ZMQError):
            self._wake_out.send(b"", zmq.NOBLOCK)

    def _send(self, sock: zmq.Socket[Any], type: str, body: dict[str, Any], cid: int = 0) -> None:
        self._seq += 1
        frames = wire.encode(type, body, seq=self._seq, cid=cid)
        with contextlib.suppress(zmq.Again):
            send_parts(sock, frames)

    def _main(self) -> None:
        dealer = self._context.socket(zmq.DEALER)
        # A watcher often waits for a run to start: it keeps knocking every 250 ms, so it is
        # in from the run's first frame.
        configure(dealer, sndhwm=1_000, rcvhwm=1_000, reconnect_max_ms=250)
        sub = self._context.socket(zmq.SUB)
        configure(sub, sndhwm=100, rcvhwm=10_000, reconnect_max_ms=250)
        if self.keys is not None:
            apply_client(dealer, self.keys)
            apply_client(sub, self.keys)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        dealer.connect(self.address)
        poller = zmq.Poller()
        for sock in (dealer, sub, self._wake_in):
            poller.register(sock, zmq.POLLIN)
        handlers = ((dealer, self._on_control), (sub, self._on_stream))
        subscribed_to = ""
        hello_at = 0.0
        ping_at = time.monotonic() + self.heartbeat
        heard = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not self.connected.is_set() and now >= hello_at:
                    self._send(dealer, "hello", {"window": self.window, "probepilot": __version__})
                    hello_at = now + 1.0
                if now >= ping_at:
                    self._send(dealer, "ping", {"credit": self.window})
                    ping_at = now + self.heartbeat
                    if self.connected.is_set() and now - heard > max(5 * self.heartbeat, 5.0):
                        _log.warning("lost contact with the run at %s", self.address)
                        self.connected.clear()
                self._maybe_replay(dealer)
                events = dict(poller.poll(int(self.heartbeat * 500)))
                if self._wake_in in events:
                    with contextlib.suppress(zmq.Again):
                        while True:
                            self._wake_in.recv(zmq.NOBLOCK)
                    self._flush_outbox(dealer)
                    self._greet()
                for sock, handle in handlers:
                    if sock not in events:
                        continue
                    for i in range(1_000):
                        # The poll has just seen a message: take it without asking first. Then
                        # ask (several times cheaper than the exception of an empty recv).
                        if i and not sock.getsockopt(_EVENTS) & _POLLIN:
                            break
                        try:
                            frames = recv_parts(sock)
                        except zmq.Again:
                            break
                        heard = time.monotonic()
                        stream = handle(frames, dealer)
                        if stream and stream != subscribed_to:
                            if subscribed_to:
                                sub.disconnect(subscribed_to)
                            sub.connect(stream)
                            subscribed_to = stream
        finally:
            with contextlib.suppress(zmq.ZMQError):
                dealer.send_multipart(wire.encode("bye", {}), zmq.NOBLOCK)
            dealer.close(linger=100)
            sub.close(linger=0)
            with self._lock:
                replies = list(self._replies.values())
                self._replies.clear()
            for future in replies:
                if not future.done():
                    future.set_exception(RemoteError(f"the link to {self.address} was closed"))

    def _flush_outbox(self, dealer: zmq.Socket[Any]) -> None:
        while True:
            with self._lock:
                if not self._outbox:
                    return
                frames, future, cid = self._outbox.popleft()
                if future is not None:
                    self._replies[cid] = future
            try:
                dealer.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                if future is not None:
                    with self._lock:
                        self._replies.pop(cid, None)
                    future.set_exception(RemoteError(f"cannot reach the run at {self.address}"))

    # -- control messages --------------------------------------------------------------------

    def _on_control(self, frames: list[zmq.Frame], dealer: zmq.Socket[Any]) -> str:
        # Only a frame carries arrays on this socket: its credit goes back before anything
        # else, decoding included, so the next frame is on its way while this one is handled
        # (one that turns out malformed gives back the credit the run spent on it, too).
        acked = len(frames) > 1
        if acked:
            self._send(dealer, "ack", {})
        try:
            message = wire.decode(frames, expect=CONTROL_TYPES)
            return self._control(message, dealer, acked=acked)
        except ProtocolError as exc:
            self.malformed += 1
            _log.warning("malformed message from the run at %s: %s", self.address, exc)
            return ""

    def _control(self, message: wire.Message, dealer: zmq.Socket[Any], *, acked: bool) -> str:
        kind = message.type
        if kind == "welcome":
            instance = wire.field_of(message, "instance", str)
            stream = wire.field_of(message, "stream", int)
            seq = wire.field_of(message, "seq", int)
            snapshot = wire.field_of(message, "snapshot", dict)
            if instance != self._instance:  # a new run (or the first): start from its snapshot
                self._instance = instance
                self._next_seq = seq + 1
                self._announced = seq
                self._early.clear()
                self._rows.clear()
                self.frames_received = 0
            with self._lock:
                self._snapshot = snapshot
            self.connected.set()
            self._replaying_since = 0.0
            # Events between the snapshot and our subscription may be lost: ask for them.
            self._send(dealer, "replay", {"from": self._next_seq})
            self._replaying_since = time.monotonic()
            return with_port(self.address, stream)
        if kind == "frame":
            if not acked:  # a frame without arrays
                self._send(dealer, "ack", {})
            index = message.body.get("index")
            if type(index) is int and index > self.frames_received:
                self._frame(message, index)
        elif kind == "events":
            self._replayed(message)
        elif kind in ("reply", "error"):
            with self._lock:
                future = self._replies.pop(message.cid, None)
            if future is not None and not future.done():
                if kind == "reply":
                    future.set_result(str(message.body.get("text", "")))
                else:
                    future.set_exception(codec.error_from_wire(message.body, self.address))
        return ""

    def _replayed(self, message: wire.Message) -> None:
        batch = wire.field_of(message, "events", list)
        oldest = wire.field_of(message, "oldest", int)
        if oldest > self._next_seq:
            self.lost_events += oldest - self._next_seq
            _log.warning("%d events are no longer held by the run", oldest - self._next_seq)
            self._next_seq = oldest
            for seq in [s for s in self._early if s < oldest]:
                del self._early[seq]
        for body in batch:
            if isinstance(body, dict):
                self._event(body)
        if message.body.get("last", True):
            self._replaying_since = 0.0

    def _maybe_replay(self, dealer: zmq.Socket[Any]) -> None:
        """Ask for missing events when later ones are waiting (and no replay is under way,
        or the last one went unanswered for 2 s)."""
        gap = self._early or self._announced >= self._next_seq
        if not gap or not self.connected.is_set():
            return
        if self._replaying_since and time.monotonic() - self._replaying_since < 2.0:
            return
        self._send(dealer, "replay", {"from": self._next_seq})
        self._replaying_since = time.monotonic()

    # -- stream messages ---------------------------------------------------------------------

    def _on_stream(self, frames: list[zmq.Frame], dealer: zmq.Socket[Any]) -> str:
        if len(frames) < 2:
            self.malformed += 1
            return ""
        try:
            message = wire.decode(frames[1:], expect=STREAM_TYPES)
            if message.type == "event":
                self._event(message.body)
            elif message.type == "line":
                self._line(message)
            else:
                snapshot = wire.field_of(message, "snapshot", dict)
                with self._lock:
                    self._snapshot = snapshot
                self._announced = max(self._announced, wire.field_of(message, "seq", int))
        except ProtocolError as exc:
            self.malformed += 1
            _log.warning("malformed stream message from %s: %s", self.address, exc)
        return ""

    def _event(self, body: dict[str, Any]) -> None:
        seq = body.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < self._next_seq:
            return  # a duplicate (stream and replay overlap) or malformed
        self._early[seq] = body
        while self._next_seq in self._early:
            item = self._early.pop(self._next_seq)
            self._next_seq += 1
            self._deliver_event(item)

    def _deliver_event(self, body: dict[str, Any]) -> None:
        kind, data, moment = body.get("type"), body.get("data"), body.get("time")
        if not isinstance(kind, str) or not isinstance(data, dict):
            self.malformed += 1
            return
        event = Event(
            type=kind,
            seq=int(body["seq"]),
            data=_rebuild(data),
            time=float(moment) if isinstance(moment, int | float) else 0.0,
        )
        if kind == "frame.persisted" and isinstance(data.get("index"), int):
            self.last_frame_persisted = max(self.last_frame_persisted, data["index"])
        if kind == "session.state" and isinstance(data.get("state"), str):
            with self._lock:
                self._snapshot["state"] = data["state"]
        for box in self._boxes(self._mailboxes):
            box.put(event)
        if kind == RUN_FINISHED:
            outcome = data.get("outcome")
            self.outcome = outcome if isinstance(outcome, str) else "finished"
            self.finished.set()

    def _line(self, message: wire.Message) -> None:
        body = message.body
        frame, row = wire.field_of(message, "frame", int), wire.field_of(message, "row", int)
        if frame <= self.frames_received:
            return  # the whole frame overtook its lines (another socket): already delivered
        line = ScanLine(
            frame,
            row,
            wire.field_of(message, "lines", int),
            wire.field_of(message, "pixels", int),
            codec.from_wire(body.get("area"), ScanArea, "line area"),
            _arrays(body.get("forward"), "line forward"),
            _arrays(body.get("backward"), "line backward"),
        )
        seen = self._rows.setdefault(frame, set())
        seen.add(row)
        for old in [f for f in self._rows if f < frame - 1]:
            del self._rows[old]
        for box in self._boxes(self._mailboxes):
            box.put(line)

    def _frame(self, message: wire.Message, index: int) -> None:
        body = message.body
        area = self._area(body.get("area"))
        raw = body.get("channels")
        if type(raw) is not dict:
            raise ProtocolError(f"'frame' message: 'channels' is {raw!r:.40}, expected dict")
        channels: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        shape = (area.lines, area.pixels)
        for name, pair in raw.items():
            if type(pair) is not dict:
                raise ProtocolError(f"frame channel {name!r} is not a map")
            forward, backward = pair.get("forward"), pair.get("backward")
            if type(forward) is not np.ndarray or forward.shape != shape:
                raise ProtocolError(f"frame channel {name!r}: no forward array of shape {shape}")
            if backward is not None and (
                type(backward) is not np.ndarray or backward.shape != shape
            ):
                raise ProtocolError(f"frame channel {name!r}: backward is not of shape {shape}")
            channels[name] = (forward, backward)
        lines_done = body.get("lines_done", area.lines)
        lines_done = lines_done if type(lines_done) is int else area.lines
        event = body.get("event")
        frame = RemoteFrame(
            index,
            area,
            lines_done,
            bool(body.get("complete", False)),
            channels,
            event if type(event) is dict else {},
        )
        self.frames_received = max(self.frames_received, index)
        # If the line stream missed rows (dropped, or scanned before we attached), the whole
        # frame is handed over again as lines, in order, so a live view redraws it complete.
        seen = self._rows.pop(index, None)
        boxes = self._boxes(self._mailboxes)
        if boxes:
            rows = range(min(lines_done, area.lines))
            if seen is not None and all(r in seen for r in rows):
                rows = range(0)
            for row in rows:
                line = ScanLine(
                    index,
                    row,
                    area.lines,
                    area.pixels,
                    area,
                    {n: f[row] for n, (f, _) in channels.items()},
                    {n: b[row] for n, (_, b) in channels.items() if b is not None},
                )
                for box in boxes:
                    box.put(line)
        for box in boxes:
            box.fresh = False
        self._latest = frame
        for box in self._boxes(self._frame_mailboxes):
            box.fresh = False
            box.put(frame, newest_wins=True)

    def _greet(self) -> None:
        """Hand new subscribers the latest frame (as scan lines to those of :meth:`subscribe`)."""
        frame = self._latest
        for box in self._boxes(self._frame_mailboxes):
            if box.fresh:
                box.fresh = False
                if frame is not None:
                    box.put(frame, newest_wins=True)
        boxes = [b for b in self._boxes(self._mailboxes) if b.fresh]
        for box in boxes:
            box.fresh = False
        if frame is None or not boxes:
            return
        area = frame.area
        for row in range(min(frame.lines_done, area.lines)):
            line = ScanLine(
                frame.index,
                row,
                area.lines,
                area.pixels,
                area,
                {n: f[row] for n, (f, _) in frame.channels.items()},
                {n: b[row] for n, (_, b) in frame.channels.items() if b is not None},
            )
            for box in boxes:
                box.put(line)

    def _area(self, value: Any) -> ScanArea:
        """The frame's area; the last one is kept, as it rarely changes from frame to frame."""
        if value != self._last_area[0]:
            self._last_area = (value, codec.from_wire(value, ScanArea, "frame area"))
        return self._last_area[1]

    def _boxes(self, boxes: list[_Mailbox]) -> list[_Mailbox]:
        with self._lock:
            return [b for b in boxes if b.active]


#: Replies a one-shot command may meet before its own (a run answers nothing else to it).
_COMMAND_REPLIES = frozenset({"reply", "error"})


def send_command(
    address: str,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    keys: ClientKeys | None = None,
    timeout: float = 10.0,
) -> str:
    """Send one operator command to the run published at ``address`` and return its one-line
    reply: what ``probepilot send`` does, without a dashboard, a subscription or any frame.

    The command is sent once (operator commands are not idempotent) over the run's command
    socket, as :meth:`RemoteLink.command` sends it.

    :raises ProbepilotError: the run refused it, as the run raised it (an unknown command or
        policy, bad arguments).
    :raises RemoteError: no reply within ``timeout`` (no run there, or, with CurveZMQ, keys the
        run does not accept: a refused handshake is silent).
    """
    address = check_address(address, what="address")
    frames = wire.encode("command", {"name": name, "args": dict(args or {})}, seq=1, cid=1)
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        configure(sock, sndhwm=10, rcvhwm=100, reconnect_max_ms=250)
        if keys is not None:
            apply_client(sock, keys)
        sock.connect(address)
        send_parts(sock, frames)  # queued until the connection is up (within the timeout)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                continue
            message = wire.decode(recv_parts(sock), expect=_COMMAND_REPLIES)
            if message.cid != 1:
                continue
            if message.type == "error":
                raise codec.error_from_wire(message.body, address)
            return str(message.body.get("text", ""))
        hint = "is `probepilot run --publish` running there?"
        if keys is not None:
            hint += " Is this client's key on the run's allow-list?"
        raise RemoteError(
            f"{name}: no reply from the run at {address} within {timeout:g} s", hint=hint
        )
    except zmq.ZMQError as exc:
        raise RemoteError(f"{name}: cannot reach the run at {address}: {exc}") from None
    finally:
        sock.close(linger=0)
        context.term()


def _rebuild(data: dict[str, Any]) -> dict[str, Any]:
    """Event data as the run had it: actions and findings as their dataclasses again (they
    travel as the journal writes them, plain maps); left plain if they do not fit."""
    out = dict(data)
    with contextlib.suppress(ProtocolError):
        if isinstance(out.get("action"), dict):
            out["action"] = codec.action_from_plain(out["action"])
    findings = out.get("findings")
    if isinstance(findings, list):
        with contextlib.suppress(ProtocolError):
            out["findings"] = [codec.finding_from_plain(f) for f in findings]
    return out


def _arrays(value: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or not all(isinstance(v, np.ndarray) for v in value.values()):
        raise ProtocolError(f"{where}: not a map of arrays")
    return dict(value)
