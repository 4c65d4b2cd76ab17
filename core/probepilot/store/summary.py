"""What ``probepilot inspect FILE`` says about a data file: a summary as plain data (for
``--json``), the same as text, and a preview image (``--png``).

Every number in a summary is in SI units (the channel's ``unit`` says which); NaN becomes
``None`` so the JSON is strict. Channel statistics ignore unscanned (NaN) values.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from probepilot.errors import FormatError
from probepilot.model import Frame, Spectrum
from probepilot.store._common import FloatArray
from probepilot.store.grid import Grid
from probepilot.store.png import RGB, colourise, levelled, line_plot
from probepilot.units import format_quantity

__all__ = ["preview", "render", "summarise"]


def summarise(data: object) -> dict[str, Any]:
    """A summary of what a reader returned: a frame, frames, a spectrum or a grid (anything
    else, e.g. a plugin format's own type, gets ``kind`` only)."""
    if isinstance(data, Frame):
        return _frame(data)
    if isinstance(data, Spectrum):
        return _spectrum(data)
    if isinstance(data, Grid):
        return _grid(data)
    if isinstance(data, list) and data and all(isinstance(d, Frame) for d in data):
        return {"kind": "frames", "frames": [_frame(frame) for frame in data]}
    return {"kind": type(data).__name__}


def stats(name: str, unit: str, values: FloatArray, **extra: Any) -> dict[str, Any]:
    """Shape, min, max and mean of the finite values, and how many are NaN (unmeasured)."""
    finite = values[np.isfinite(values)]
    empty = finite.size == 0
    return {
        "name": name,
        "unit": unit,
        **extra,
        "shape": list(values.shape),
        "min": None if empty else float(finite.min()),
        "max": None if empty else float(finite.max()),
        "mean": None if empty else float(finite.mean()),
        "nan": int(values.size - finite.size),
    }


def _frame(frame: Frame) -> dict[str, Any]:
    channels = []
    for name, channel in frame.channels.items():
        channels.append(stats(name, channel.unit, channel.forward, trace="forward"))
        if channel.backward is not None:
            channels.append(stats(name, channel.unit, channel.backward, trace="backward"))
    area = frame.area
    return {
        "kind": "frame",
        "pixels": area.pixels,
        "lines": area.lines,
        "size": list(area.size),
        "centre": list(area.centre),
        "angle": area.angle,
        "direction": frame.direction,
        "bias": _num(frame.bias),
        "setpoint": _num(frame.setpoint),
        "line_time": _num(frame.line_time),
        "started_at": _num(frame.started_at),
        "recorded": _iso(frame.started_at),
        "lines_done": frame.lines_done,
        "complete": frame.complete,
        "header_entries": len(frame.metadata),
        "channels": channels,
    }


def _spectrum(spectrum: Spectrum) -> dict[str, Any]:
    return {
        "kind": "spectrum",
        "sweep": stats(spectrum.sweep_name, spectrum.sweep_unit, spectrum.sweep),
        "points": len(spectrum.sweep),
        "position": [_num(v) for v in spectrum.position],
        "started_at": _num(spectrum.started_at),
        "recorded": _iso(spectrum.started_at),
        "complete": spectrum.complete,
        "header_entries": len(spectrum.metadata),
        "channels": [
            stats(name, spectrum.units.get(name, ""), values)
            for name, values in spectrum.channels.items()
        ],
    }


def _grid(grid: Grid) -> dict[str, Any]:
    area = grid.area
    return {
        "kind": "grid",
        "shape": list(grid.shape),
        "size": list(area.size),
        "centre": list(area.centre),
        "angle": area.angle,
        "sweep": stats(grid.sweep_name, grid.sweep_unit, grid.sweep),
        "points": int(grid.sweep.shape[-1]) if grid.sweep.ndim else 0,
        "measured": int(grid.measured.sum()),
        "complete": grid.complete,
        "started_at": _num(grid.started_at),
        "recorded": _iso(grid.started_at),
        "parameters": sorted(grid.parameters),
        "header_entries": len(grid.metadata),
        "channels": [
            stats(name, grid.units.get(name, ""), values) for name, values in grid.channels.items()
        ],
    }


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _iso(timestamp: float) -> str | None:
    if not math.isfinite(timestamp):
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------
# Text


def render(summary: dict[str, Any]) -> str:
    """The summary as a few aligned lines for a terminal."""
    kind = summary["kind"]
    if kind == "frames":
        frames = summary["frames"]
        if len(frames) == 1:
            return _render_one(frames[0])
        parts = [f"frame {n} of {len(frames)}\n{_render_one(f)}" for n, f in enumerate(frames, 1)]
        return "\n".join(parts)
    return _render_one(summary)


def _render_one(s: dict[str, Any]) -> str:
    kind = s["kind"]
    rows: list[tuple[str, str]] = []
    if kind == "frame":
        w, h = s["size"]
        partial = "" if s["complete"] else " (partial)"
        rows += [
            ("image", f"{s['pixels']} x {s['lines']} px, {_q(w, 'm')} x {_q(h, 'm')}"),
            ("centre", f"({_q(s['centre'][0], 'm')}, {_q(s['centre'][1], 'm')})"),
            ("angle", f"{math.degrees(s['angle']):.4g} deg"),
            ("scan", f"{s['direction']}, {_q(s['line_time'], 's')} per line"),
            ("lines", f"{s['lines_done']} of {s['lines']}{partial}"),
            ("bias", _q(s["bias"], "V")),
            ("setpoint", _q(s["setpoint"], "A")),
        ]
    elif kind == "spectrum":
        sweep = s["sweep"]
        x, y = s["position"]
        rows += [
            ("sweep", f"{sweep['name']}: {s['points']} points, {_range(sweep)}"),
            ("position", f"({_q(x, 'm')}, {_q(y, 'm')})"),
            ("complete", "yes" if s["complete"] else "no (interrupted)"),
        ]
    elif kind == "grid":
        ny, nx = s["shape"]
        sweep = s["sweep"]
        rows += [
            ("grid", f"{nx} x {ny} points, {_q(s['size'][0], 'm')} x {_q(s['size'][1], 'm')}"),
            ("sweep", f"{sweep['name']}: {s['points']} points, {_range(sweep)}"),
            ("measured", f"{s['measured']} of {nx * ny} points"),
        ]
    else:
        return f"  {kind} (no summary for this type)"
    rows.append(("recorded", s["recorded"] or "-"))
    rows.append(("header", f"{s['header_entries']} entries"))
    text = [f"  {key:<9} {value}" for key, value in rows]
    text.append("  channels")
    labels = [
        ch["name"] + (" [backward]" if ch.get("trace") == "backward" else "")
        for ch in s["channels"]
    ]
    width = max((len(label) for label in labels), default=0)
    for label, ch in zip(labels, s["channels"], strict=True):
        shape = "x".join(str(n) for n in ch["shape"])
        text.append(f"    {label:<{width}}  {ch['unit'] or '-':<4} {shape:>9}  {_range(ch)}")
    return "\n".join(text)


def _range(ch: dict[str, Any]) -> str:
    """``-50.6 .. -50.49 nm, mean -50.54 nm``: one prefix for the whole range, so the numbers
    compare at a glance."""
    if ch.get("min") is None:
        return "no data"
    unit = ch["unit"]
    largest = max(abs(ch["min"]), abs(ch["max"]))
    prefix, power = _prefix(largest) if unit and unit != "rad" else ("", 0)
    low, high = (f"{v / 10.0**power:.4g}" for v in (ch["min"], ch["max"]))
    text = f"{low} .. {high} {prefix}{unit}".rstrip()
    if ch.get("mean") is not None:
        text += f", mean {ch['mean'] / 10.0**power:.4g} {prefix}{unit}".rstrip()
    return text + (f", {ch['nan']} NaN" if ch.get("nan") else "")


_PREFIXES = (("G", 9), ("M", 6), ("k", 3), ("", 0), ("m", -3), ("µ", -6), ("n", -9), ("p", -12))


def _prefix(magnitude: float) -> tuple[str, int]:
    if magnitude == 0:
        return "", 0
    return next(((p, e) for p, e in _PREFIXES if magnitude >= 10.0**e * 0.99995), ("f", -15))


def _q(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return format_quantity(value, unit, digits=4) if unit else f"{value:.4g}"


# --------------------------------------------------------------------------------------------
# Preview


def preview(data: object, channel: str | None = None, label: str = "") -> RGB:
    """A preview image of ``data``: a frame's forward channel (plane-levelled, gold palette,
    +y up), a grid's channel averaged over the sweep, or a line plot of a spectrum.

    :param channel: which channel (default ``Z`` where there is one, else the first).
    :raises FormatError: ``channel`` is not in ``data``, or ``data`` has nothing to show.
    """
    if isinstance(data, list) and data and isinstance(data[0], Frame):
        data = data[0]
    if isinstance(data, Frame):
        name = _pick(channel, list(data.channels), label)
        image = levelled(data.channels[name].forward)
        # Row 0 is the first line scanned: the area's top edge for a down scan, bottom for up.
        return colourise(image if data.direction == "down" else image[::-1])
    if isinstance(data, Grid):
        name = _pick(channel, list(data.channels), label)
        values = data.channels[name]
        finite = np.isfinite(values)
        counts = finite.sum(axis=-1)
        total = np.where(finite, values, 0.0).sum(axis=-1)
        mean = np.divide(total, counts, out=np.full(counts.shape, np.nan), where=counts > 0)
        return colourise(mean[::-1])  # grids are measured bottom row first
    if isinstance(data, Spectrum):
        name = _pick(channel, list(data.channels), label)
        return line_plot(data.sweep, data.channels[name])
    raise FormatError(f"{label}: there is no preview for a {type(data).__name__}")


def _pick(channel: str | None, names: list[str], label: str) -> str:
    if channel is None:
        if not names:
            raise FormatError(f"{label}: there is no channel to preview")
        return "Z" if "Z" in names else names[0]
    if channel not in names:
        raise FormatError(
            f"{label}: no channel {channel!r}", hint=f"the channels are: {', '.join(names)}"
        )
    return channel
