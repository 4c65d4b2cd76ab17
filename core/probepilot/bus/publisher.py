"""A run's event stream for watchers on other machines (``probepilot run --publish ADDR``).

Two sockets, on the run's own event loop (everything they serve is the run's, so no locks):

- **PUB** at port + 1: every journaled event (``event``, with the journal's ``seq``), every
  live scan line (``line``) and, every heartbeat, the run's state (``state``: the snapshot and
  the last ``seq``). Its high-water mark is set, so a watcher that cannot keep up loses
  messages instead of slowing the run; the journal, which is local, loses nothing.
- **ROUTER** at the address itself, in the manner of ZeroMQ's "Clone" pattern: ``hello`` is
  answered with a ``welcome`` holding the snapshot, the ``seq`` it reflects and the stream's
  port, so a watcher that attaches late starts from the current state; ``replay`` returns
  events it missed (gaps in ``seq``: a slow joiner's first messages, or high-water-mark
  drops) from a ring of the last ``ring`` events; ``command`` carries out an operator command
  and answers ``reply`` or ``error``; ``ping``/``pong`` keep both sides aware of each other.

Frames go over the ROUTER too, each watcher with its own credit (``window`` frames in flight,
one back per ``ack``): a watcher that keeps up receives every frame; one that falls behind
is sent the newest frame when it has credit again, never a queue of stale ones (newest frame
wins), and costs the run nothing. A frame is assembled from the run's scan lines as they come
and sent when the journal records it (``frame.persisted``), as float32 (what a display needs;
the run folder keeps the full data). A new watcher is sent the latest frame at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zmq

from probepilot import events as ev
from probepilot.bus import codec, wire
from probepilot.bus.keys import Authenticator, ServerKeys, apply_server
from probepilot.bus.sockets import (
    LoopSocket,
    bind,
    bind_address,
    companion,
    configure,
    port_of,
)
from probepilot.errors import ProbepilotError, ProtocolError
from probepilot.events import Event
from probepilot.store.journal import plain

_log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "tcp://127.0.0.1:5580"
#: Message types a publisher accepts from watchers.
WATCHER_TYPES = frozenset({"hello", "ack", "replay", "command", "ping", "bye"})
TOPIC_EVENT, TOPIC_LINE, TOPIC_STATE = b"ev", b"ln", b"st"
#: Events per ``events`` message of a replay.
REPLAY_BATCH = 500
#: Most frames a watcher may have in flight.
MAX_WINDOW = 16


class Published(Protocol):
    """What the publisher needs of a run: a :class:`~probepilot.link.RunLink`."""

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...

    def snapshot(self) -> dict[str, Any]: ...

    async def command(self, name: str, /, **args: Any) -> str: ...


@dataclass
class _Watcher:
    identity: bytes
    last_seen: float
    window: int
    credit: int
    sent: int = 0  # index of the last frame sent
    behind: bool = False  # a newer frame waits for credit


class _FrameBuilder:
    """Rows of the frame being scanned, from the live scan lines, as float32."""

    def __init__(self) -> None:
        self.index = 0
        self.area: Any = None
        self.channels: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, line: Any) -> None:
        if line.frame != self.index or line.row == 0:
            self.index, self.area, self.channels = line.frame, line.area, {}
        for name, data in line.forward.items():
            if name not in self.channels:
                shape = (line.lines, line.pixels)
                self.channels[name] = (
                    np.full(shape, np.nan, np.float32),
                    np.full(shape, np.nan, np.float32),
                )
            forward, backward = self.channels[name]
            if 0 <= line.row < line.lines and np.shape(data) == (line.pixels,):
                forward[line.row] = data
                if name in line.backward:
                    backward[line.row] = line.backward[name]


class StreamPublisher:
    """Publishes one run (see the module docstring). ``await start(run)`` on the run's loop,
    ``await close()`` when it has ended.

    :param keys: CurveZMQ server keys (only allow-listed watchers get in), or None.
    :param window: frames a watcher may have in flight (its credit).
    :param ring: events kept for ``replay``.
    :param heartbeat: seconds between ``state`` messages.
    :param client_timeout: a watcher silent this long is forgotten (its credit freed).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        keys: ServerKeys | None = None,
        window: int = 2,
        ring: int = 10_000,
        heartbeat: float = 1.0,
        client_timeout: float = 10.0,
    ) -> None:
        self.requested = address
        self.keys = keys
        self.window = max(1, min(window, MAX_WINDOW))
        self.heartbeat = heartbeat
        self.client_timeout = client_timeout
        self.instance = secrets.token_hex(8)
        self.address = ""
        self.stream_address = ""
        self.watchers: dict[bytes, _Watcher] = {}
        self.malformed = 0
        self._ring: deque[dict[str, Any]] = deque(maxlen=ring)
        self._last_seq = 0
        self._seq = 0
        self._run: Published | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._builder = _FrameBuilder()
        self._frame: list[Any] | None = None  # encoded frames of the latest frame message
        self._frame_index = 0
        self._context: zmq.Context[Any] | None = None
        self._auth: Authenticator | None = None
        self._router: LoopSocket | None = None
        self._pub: LoopSocket | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Task[Any]] = set()
        self._demand: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, run: Published | None = None) -> None:
        """Bind both sockets and, with ``run``, start publishing it."""
        loop = asyncio.get_running_loop()
        self._demand = asyncio.Event()
        context: zmq.Context[Any] = zmq.Context()
        self._context = context
        try:
            if self.keys is not None:
                self._auth = Authenticator(context, self.keys)
            router = context.socket(zmq.ROUTER)
            # Frames are bounded by the credit; the mark only guards against a flood of replies.
            configure(router, sndhwm=1_000, rcvhwm=1_000)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            pub = context.socket(zmq.PUB)
            configure(pub, sndhwm=10_000, rcvhwm=100, linger_ms=1_000)
            if self.keys is not None:
                apply_server(router, self.keys)
                apply_server(pub, self.keys)
            self._router = LoopSocket(router, loop, self._on_message)
            self._pub = LoopSocket(pub, loop, None)
            self.address = bind(router, bind_address(self.requested))
            self.stream_address = bind(pub, companion(self.requested))
        except BaseException:
            self._close_sockets()
            raise
        self._ticker = loop.create_task(self._tick())
        if run is not None:
            self.attach(run)

    def attach(self, run: Published) -> None:
        """Publish ``run``'s events and lines from now on."""
        self._run = run
        self._unsubscribe = run.subscribe(self.publish)

    async def close(self, drain: float = 2.0) -> None:
        """Stop publishing; first give watchers up to ``drain`` seconds to take the last
        frame, and the PUB socket a second to flush the last events."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        deadline = time.monotonic() + drain
        # Polled: "caught up" is a condition over every watcher's credit, not one event.
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            w.behind or w.credit < w.window for w in self.watchers.values()
        ):
            await asyncio.sleep(0.01)
        self.publish_state()
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self._chores):
            task.cancel()
        self._close_sockets()

    def _close_sockets(self) -> None:
        if self._router is not None:
            self._router.close()
        if self._pub is not None:
            self._pub.close(linger_ms=1_000)
        if self._auth is not None:
            self._auth.stop()
        if self._context is not None:
            self._context.term()
            self._context = None

    async def __aenter__(self) -> StreamPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- publishing (on the run's loop, from the run's subscriber callback) -----------------

    def _encode(self, type: str, body: dict[str, Any], cid: int = 0) -> list[Any]:
        self._seq += 1
        return wire.encode(type, body, seq=self._seq, cid=cid)

    def publish(self, item: Any) -> None:
        """The run's subscriber: an :class:`~probepilot.events.Event` or a live
        :class:`~probepilot.session.ScanLine`. Never blocks."""
        if isinstance(item, Event):
            self._event(item)
        elif hasattr(item, "row") and hasattr(item, "forward"):
            self._line(item)

    def _event(self, event: Event) -> None:
        try:
            data = plain(event.data)
        except ValueError as exc:
            data = {"unpublishable": str(exc)}
        body = {"type": event.type, "seq": event.seq, "time": event.time, "data": data}
        self._ring.append(body)
        self._last_seq = max(self._last_seq, event.seq)
        if self._pub is not None:
            self._pub.send([TOPIC_EVENT, *self._encode("event", body)])
        if event.type == ev.FRAME_PERSISTED:
            self._frame_persisted(event, data)

    def _line(self, line: Any) -> None:
        self._builder.add(line)
        if self._pub is None:
            return
        body = {
            "frame": line.frame,
            "row": line.row,
            "lines": line.lines,
            "pixels": line.pixels,
            "area": codec.to_wire(line.area),
            "forward": {k: np.asarray(v, np.float32) for k, v in line.forward.items()},
            "backward": {k: np.asarray(v, np.float32) for k, v in line.backward.items()},
        }
        self._pub.send([TOPIC_LINE, *self._encode("line", body)])

    def _frame_persisted(self, event: Event, data: dict[str, Any]) -> None:
        builder = self._builder
        index = data.get("index")
        if not isinstance(index, int) or builder.index != index or not builder.channels:
            return  # no lines seen for this frame (a driver that reported none)
        self.publish_frame(
            {
                "index": index,
                "area": codec.to_wire(builder.area),
                "lines_done": data.get("lines_done", 0),
                "complete": bool(data.get("complete", False)),
                "event": data,
                "channels": {
                    name: {"forward": fwd, "backward": bwd}
                    for name, (fwd, bwd) in builder.channels.items()
                },
            }
        )
        self._builder = _FrameBuilder()

    def publish_frame(self, body: dict[str, Any]) -> None:
        """Offer a frame to every watcher: sent now to those with credit, kept as the newest
        for the others. ``body`` holds ``index`` (int, increasing), ``area`` and ``channels``
        ({name: {"forward": array, "backward": array}})."""
        header, *arrays = self._encode("frame", body)
        # Each array becomes one ZeroMQ message now, sharing the array's memory: sending it to
        # a watcher, now or when its credit comes back, only adds a reference (zero copy, and
        # no per-send bookkeeping on the way from an ack to the frame it lets out).
        self._frame = [header, *(zmq.Frame(a, copy=None) for a in arrays)]
        self._frame_index = int(body["index"])
        for watcher in self.watchers.values():
            self._offer(watcher)
        self._update_demand()

    @property
    def wanted(self) -> bool:
        """True when a watcher has been sent the newest frame (see :meth:`demand`)."""
        return self._demand is not None and self._demand.is_set()

    async def demand(self) -> None:
        """Wait until a watcher has been sent the newest frame, so that a new one would be the
        next it gets. A run never waits for this; a producer that can make frames on demand
        (a preview, a benchmark) may: it then keeps one frame ready, which goes out the moment
        the watcher's credit comes back (from the handler of its ``ack``, as a queue would
        send it), and never makes a frame that no one gets."""
        assert self._demand is not None, "start() first"
        await self._demand.wait()

    def _update_demand(self) -> None:
        if self._demand is None:
            return
        index = self._frame_index
        for watcher in self.watchers.values():
            if watcher.sent >= index:
                self._demand.set()
                return
        self._demand.clear()

    def _offer(self, watcher: _Watcher) -> None:
        if self._frame is None or watcher.sent >= self._frame_index:
            watcher.behind = False
            return
        if watcher.credit <= 0:
            watcher.behind = True
            return
        assert self._router is not None
        # Book first: whatever the send leads to must see the frame as sent.
        credit, sent = watcher.credit, watcher.sent
        watcher.credit, watcher.sent, watcher.behind = credit - 1, self._frame_index, False
        if not self._router.send([watcher.identity, *self._frame]):
            watcher.credit, watcher.sent, watcher.behind = credit, sent, True

    def publish_state(self) -> None:
        """Send the run's snapshot on the stream (every heartbeat, and at the end)."""
        if self._pub is not None and not self._pub.closed:
            self._pub.send([TOPIC_STATE, *self._encode("state", self._state())])

    def _state(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = {}
        if self._run is not None:
            try:
                snapshot = plain(self._run.snapshot())
            except (ValueError, ProbepilotError) as exc:
                snapshot = {"error": str(exc)}
        return {
            "snapshot": snapshot,
            "seq": self._last_seq,
            "instance": self.instance,
            "frame": self._frame_index,
        }

    # -- requests from watchers --------------------------------------------------------------

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        if len(frames) < 2:
            self.malformed += 1
            return
        identity = frames[0].bytes
        try:
            message = wire.decode(frames[1:], expect=WATCHER_TYPES)
            self._dispatch(identity, message)
        except ProtocolError as exc:
            self.malformed += 1
            _log.warning("malformed message from a watcher: %s", exc)
            self._reply(identity, "error", 0, codec.error_to_wire(exc))

    def _reply(self, identity: bytes, type: str, cid: int, body: dict[str, Any]) -> None:
        if self._router is not None:
            self._router.send([identity, *self._encode(type, body, cid)])

    def _dispatch(self, identity: bytes, message: wire.Message) -> None:
        now = time.monotonic()
        watcher = self.watchers.get(identity)
        if message.type == "hello":
            window = message.body.get("window", self.window)
            window = window if isinstance(window, int) and not isinstance(window, bool) else 1
            window = max(1, min(window, MAX_WINDOW))
            old = self.watchers.get(identity)
            watcher = _Watcher(identity, now, window, window, sent=old.sent if old else 0)
            self.watchers[identity] = watcher
            stream = port_of(self.stream_address)
            self._reply(identity, "welcome", message.cid, {**self._state(), "stream": stream})
            self._offer(watcher)  # the current image, at once
            self._update_demand()
            return
        if watcher is not None:
            watcher.last_seen = now
        if message.type == "ack":
            if watcher is not None:
                watcher.credit = min(watcher.window, watcher.credit + 1)
                self._offer(watcher)
                self._update_demand()
        elif message.type == "ping":
            self._reply(identity, "pong", message.cid, {"instance": self.instance})
            credit = message.body.get("credit")
            if watcher is not None and isinstance(credit, int) and not isinstance(credit, bool):
                # The watcher acks every frame on arrival, so between frames all its credit is
                # free: resyncing it every heartbeat heals any credit a lost ack took.
                watcher.credit = max(watcher.credit, min(credit, watcher.window))
                self._offer(watcher)
                self._update_demand()
        elif message.type == "replay":
            self._replay(identity, message)
        elif message.type == "command":
            self._command(identity, message)
        elif message.type == "bye":
            self.watchers.pop(identity, None)

    def _replay(self, identity: bytes, message: wire.Message) -> None:
        first = wire.field_of(message, "from", int)
        events = [e for e in self._ring if e["seq"] >= first]
        oldest = self._ring[0]["seq"] if self._ring else self._last_seq + 1
        batches = [events[i : i + REPLAY_BATCH] for i in range(0, len(events), REPLAY_BATCH)]
        for i, batch in enumerate(batches or [[]]):
            body = {"events": batch, "oldest": oldest, "last": i == len(batches or [[]]) - 1}
            self._reply(identity, "events", message.cid, body)

    def _command(self, identity: bytes, message: wire.Message) -> None:
        name = wire.field_of(message, "name", str)
        args = wire.field_of(message, "args", dict)
        if self._run is None:
            raise ProtocolError("no run is attached to this publisher")
        run = self._run

        async def carry_out() -> None:
            try:
                text = await run.command(name, **args)
            except ProbepilotError as exc:
                self._reply(identity, "error", message.cid, codec.error_to_wire(exc))
            # Bad arguments (a missing voltage, a string where a number goes) surface as
            # these from the session's command handling: the watcher is told, the run is not
            # affected.
            except (KeyError, TypeError, ValueError) as exc:
                error = ProbepilotError(f"{name}: bad arguments: {type(exc).__name__}: {exc}")
                self._reply(identity, "error", message.cid, codec.error_to_wire(error))
            else:
                self._reply(identity, "reply", message.cid, {"text": str(text)})

        task = asyncio.get_running_loop().create_task(carry_out())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self.publish_state()
            for watcher in self.watchers.values():
                if watcher.behind:
                    self._offer(watcher)  # a send that failed earlier
            deadline = time.monotonic() - self.client_timeout
            for identity, watcher in list(self.watchers.items()):
                if watcher.last_seen < deadline:
                    del self.watchers[identity]


async def run_published(
    run: Any,
    address: str,
    *,
    keys: ServerKeys | None = None,
    announce: Callable[[str], None] | None = None,
) -> str:
    """Run ``run`` (a :class:`~probepilot.session.Session`) with its stream published at
    ``address``; returns its outcome. What ``probepilot run --publish`` does, for any runner
    (the headless one, a dashboard hosting the run)."""
    publisher = StreamPublisher(address, keys=keys)
    await publisher.start(run)
    if announce is not None:
        announce(
            f"publishing the run on {publisher.address} (stream {publisher.stream_address}); "
            f"watch it with: probepilot watch {publisher.address}"
        )
    try:
        outcome: str = await run.run()
    finally:
        with contextlib.suppress(ProbepilotError, OSError):
            await publisher.close()
    return outcome
