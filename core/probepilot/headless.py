"""``probepilot run --headless``: the run with a progress line per frame on stderr.

On a terminal the line is rewritten in place; in a log file (or CI) each frame is its own line.
Ctrl-C asks the session to stop (the frame in progress is aborted and kept as a partial frame);
a second Ctrl-C cancels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from probepilot import events as ev
from probepilot.config import Config
from probepilot.events import Event
from probepilot.plugins import PluginManager
from probepilot.session import ScanLine, Session

#: Where to publish a run: (address, CurveZMQ server keys or None).
Publish = tuple[str, Any]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


class ProgressLine:
    """Renders the session's figures after every analysed frame."""

    def __init__(self, session: Session, stream: IO[str], budget: str) -> None:
        self.session = session
        self.stream = stream
        self.budget = budget
        self.tty = stream.isatty()
        self.wall = time.monotonic()

    def __call__(self, item: Event | ScanLine) -> None:
        if isinstance(item, ScanLine) or item.type not in (ev.FRAME_ANALYSED, ev.DRIVER_ERROR):
            return
        if item.type == ev.DRIVER_ERROR:
            self._write(
                f"driver error during {item.data.get('operation')}: {item.data.get('message')}"
            )
            return
        s = self.session.stats
        good = f"{s.good_fraction:.0%}" if s.good_fraction is not None else "-"
        actions = ", ".join(f"{k} {n}" for k, n in sorted(s.actions.items()) if k != "scan")
        line = (
            f"frame {s.frames}{self.budget}  tip {s.tip_state:<8} good {good:>4}  "
            f"conditioning {s.conditioning}  policy {self.session.policy_name}  "
            f"instrument {_clock(s.instrument_time)}  wall {_clock(time.monotonic() - self.wall)}"
            + (f"  [{actions}]" if actions and not self.tty else "")
        )
        self._write(line, transient=True)

    def _write(self, text: str, *, transient: bool = False) -> None:
        if self.tty and transient:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def _run(session: Session, progress: ProgressLine, publish: Publish | None = None) -> str:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupts = 0
    pending: set[asyncio.Future[str]] = set()

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            progress._write("stopping: the frame in progress is aborted (Ctrl-C again: at once)")
            stopping = asyncio.ensure_future(session.command("stop", mode="abort"))
            pending.add(stopping)
            stopping.add_done_callback(pending.discard)
        elif task is not None:
            task.cancel()

    # Not available on Windows event loops or outside the main thread: Ctrl-C then cancels.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted)
    session.subscribe(progress)
    try:
        if publish is not None:
            from probepilot.bus.publisher import run_published

            address, keys = publish
            return await run_published(session, address, keys=keys, announce=progress._write)
        return await session.run()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


def run_headless(
    config: Config,
    manager: PluginManager,
    *,
    frames: int | None = None,
    duration: float | None = None,
    stream: IO[str] | None = None,
    publish: Publish | None = None,
) -> tuple[str, Path]:
    """Run a session to its end with a progress line; returns (outcome, run folder).

    ``publish``: (address, CurveZMQ server keys or None) to publish the run's event stream
    for watchers (``probepilot run --publish``; see :mod:`probepilot.bus.publisher`)."""
    session = Session(config, manager, frames=frames, duration=duration)
    n = session.max_frames
    budget = f"/{n}" if n is not None else ""
    if session.max_duration is not None:
        budget += f" (until {_clock(session.max_duration)} instrument time)"
    progress = ProgressLine(session, stream or sys.stderr, budget)
    try:
        outcome = asyncio.run(_run(session, progress, publish))
    finally:
        progress.close()
    return outcome, session.folder
