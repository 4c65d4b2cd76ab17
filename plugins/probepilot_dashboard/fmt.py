"""Short human descriptions of actions, events and quantities for the panels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from probepilot import events as ev
from probepilot.units import format_quantity

#: Colour of each tip state (and of the session's states) on screen.
TIP_COLOURS = {
    "good": "bold green",
    "double": "bold red",
    "blunt": "bold yellow",
    "unstable": "bold magenta",
    "unknown": "dim",
}
TIP_LETTERS = {"good": "G", "double": "D", "blunt": "B", "unstable": "U", "unknown": "?"}
STATE_COLOURS = {
    "approach": "cyan",
    "choose_region": "cyan",
    "image": "green",
    "condition": "yellow",
    "move_coarse": "cyan",
    "recover": "bold red",
    "paused": "bold yellow",
    "stopped": "dim",
}
EVENT_COLOURS = {
    ev.SAFETY_REJECTED: "bold red",
    ev.DRIVER_ERROR: "red",
    ev.PLUGIN_ERROR: "red",
    ev.OPERATOR_COMMAND: "bold cyan",
    ev.ACTION_EXECUTED: "yellow",
    ev.POLICY_DECIDED: "",
    ev.FRAME_ANALYSED: "",
    ev.RUN_STARTED: "bold",
    ev.RUN_FINISHED: "bold",
    ev.STATE_CHANGED: "dim",
    ev.FRAME_PERSISTED: "dim",
}


#: Short tags of the event types in the log.
EVENT_TAGS = {
    ev.RUN_STARTED: "run",
    ev.RUN_FINISHED: "run",
    ev.STATE_CHANGED: "state",
    ev.FRAME_PERSISTED: "saved",
    ev.FRAME_ANALYSED: "analysed",
    ev.POLICY_DECIDED: "decided",
    ev.SAFETY_REJECTED: "REFUSED",
    ev.ACTION_EXECUTED: "action",
    ev.DRIVER_ERROR: "ERROR",
    ev.OPERATOR_COMMAND: "operator",
    ev.PLUGIN_ERROR: "plugin",
}


def q(value: Any, unit: str, digits: int = 3) -> str:
    """``2e-9, "m"`` -> ``"2 nm"`` (``"?"`` for what is not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?"
    if not math.isfinite(number):
        return "-"
    return format_quantity(number, unit, digits)


def action_text(action: Mapping[str, Any] | None) -> str:
    """``{"kind": "pulse", "voltage": -8, "width": 0.2}`` -> ``"pulse -8 V 200 ms"``."""
    if not isinstance(action, Mapping):
        return str(action)
    kind = str(action.get("kind", "?"))
    a = action
    if kind == "pulse":
        return f"pulse {q(a.get('voltage'), 'V')} {q(a.get('width'), 's')}"
    if kind == "dip":
        return f"dip {q(a.get('depth'), 'm')} at {q(a.get('bias'), 'V')}"
    if kind == "bias":
        return f"bias {q(a.get('voltage'), 'V')}"
    if kind == "setpoint":
        return f"setpoint {q(a.get('current'), 'A')}"
    if kind == "drift":
        try:
            speed = math.hypot(float(a.get("vx", 0.0)), float(a.get("vy", 0.0)))
        except (TypeError, ValueError):
            speed = math.nan
        return f"drift compensation {q(speed, 'm/s')}"
    if kind == "coarse":
        return f"coarse {a.get('axis', '?')} ×{a.get('steps', '?')}"
    if kind == "move":
        return f"move to ({q(a.get('x'), 'm')}, {q(a.get('y'), 'm')})"
    if kind == "image":
        return "keep imaging"
    return kind


def clock(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; hours when needed: ``"2:01:15"``."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


def frame_number(file: Any) -> int | None:
    """``"frames/frame-000012.sxm"`` -> 12."""
    stem = str(file).rsplit("/", 1)[-1].split(".", 1)[0]
    digits = stem.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else None


def finding(findings: Any, kind: str) -> Mapping[str, Any] | None:
    """The first finding of ``kind`` in a ``frame.analysed`` event's findings."""
    for f in findings or ():
        if isinstance(f, Mapping) and f.get("kind") == kind:
            return f
    return None


def event_text(event: Any, start: float | None) -> Text:
    """One line of the event log: time since the run started, type and what it says."""
    data = event.data
    t = event.time - start if start is not None else 0.0
    when = Text(f"{clock(t):>5} ", style="dim")
    kind = event.type
    what = ""
    if kind == ev.RUN_STARTED:
        what = (
            f"run {data.get('run_id', '')} · driver {data.get('driver')}"
            f" · policy {data.get('policy')}"
        )
    elif kind == ev.STATE_CHANGED:
        what = f"→ {data.get('state')}"
    elif kind == ev.FRAME_PERSISTED:
        state = (
            "complete" if data.get("complete", True) else f"partial, {data.get('lines_done')} lines"
        )
        what = f"frame {data.get('index')} ({data.get('pixels')}×{data.get('lines')}, {state})"
    elif kind == ev.FRAME_ANALYSED:
        what = f"frame {frame_number(data.get('frame'))}: tip {data.get('tip_state')}"
    elif kind == ev.POLICY_DECIDED:
        what = f"{data.get('policy')}: {action_text(data.get('action'))}"
    elif kind == ev.SAFETY_REJECTED:
        reasons = "; ".join(str(r) for r in data.get("reasons", ()))
        what = f"refused {action_text(data.get('action'))}: {reasons}"
    elif kind == ev.ACTION_EXECUTED:
        what = f"{action_text(data.get('action'))} ({data.get('source')})"
    elif kind == ev.DRIVER_ERROR:
        what = f"{data.get('error')} in {data.get('operation')}: {data.get('message')}"
    elif kind == ev.OPERATOR_COMMAND:
        args = ", ".join(f"{k}={v}" for k, v in data.items() if k != "command")
        what = f"{data.get('command')}" + (f" ({args})" if args else "")
    elif kind == ev.PLUGIN_ERROR:
        what = f"plugin {data.get('plugin')}: {data.get('error')}"
    elif kind == ev.RUN_FINISHED:
        what = f"run {data.get('outcome')}"
    else:
        what = ", ".join(f"{k}={v}" for k, v in list(data.items())[:4])
    line = Text.assemble(when, (f"{EVENT_TAGS.get(kind, kind):<8}", "dim"), " ")
    line.append(what, style=EVENT_COLOURS.get(kind, ""))
    return line
