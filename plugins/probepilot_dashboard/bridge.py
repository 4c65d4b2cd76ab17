"""Between a run and the screen: the subscriber that never blocks, and what it keeps.

The run calls :class:`LinkBridge` for every event and every scanned line, on the run's own
thread and loop. The bridge only stores: events go to a queue, lines are written into the
buffers of the frame being scanned (newest frame wins: when a new frame starts, the previous one
is kept among the :attr:`LinkBridge.recent` frames and nothing waits for it to be drawn). The
dashboard drains the queue and draws the newest state on its own timer, so however slowly the
terminal draws, the run never waits for it.

No Textual here: the bridge is plain Python and numpy, safe to call from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probepilot import events as ev
from probepilot.events import Event


@dataclass
class LiveFrame:
    """The lines of one frame, as scanned so far (NaN where not scanned yet).

    ``number`` is the 1-based frame number (``frame.persisted``'s ``index``); ``rows_done`` the
    highest row scanned plus one; ``version`` grows with every line, so a view redraws only
    when something changed; ``complete`` is set once the frame is persisted.
    """

    number: int
    lines: int
    pixels: int
    size: tuple[float, float]
    forward: dict[str, np.ndarray] = field(default_factory=dict)
    backward: dict[str, np.ndarray] = field(default_factory=dict)
    rows_done: int = 0
    version: int = 0
    complete: bool = False
    persisted: Mapping[str, Any] | None = None

    def channel(self, name: str, direction: str = "forward") -> np.ndarray | None:
        """The buffer of ``name`` (or the first channel) in ``direction``; None if none."""
        buffers = self.backward if direction == "backward" else self.forward
        if name in buffers:
            return buffers[name]
        return next(iter(buffers.values()), None)

    def add(self, row: int, forward: Mapping[str, Any], backward: Mapping[str, Any]) -> None:
        for buffers, data in ((self.forward, forward), (self.backward, backward)):
            for name, line in data.items():
                buffer = buffers.get(name)
                if buffer is None:
                    buffer = buffers[name] = np.full((self.lines, self.pixels), np.nan)
                values = np.asarray(line, dtype=float)
                if 0 <= row < self.lines:
                    buffer[row, : min(values.size, self.pixels)] = values[: self.pixels]
        self.rows_done = max(self.rows_done, row + 1)
        self.version += 1


@dataclass(frozen=True)
class ScanView:
    """What a panel's ``on_scan`` receives: the frame being scanned and the recent ones."""

    current: LiveFrame | None
    recent: Mapping[int, LiveFrame]


class LinkBridge:
    """A :class:`~probepilot.link.RunLink` subscriber that only stores (thread-safe).

    :param keep: how many finished frames to keep for the history strip.
    :param clock: monotonic clock for :attr:`last_heard` (tests pass a fixed one).
    """

    def __init__(self, keep: int = 12, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._events: deque[Event] = deque()
        self._clock = clock
        self.keep = keep
        self.current: LiveFrame | None = None
        self.recent: OrderedDict[int, LiveFrame] = OrderedDict()
        self.lines_seen = 0
        self.events_seen = 0
        self.frames_seen = 0
        self.last_heard: float | None = None

    # -- called by the run (any thread); must never block ----------------------------------------

    def __call__(self, item: Any) -> None:
        if isinstance(item, Event):
            self._event(item)
        elif hasattr(item, "row") and hasattr(item, "forward"):
            self._line(item)

    def _event(self, event: Event) -> None:
        with self._lock:
            self.last_heard = self._clock()
            self.events_seen += 1
            self._events.append(event)
            if event.type == ev.FRAME_PERSISTED:
                self.frames_seen += 1
                number = int(event.data.get("index", 0))
                live = self.current
                if live is not None and live.number == number:
                    live.complete = True
                    live.persisted = dict(event.data)
                    live.version += 1
                    self._remember(live)

    def _line(self, line: Any) -> None:
        with self._lock:
            self.last_heard = self._clock()
            self.lines_seen += 1
            live = self.current
            restarted = live is not None and line.row == 0 and live.rows_done > 0
            if live is None or live.number != line.frame or restarted or live.complete:
                if live is not None and live.number != line.frame and live.rows_done:
                    self._remember(live)  # cut short (aborted, or its event not seen yet)
                area = getattr(line, "area", None)
                size = tuple(getattr(area, "size", (0.0, 0.0)))
                live = LiveFrame(int(line.frame), int(line.lines), int(line.pixels), size)  # type: ignore[arg-type]
                self.current = live
            live.add(int(line.row), line.forward, line.backward)

    def _remember(self, live: LiveFrame) -> None:
        self.recent[live.number] = live
        self.recent.move_to_end(live.number)
        while len(self.recent) > self.keep:
            self.recent.popitem(last=False)

    # -- called by the dashboard ------------------------------------------------------------------

    def drain(self, limit: int | None = None) -> list[Event]:
        """The events received since the last call, oldest first (at most ``limit``)."""
        out: list[Event] = []
        with self._lock:
            while self._events and (limit is None or len(out) < limit):
                out.append(self._events.popleft())
        return out

    def pending(self) -> int:
        """Events waiting to be drained."""
        return len(self._events)

    def view(self) -> ScanView:
        """The frame being scanned and the recent ones (shared, read-only)."""
        with self._lock:
            return ScanView(self.current, OrderedDict(self.recent))
