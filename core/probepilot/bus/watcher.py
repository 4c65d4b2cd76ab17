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
from probepilot.bus.keys import ClientKeys, apply_client
from probepilot.bus.sockets import check_address, configure, with_port
from probepilot.errors import ProtocolError, RemoteError
from probepilot.events import RUN_FINISHED, Event
from probepilot.model import ScanArea
from probepilot.session import ScanLine

_log = logging.getLogger(__name__)

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
        with contextlib.suppress(zmq.Again):
            sock.send_multipart(wire.encode(type, body, seq=self._seq, cid=cid), zmq.NOBLOCK)

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
                for sock, handle in ((dealer, self._on_control), (sub, self._on_stream)):
                    if sock not in events:
                        continue
                    for _ in range(1_000):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
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
        try:
            message = wire.decode(frames, expect=CONTROL_TYPES)
            return self._control(message, dealer)
        except ProtocolError as exc:
            self.malformed += 1
            _log.warning("malformed message from the run at %s: %s", self.address, exc)
            return ""

    def _control(self, message: wire.Message, dealer: zmq.Socket[Any]) -> str:
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
            self._send(dealer, "ack", {"index": message.body.get("index", 0)})
            index = message.body.get("index")
            if isinstance(index, int) and index > self.frames_received:
                self._frame(message)
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

    def _frame(self, message: wire.Message) -> None:
        body = message.body
        index = wire.field_of(message, "index", int)
        area = self._area(body.get("area"))
        raw = wire.field_of(message, "channels", dict)
        channels: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for name, pair in raw.items():
            if not isinstance(pair, dict):
                raise ProtocolError(f"frame channel {name!r} is not a map")
            forward, backward = pair.get("forward"), pair.get("backward")
            shape = (area.lines, area.pixels)
            if not isinstance(forward, np.ndarray) or forward.shape != shape:
                raise ProtocolError(f"frame channel {name!r}: no forward array of shape {shape}")
            if backward is not None and (
                not isinstance(backward, np.ndarray) or backward.shape != shape
            ):
                raise ProtocolError(f"frame channel {name!r}: backward is not of shape {shape}")
            channels[name] = (forward, backward)
        lines_done = body.get("lines_done", area.lines)
        lines_done = lines_done if isinstance(lines_done, int) else area.lines
        event = body.get("event")
        frame = RemoteFrame(
            index,
            area,
            lines_done,
            bool(body.get("complete", False)),
            channels,
            event if isinstance(event, dict) else {},
        )
        self.frames_received = max(self.frames_received, index)
        # If the line stream missed rows (dropped, or scanned before we attached), the whole
        # frame is handed over again as lines, in order, so a live view redraws it complete.
        seen = self._rows.pop(index, set())
        boxes = self._boxes(self._mailboxes)
        rows = range(min(lines_done, area.lines)) if boxes else range(0)
        if all(r in seen for r in rows):
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
        for box in self._boxes(self._frame_mailboxes):
            box.put(frame, newest_wins=True)

    def _area(self, value: Any) -> ScanArea:
        """The frame's area; the last one is kept, as it rarely changes from frame to frame."""
        if value != self._last_area[0]:
            self._last_area = (value, codec.from_wire(value, ScanArea, "frame area"))
        return self._last_area[1]

    def _boxes(self, boxes: list[_Mailbox]) -> list[_Mailbox]:
        with self._lock:
            return [b for b in boxes if b.active]


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
