"""The built-in panels. The dashboard plugin registers them through
``probepilot_register_panels`` exactly as a third-party plugin registers its own.

A panel (:class:`probepilot.contracts.Panel`) has ``name``, ``title``, ``widget()`` and
``on_event(event)``; the dashboard also calls these optional methods when a panel has them:

``on_attach(context)``
    once, before the widget is mounted: the :class:`~probepilot_dashboard.app.PanelContext`
    (clocks, link health, view settings, ``command(name, **args)`` to steer the run).
``on_scan(view)``
    with the newest :class:`~probepilot_dashboard.bridge.ScanView` (the frame being scanned
    and the recent ones), at most once per drawing tick and only when something changed.
``on_snapshot(snapshot)``
    with the run's snapshot (state, stats, limits ...) about twice a second.
``on_view(view)``
    when the viewer switches forward/backward or colour map.

Every call runs on the dashboard's event loop, never on the run's; a panel that raises is
replaced by a placeholder naming the error, and the others go on.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import ProgressBar

from probepilot import events as ev
from probepilot_dashboard.bridge import LiveFrame, ScanView
from probepilot_dashboard.fmt import (
    STATE_COLOURS,
    TIP_COLOURS,
    TIP_LETTERS,
    action_text,
    clock,
    event_text,
    finding,
    frame_number,
    q,
)
from probepilot_dashboard.options import FrameOptions
from probepilot_dashboard.widgets import ImageView, LinesView, LivePlot, TextView, Thumbnails

#: How many points the plots and lists keep.
HISTORY = 500


@dataclass
class View:
    """The viewer's choices, shared by the panels: direction and colour map."""

    direction: str = "forward"
    colormap: str = "afmhot"


class BasePanel:
    """Convenience base for the built-in panels (a third-party panel needs no base class)."""

    name = ""
    title = ""

    def __init__(self, options: Any = None) -> None:
        self.options = options
        self.context: Any = None
        self.view = View()

    def on_attach(self, context: Any) -> None:
        self.context = context
        self.view = context.view

    def on_view(self, view: View) -> None:
        self.view = view

    def widget(self) -> Widget:  # pragma: no cover - every panel overrides it
        raise NotImplementedError

    def on_event(self, event: Any) -> None:
        """Most panels ignore most events."""


def _tip(state: Any) -> Text:
    state = str(state or "unknown")
    return Text(state, style=TIP_COLOURS.get(state, ""))


# --------------------------------------------------------------------------------------------
# The live frame


class FramePanel(BasePanel):
    """The frame being scanned, line by line, with its scan progress."""

    name = "frame"
    title = "Live frame"

    def __init__(self, options: FrameOptions | None = None) -> None:
        super().__init__(options or FrameOptions())
        self.info = TextView(self._info, id="frame-info")
        self.image = ImageView(id="frame-image")
        self.progress = ProgressBar(total=1, show_eta=False, id="frame-progress")
        self.live: LiveFrame | None = None
        self.verdicts: dict[int, str] = {}
        self._progress: tuple[int, int] = (0, 0)

    def on_attach(self, context: Any) -> None:
        super().on_attach(context)
        self.view.colormap = self.options.colormap

    def widget(self) -> Widget:
        return Vertical(self.info, self.image, self.progress, classes="frame-panel")

    def on_event(self, event: Any) -> None:
        if event.type == ev.FRAME_ANALYSED:
            number = frame_number(event.data.get("frame"))
            if number is not None:
                self.verdicts[number] = str(event.data.get("tip_state"))
                self.info.refresh()

    def on_scan(self, view: ScanView) -> None:
        self.live = view.current
        self._draw()

    def on_view(self, view: View) -> None:
        super().on_view(view)
        self._draw()

    def _draw(self) -> None:
        live = self.live
        if live is None:
            return
        data = live.channel(self.options.channel, self.view.direction)
        self.image.show(data, (live.number, live.version, self.view.direction), self.view.colormap)
        progress = (live.lines, live.rows_done)
        if progress != self._progress:
            self._progress = progress
            self.progress.update(total=live.lines, progress=live.rows_done)
        self.info.refresh()

    def _info(self) -> Text:
        live = self.live
        if live is None:
            return Text("waiting for the first line", style="dim italic")
        info = Text.assemble(
            ("frame ", "dim"),
            (f"{live.number}", "bold"),
            ("  line ", "dim"),
            f"{live.rows_done}/{live.lines}",
            "  ",
            (f"{self.view.direction}", "bold cyan"),
            f" {self.options.channel}",
            ("  size ", "dim"),
            q(live.size[0], "m") if live.size[0] else "?",
            "  ",
        )
        verdict = self.verdicts.get(live.number)
        if live.complete and verdict:
            info.append_text(Text("tip ") + _tip(verdict))
        elif not live.complete:
            info.append("scanning…", style="italic")
        return info


