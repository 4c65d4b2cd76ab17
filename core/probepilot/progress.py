"""Progress of long work (``probepilot train ...``): what a training loop reports, and a
renderer for a terminal or a log.

The training code stays free of any display: it takes an optional ``progress`` callable
(:data:`ProgressCallback`) and calls it with an :class:`Update` as it goes; reporting never
changes what is computed (no random numbers are drawn, nothing is reordered). The command
supplies the renderer, :class:`ProgressPrinter`:

- on a terminal, one live line per stage, redrawn in place (a bar, the count, the figures,
  elapsed time and ETA); each stage's last state stays on screen when the next begins;
- off a terminal (a pipe, a log file, CI), plain lines, one per completed step, at most about
  :attr:`ProgressPrinter.lines_per_stage` per stage (every step when a stage has fewer), and
  never a redraw.

Like the headless run's progress line (:mod:`probepilot.headless`) it writes plain text with
no dependency beyond the standard library.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO


@dataclass(frozen=True)
class Update:
    """Where one stage of long work stands.

    ``name`` is what is counted, as a person reads it with the count after it: ``"epoch"``
    (``epoch 3/20``), ``"generation"``, ``"simulating frames"``. ``done`` of ``total`` steps
    are complete; ``partial`` (0 to 1) is how far the next step has got, for a live display
    only (an update with ``partial > 0`` is a step in progress, with ``figures`` so far).
    ``figures`` are shown after the count in their order (numbers or ready-made text).
    ``stage`` groups the updates of one stage (default: ``name``); a new stage starts a new
    line and its own clock.
    """

    name: str
    done: int
    total: int
    figures: Mapping[str, float | int | str] = field(default_factory=dict)
    partial: float = 0.0
    stage: str = ""

    @property
    def key(self) -> str:
        return self.stage or self.name

    @property
    def fraction(self) -> float:
        """Fraction of the stage done (0 to 1), the step in progress included."""
        if self.total <= 0:
            return 1.0
        return min(1.0, (self.done + min(max(self.partial, 0.0), 1.0)) / self.total)

    @property
    def complete(self) -> bool:
        """A step has just completed (not a step in progress, not the start of a stage)."""
        return self.partial <= 0.0 and self.done > 0


#: What training functions accept as ``progress``.
ProgressCallback = Callable[[Update], None]


def clock(seconds: float) -> str:
    """``H:MM:SS`` (``-:--:--`` for an unknown time)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def figure(value: float | int | str) -> str:
    """A figure as shown: text as is, integers whole, other numbers to 4 significant digits
    (``-`` for nan)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return str(int(value))
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:#.4g}"


class ProgressPrinter:
    """Renders :class:`Update` s on ``stream``: live on a terminal, plain lines otherwise.

    Use it as the ``progress`` callable of a training function; :meth:`message` writes a line
    of its own without breaking the live line; :meth:`close` ends the live line. ``tty``
    overrides the stream's ``isatty()``; ``clock`` is the time source (seconds).
    """

    #: Off a terminal: about this many lines per stage at most (every step below it).
    lines_per_stage = 20
    #: On a terminal: redraws at most this often (seconds), except when a step completes.
    redraw_interval = 0.1

    def __init__(
        self,
        stream: IO[str],
        *,
        tty: bool | None = None,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._width = width
        self._clock = clock
        self._blocks = _blocks(stream)
        self._stage: str | None = None
        self._started = 0.0
        self._last_printed = 0  # off a terminal: the last step printed in this stage
        self._last_draw = -math.inf
        self._live = ""  # on a terminal: the line now shown (not yet ended)

    # ----------------------------------------------------------------------------- public

    def __call__(self, update: Update) -> None:
        now = self._clock()
        if update.key != self._stage:
            self._end_live()
            self._stage = update.key
            self._started = now
            self._last_printed = 0
            self._last_draw = -math.inf
        if self.tty:
            if update.complete or now - self._last_draw >= self.redraw_interval:
                self._draw(update, now)
                self._last_draw = now
            if update.complete and update.done >= update.total:
                self._end_live()  # the stage is over: what follows goes below it
        elif update.complete and self._due(update):
            self._last_printed = update.done
            self._write(self.format(update, now) + "\n")

    def message(self, text: str) -> None:
        """A line of its own (the live line, if any, is drawn again below it)."""
        if self.tty and self._live:
            self._write("\r\x1b[2K" + text + "\n" + self._live)
        else:
            self._write(text + "\n")

    def close(self) -> None:
        """End the live line (the last state of the last stage stays on screen)."""
        self._end_live()
        self._stage = None

    def format(self, update: Update, now: float | None = None, width: int = 0) -> str:
        """The line for ``update``: on a terminal with a bar (figures shortened to fit
        ``width`` columns when given), in a log without."""
        now = self._clock() if now is None else now
        elapsed = max(0.0, now - self._started)
        fraction = update.fraction
        if fraction >= 1.0:
            eta = "done"
        elif fraction > 0.0 and elapsed > 0.0:
            eta = "ETA " + clock(elapsed * (1.0 - fraction) / fraction)
        else:
            eta = "ETA " + clock(math.nan)
        figures = ", ".join(f"{k} {figure(v)}" for k, v in update.figures.items())
        count = f"{update.name} {update.done}/{update.total}"
        times = f"[{clock(elapsed)}, {eta}]"
        if not self.tty:
            return count + (f": {figures}" if figures else "") + f" {times}"
        head = f"{count} {_bar(fraction, 20, self._blocks)} {fraction:4.0%}"
        room = width - len(head) - len(times) - 5 if width else len(figures)
        if len(figures) > room:
            figures = figures[: max(0, room - 1)] + self._blocks[2] if room > 1 else ""
        return head + (f"  {figures}" if figures else "") + f"  {times}"

    # ---------------------------------------------------------------------------- private

    def _due(self, update: Update) -> bool:
        if update.done >= update.total or update.total <= self.lines_per_stage:
            return True
        per_line = update.total / self.lines_per_stage
        return int(update.done / per_line) > int(self._last_printed / per_line)

    def _draw(self, update: Update, now: float) -> None:
        width = self._width or shutil.get_terminal_size((100, 24)).columns
        line = self.format(update, now, width)
        if len(line) > width - 1:  # a wrapped line could not be redrawn in place
            line = line[: max(1, width - 2)] + self._blocks[2]
        self._live = line
        self._write("\r\x1b[2K" + line)

    def _end_live(self) -> None:
        if self._live:
            self._write("\n")
            self._live = ""

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _bar(fraction: float, width: int, blocks: str) -> str:
    filled = round(fraction * width)
    return blocks[0] * filled + blocks[1] * (width - filled)


def _blocks(stream: IO[str]) -> str:
    """Full and empty bar cells and an ellipsis the stream can encode (``#-~`` where block
    characters fail)."""
    try:
        "█░…".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "#-~"
    return "█░…"


class Stage:
    """Reports one stage of work to a ``progress`` callable (``None``: reports nothing).

    Creating it reports the start (``0/total``); :meth:`part` reports that one of ``parts``
    pieces of the step in progress is done (an episode of a generation, a batch of an
    epoch); :meth:`step` that a step is complete, with its figures. Between steps the last
    step's figures stay shown (or the ones :meth:`part` is given)."""

    def __init__(
        self, progress: ProgressCallback | None, name: str, total: int, parts: int = 1
    ) -> None:
        self.progress = progress
        self.name = name
        self.total = total
        self.parts = max(1, parts)
        self.done = 0
        self.into = 0
        self.figures: Mapping[str, float | int | str] = {}
        if progress is not None:
            progress(Update(name, 0, total))

    def part(self, figures: Mapping[str, float | int | str] | None = None) -> None:
        self.into += 1
        if self.progress is not None:
            partial = min(self.into / self.parts, 0.999)
            shown = self.figures if figures is None else figures
            self.progress(Update(self.name, self.done, self.total, shown, partial=partial))

    def step(self, figures: Mapping[str, float | int | str] | None = None) -> None:
        self.done += 1
        self.into = 0
        self.figures = figures or {}
        if self.progress is not None:
            self.progress(Update(self.name, self.done, self.total, self.figures))