class HistoryPanel(BasePanel):
    """Thumbnails of the recent frames, each with its tip-state verdict."""

    name = "history"
    title = "Recent frames"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.thumbs = Thumbnails(id="history-thumbs")
        self.verdicts: dict[int, str] = {}
        self.recent: Mapping[int, LiveFrame] = {}

    def widget(self) -> Widget:
        return self.thumbs

    def on_event(self, event: Any) -> None:
        if event.type == ev.FRAME_ANALYSED:
            number = frame_number(event.data.get("frame"))
            if number is not None:
                self.verdicts[number] = str(event.data.get("tip_state"))
                self._draw()

    def on_scan(self, view: ScanView) -> None:
        if view.recent.keys() != self.recent.keys():
            self.recent = view.recent
            self._draw()

    def on_view(self, view: View) -> None:
        super().on_view(view)
        self._draw()

    def _draw(self) -> None:
        items = []
        for number, live in self.recent.items():
            data = live.channel("Z", self.view.direction)
            if data is None:
                continue
            verdict = self.verdicts.get(number, "…" if live.complete else "partial")
            label = Text(f"#{number} ", style="dim") + _tip(verdict)
            items.append(((number, self.view.direction), data, label))
        self.thumbs.show(items, self.view.colormap)


# --------------------------------------------------------------------------------------------
# Tip state and drift over time


class TipPanel(BasePanel):
    """The tip-state verdict of every frame, and the double-tip probability over time."""

    name = "tip"
    title = "Tip state · P(double)"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.strip = TextView(self._strip, id="tip-strip")
        self.plot = LivePlot(self._plot, id="tip-plot")
        self.states: deque[tuple[int, str]] = deque(maxlen=HISTORY)
        self.p_double: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        self._count = 0

    def widget(self) -> Widget:
        return Vertical(self.strip, self.plot, classes="plot-panel")

    def on_event(self, event: Any) -> None:
        if event.type != ev.FRAME_ANALYSED:
            return
        self._count += 1
        number = frame_number(event.data.get("frame")) or self._count
        state = str(event.data.get("tip_state", "unknown"))
        self.states.append((number, state))
        double = finding(event.data.get("findings"), "double_tip")
        if double is not None:
            values = double.get("values") or {}
            p = values.get("p_double", double.get("confidence"))
            if isinstance(p, int | float) and math.isfinite(p):
                self.p_double.append((number, float(p)))
        self.strip.refresh()
        self.plot.refresh()

    def _strip(self) -> Text:
        width = max(10, self.strip.size.width)
        line = Text("now ", style="dim")
        if self.states:
            line.append_text(_tip(self.states[-1][1]))
        if self.p_double:
            line.append(f"  P(double) {self.p_double[-1][1]:.2f}", style="bold")
        good = sum(1 for _, s in self.states if s == "good")
        if self.states:
            line.append(f"  good {good}/{len(self.states)}", style="dim")
        strip = Text(no_wrap=True, overflow="crop")
        for _, state in list(self.states)[-width:]:
            strip.append(TIP_LETTERS.get(state, "?"), style=TIP_COLOURS.get(state, ""))
        return Text("\n").join([line, strip])

    def _plot(self, plt: Any) -> None:
        if self.p_double:
            xs = [n for n, _ in self.p_double]
            plt.plot(xs, [p for _, p in self.p_double], marker="braille", color="red")
            plt.hline(0.5, "gray")
            frame_ticks(plt, xs)
        plt.ylim(0, 1)
        plt.xlabel("frame")


def frame_ticks(plt: Any, xs: Sequence[int], count: int = 5) -> None:
    """Whole, evenly spaced frame numbers on the x axis (1, 2 or 5 times a power of ten
    apart, ``count`` or one more at most); plotext's own ticks read ``3186.8``."""
    if not xs:
        return
    lo, hi = min(xs), max(xs)
    raw = (hi - lo) / max(1, count)
    step = 1
    if raw > 1:
        power = 10 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = list(range(-(-lo // step) * step, hi + 1, step)) or [lo]
    plt.xticks(ticks, [str(t) for t in ticks])


class DriftPanel(BasePanel):
    """The drift velocity (x, y, in pm/s) of each frame the drift analyzer could measure."""

    name = "drift"
    title = "Drift velocity (pm/s)"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.summary = TextView(self._summary, id="drift-summary")
        self.plot = LivePlot(self._plot, id="drift-plot")
        self.points: deque[tuple[int, float, float]] = deque(maxlen=HISTORY)
        self.compensation: tuple[float, float] | None = None
        self._count = 0

    def widget(self) -> Widget:
        return Vertical(self.summary, self.plot, classes="plot-panel")

    def on_event(self, event: Any) -> None:
        if event.type == ev.ACTION_EXECUTED:
            action = event.data.get("action") or {}
            if isinstance(action, Mapping) and action.get("kind") == "drift":
                self.compensation = (float(action.get("vx", 0)), float(action.get("vy", 0)))
                self.summary.refresh()
            return
        if event.type != ev.FRAME_ANALYSED:
            return
        self._count += 1
        drift = finding(event.data.get("findings"), "drift")
        values = (drift or {}).get("values") or {}
        if values.get("status") != "ok":
            return
        number = frame_number(event.data.get("frame")) or self._count
        try:
            self.points.append((number, float(values["vx"]), float(values["vy"])))
        except (KeyError, TypeError, ValueError):
            return
        self.summary.refresh()
        self.plot.refresh()

    def _summary(self) -> Text:
        text = Text()
        if self.points:
            _, vx, vy = self.points[-1]
            text.append("last ", style="dim")
            text.append(f"{q(math.hypot(vx, vy), 'm/s')}", style="bold")
            text.append(f"  (x {vx * 1e12:+.1f}, y {vy * 1e12:+.1f} pm/s)", style="dim")
        else:
            text.append("no drift measured yet", style="dim")
        if self.compensation is not None:
            cx, cy = self.compensation
            text.append(f"\ncompensating {q(math.hypot(cx, cy), 'm/s')}", style="yellow")
        return text

    def _plot(self, plt: Any) -> None:
        if self.points:
            xs = [n for n, _, _ in self.points]
            plt.plot(xs, [vx * 1e12 for _, vx, _ in self.points], marker="braille", label="vx")
            plt.plot(xs, [vy * 1e12 for _, _, vy in self.points], marker="braille", label="vy")
            frame_ticks(plt, xs)
        plt.xlabel("frame")


# --------------------------------------------------------------------------------------------
# Decisions, actions, safety


@dataclass
class _Row:
    frame: int | None
    tip: str | None
    who: str
    what: str
    kind: str
    status: str = "decided"
    outcome: str | None = None
    repeat: int = 1
    awaiting: bool = False


class DecisionsPanel(BasePanel):
    """The policy's decisions, the actions taken (policy, operator, session) and their outcome:
    executed or refused, and the tip state of the next frame after a conditioning action."""

    name = "decisions"
    title = "Decisions and actions"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.rows: deque[_Row] = deque(maxlen=HISTORY)
        self.view_widget = LinesView(self._line, id="decisions-lines")
        self.frame: int | None = None
        self.tip = "unknown"
        self.policy: str | None = None
        self.operator: str | None = None  # the operator's command waiting for its action

    def widget(self) -> Widget:
        return self.view_widget

    def _pending(self, kind: str) -> _Row | None:
        for row in reversed(self.rows):
            if row.status == "decided" and row.kind == kind:
                return row
        return None

    def _add(self, who: str, action: Any, kind: str, tip: str | None = None) -> _Row:
        row = _Row(self.frame, tip, who, action_text(action), kind)
        self.rows.append(row)
        return row

    def on_event(self, event: Any) -> None:
        data = event.data
        action = data.get("action") or {}
        kind = str(action.get("kind", "?")) if isinstance(action, Mapping) else "?"
        if event.type == ev.FRAME_ANALYSED:
            self.frame = frame_number(data.get("frame"))
            self.tip = str(data.get("tip_state"))
            for row in self.rows:
                if row.awaiting:
                    row.awaiting = False
                    row.outcome = self.tip
        elif event.type == ev.OPERATOR_COMMAND:
            command = str(data.get("command"))
            self.operator = {"set_bias": "bias", "set_setpoint": "setpoint"}.get(command)
            if command == "withdraw":
                self.operator = "withdraw"
            return
        elif event.type == ev.POLICY_DECIDED:
            policy = str(data.get("policy"))
            if policy != self.policy:
                if self.policy is not None:
                    self._add("policy", {"kind": f"→ {policy}"}, "policy").status = "switched"
                self.policy = policy
            last = self.rows[-1] if self.rows else None
            if kind == "image" and last is not None and last.kind == "image":
                last.repeat += 1
                last.frame = self.frame
            else:
                self._add("", action, kind, self.tip).status = (
                    "kept" if kind == "image" else "decided"
                )
        elif event.type == ev.ACTION_EXECUTED:
            source = str(data.get("source", "?"))
            row = self._pending(kind) if source == "policy" else None
            if row is None:
                row = self._add("operator" if kind == self.operator else source, action, kind)
                self.operator = None if kind == self.operator else self.operator
            row.what = action_text(action)  # the envelope may have clamped it
            ms = float(data.get("duration") or 0.0) * 1e3
            row.status = f"done {ms:.0f} ms"
            row.awaiting = kind in ("pulse", "dip")
        elif event.type == ev.SAFETY_REJECTED:
            row = self._pending(kind)
            if row is None:
                row = self._add("operator" if kind == self.operator else "session", action, kind)
                self.operator = None if kind == self.operator else self.operator
            row.status = "refused"
        elif event.type == ev.DRIVER_ERROR:
            row = self._pending(str(data.get("operation")))
            if row is not None:
                row.status = f"failed: {data.get('error')}"
        else:
            return
        self.view_widget.show(self.rows)

    @staticmethod
    def _line(row: _Row) -> Text:
        text = Text(f"#{row.frame if row.frame is not None else '-':>4} ", style="dim")
        if row.tip is not None:
            text.append(TIP_LETTERS.get(row.tip, "?"), style=TIP_COLOURS.get(row.tip, ""))
            text.append(" ")
        if row.who:
            text.append(f"{row.who}: ", style="bold cyan" if row.who == "operator" else "dim")
        text.append(row.what, style="bold" if row.kind in ("pulse", "dip") else "")
        if row.repeat > 1:
            text.append(f" ×{row.repeat}", style="dim")
        if row.status.startswith("done"):
            text.append(f" ✓{row.status[5:]}", style="green")
        elif row.status.startswith(("refused", "failed")):
            text.append(f" ✗ {row.status}", style="bold red")
        elif row.status == "decided":
            text.append(" …", style="dim")
        if row.outcome is not None:
            text.append(" → ")
            text.append_text(_tip(row.outcome))
        return text


class SafetyPanel(BasePanel):
    """The safety envelope's limits and every action it refused, with the reasons."""

    name = "safety"
    title = "Safety envelope"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.limits_line = TextView(self._limits_text, id="safety-limits")
        self.rejections: deque[tuple[int | None, str, str]] = deque(maxlen=HISTORY)
        self.lines = LinesView(self._line, id="safety-lines")
        self.lines.empty = Text("no action refused", style="green")
        self.frame: int | None = None
        self._limits: Mapping[str, Any] | None = None

    def widget(self) -> Widget:
        return Vertical(self.limits_line, self.lines, classes="safety-panel")

    def on_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        limits = snapshot.get("limits")
        if isinstance(limits, Mapping) and limits != self._limits:
            self._limits = limits
            self.limits_line.refresh()

    def _limits_text(self) -> Text:
        limits = self._limits
        if limits is None:
            return Text("")
        bias = limits.get("bias_range") or (math.nan, math.nan)
        return Text(
            f"bias {q(bias[0], 'V')}…{q(bias[1], 'V')}  pulse ≤{q(limits.get('max_pulse'), 'V')}"
            f"  dip ≤{q(limits.get('max_dip_depth'), 'm')}"
            f"  {limits.get('max_conditioning_per_minute')}/min",
            style="dim",
            no_wrap=True,
            overflow="ellipsis",
        )

    def on_event(self, event: Any) -> None:
        if event.type == ev.FRAME_ANALYSED:
            self.frame = frame_number(event.data.get("frame"))
        if event.type != ev.SAFETY_REJECTED:
            return
        reasons = "; ".join(str(r) for r in event.data.get("reasons", ()))
        self.rejections.append((self.frame, action_text(event.data.get("action")), reasons))
        self.lines.show(self.rejections)

    @staticmethod
    def _line(item: tuple[int | None, str, str]) -> Text:
        frame, what, reasons = item
        text = Text(f"#{frame if frame is not None else '-':>4} ", style="dim")
        text.append(f"✗ {what}", style="bold red")
        text.append(f": {reasons}")
        return text


# --------------------------------------------------------------------------------------------
# Figures, log, driver


class StatsPanel(BasePanel):
    """Frames, good-frame fraction, actions, actions needed to recover, time in each state."""

    name = "stats"
    title = "Run statistics"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.body = TextView(self._text, id="stats-body")
        self.snapshot: Mapping[str, Any] = {}
        self.state: str | None = None
        self.state_since: float | None = None

    def widget(self) -> Widget:
        return self.body

    def on_event(self, event: Any) -> None:
        if event.type == ev.STATE_CHANGED:
            self.state = str(event.data.get("state"))
            self.state_since = event.time

    def on_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        self.snapshot = snapshot
        self.body.refresh()

    def _text(self) -> Text:
        if not self.snapshot:
            return Text("waiting for the run", style="dim italic")
        s = self.snapshot.get("stats") or {}
        budget = self.snapshot.get("budget") or {}
        frames = s.get("frames", 0)
        out = Text()

        def row(label: str, *parts: Any) -> None:
            out.append(f"{label:<14}", style="dim")
            for part in parts:
                out.append_text(part if isinstance(part, Text) else Text(str(part)))
            out.append("\n")

        limit = budget.get("frames")
        row(
            "frames",
            Text(f"{frames}", style="bold"),
            f" / {limit}" if limit else "",
            f"  (complete {s.get('complete_frames', 0)})",
        )
        fraction = s.get("good_fraction")
        good = f"{fraction:.0%}" if isinstance(fraction, int | float) else "-"
        row(
            "good frames",
            Text(good, style="bold green"),
            f"  ({s.get('good_frames', 0)}/{s.get('analysed', 0)} analysed)",
        )
        recoveries = list(s.get("recoveries") or [])
        rec = (
            f"median {statistics.median(recoveries):g}, last {recoveries[-1]} ({len(recoveries)}×)"
            if recoveries
            else "-"
        )
        row("conditioning", f"{s.get('conditioning', 0)} actions")
        row("to recover", rec)
        actions = s.get("actions") or {}
        row("actions", ", ".join(f"{k} {n}" for k, n in sorted(actions.items())) or "-")
        row(
            "refused",
            f"{s.get('rejected', 0)}",
            Text("  errors ", style="dim"),
            f"{s.get('driver_errors', 0)}",
            Text("  crashes ", style="dim"),
            f"{s.get('crashes', 0)}",
        )
        row(
            "instrument",
            clock(float(s.get("instrument_time") or 0.0)),
            Text("   coarse moves ", style="dim"),
            f"{s.get('coarse_moves', 0)}",
        )
        spent = dict(s.get("time_in_state") or {})
        if self.state and self.state_since is not None and self.context is not None:
            spent[self.state] = spent.get(self.state, 0.0) + max(
                0.0, self.context.clock() - self.state_since
            )
        total = sum(spent.values())
        out.append("time in state\n", style="dim")
        for state, seconds in sorted(spent.items(), key=lambda kv: -kv[1])[:5]:
            share = seconds / total if total > 0 else 0.0
            out.append(f"  {state:<13}", style=STATE_COLOURS.get(state, ""))
            out.append(f"{share:>4.0%} ")
            out.append("█" * round(share * 16), style=STATE_COLOURS.get(state, ""))
            out.append("\n")
        out.rstrip()
        return out


class LogPanel(BasePanel):
    """Every event of the run, one line each, newest at the bottom."""

    name = "log"
    title = "Event log"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: deque[Any] = deque(maxlen=HISTORY)
        self.start: float | None = None
        self.lines = LinesView(lambda e: event_text(e, self.start), id="log-lines")

    def widget(self) -> Widget:
        return self.lines

    def on_event(self, event: Any) -> None:
        if self.start is None or event.type == ev.RUN_STARTED:
            self.start = event.time
        self.events.append(event)
        self.lines.show(self.events)


@dataclass
class _DriverState:
    name: str = "?"
    state: str = "?"
    errors: int = 0
    last_error: str | None = None
    bias: float | None = None
    setpoint: float | None = None
    frame_times: deque[float] = field(default_factory=lambda: deque(maxlen=10))
    finished: str | None = None


class DriverPanel(BasePanel):
    """The driver, its connection health (errors, recovery, how recently the run was heard
    from) and the bias and setpoint in use."""

    name = "driver"
    title = "Driver and link"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.body = TextView(self._text, id="driver-body")
        self.d = _DriverState()

    def widget(self) -> Widget:
        return self.body

    def on_event(self, event: Any) -> None:
        data = event.data
        d = self.d
        if event.type == ev.RUN_STARTED:
            d.name = str(data.get("driver", d.name))
        elif event.type == ev.STATE_CHANGED:
            d.state = str(data.get("state"))
        elif event.type == ev.DRIVER_ERROR:
            d.errors += 1
            d.last_error = f"{data.get('error')} in {data.get('operation')}: {data.get('message')}"
        elif event.type == ev.FRAME_PERSISTED:
            d.bias, d.setpoint = data.get("bias"), data.get("setpoint")
            d.frame_times.append(event.time)
        elif event.type == ev.ACTION_EXECUTED:
            action = data.get("action") or {}
            if isinstance(action, Mapping) and action.get("kind") == "bias":
                d.bias = action.get("voltage")
            if isinstance(action, Mapping) and action.get("kind") == "setpoint":
                d.setpoint = action.get("current")
        elif event.type == ev.RUN_FINISHED:
            d.finished = str(data.get("outcome"))
        else:
            return
        self.body.refresh()

    def on_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        if self.d.name == "?":
            self.d.name = str(snapshot.get("driver", "?"))
        self.body.refresh()

    def _text(self) -> Text:
        d = self.d
        health = self.context.health() if self.context is not None else {}
        out = Text()
        out.append("driver    ", style="dim")
        out.append(d.name, style="bold")
        out.append(f"  ({health.get('link', '?')})\n", style="dim")
        out.append("health    ", style="dim")
        if d.finished is not None:
            out.append("run ended", style="dim")
        elif d.state == "recover":
            out.append("● recovering (reconnecting)", style="bold red")
        elif d.state == "stopped":
            out.append("● closed", style="dim")
        else:
            out.append("● connected", style="bold green")
        age = health.get("last_heard_age")
        if isinstance(age, float):
            stale = age > 10 and d.finished is None and d.state not in ("paused", "stopped")
            out.append(f"  heard {age:.1f} s ago", style="bold red" if stale else "dim")
        out.append("\nerrors    ", style="dim")
        out.append(f"{d.errors}", style="bold red" if d.errors else "")
        if d.last_error:
            out.append(f"  last: {d.last_error}", style="red")
        out.append("\nbias      ", style="dim")
        out.append(q(d.bias, "V") if d.bias is not None else "?")
        out.append("   setpoint ", style="dim")
        out.append(q(d.setpoint, "A") if d.setpoint is not None else "?")
        out.append("\nrate      ", style="dim")
        if len(d.frame_times) >= 2 and d.frame_times[-1] > d.frame_times[0]:
            per_min = (len(d.frame_times) - 1) / (d.frame_times[-1] - d.frame_times[0]) * 60
            # Whole numbers from 100 on, so that the line count still fits beside it.
            out.append(f"{per_min:.{0 if per_min >= 100 else 1}f} frames/min")
        else:
            out.append("-")
        out.append(f"  lines {health.get('lines', 0)}", style="dim")
        return out


#: Built-in panels in the order the dashboard lays them out, with their column.
BUILTIN: dict[str, tuple[type[BasePanel], str]] = {
    "frame": (FramePanel, "left"),
    "history": (HistoryPanel, "left"),
    "tip": (TipPanel, "middle"),
    "drift": (DriftPanel, "middle"),
    "decisions": (DecisionsPanel, "middle"),
    "stats": (StatsPanel, "right"),
    "driver": (DriverPanel, "right"),
    "safety": (SafetyPanel, "right"),
    "log": (LogPanel, "right"),
}
