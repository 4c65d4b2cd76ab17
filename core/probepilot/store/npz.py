"""NumPy ``.npz`` export (``probepilot convert IN OUT.npz``): the arrays as float64 in SI units,
the rest as JSON, loadable with ``numpy.load(path)`` (no pickle needed).

Keys, by what the source held:

* frame: ``forward/<channel>`` and ``backward/<channel>``, shape ``(lines, pixels)``, row 0
  the first line scanned, backward traces in x order (as :class:`~probepilot.model.Frame`);
* spectrum: ``sweep`` and ``channel/<name>``, shape ``(points,)``;
* grid: ``sweep``, ``channel/<name>`` ``(ny, nx, points)``, ``parameter/<name>`` ``(ny, nx)``,
  ``measured`` (bool);
* always ``metadata.json``: a string holding ``kind``, the units of every array, the scalar
  fields (area, bias, times ...) and the source file's header entries under ``header``.
  Non-finite numbers are written as ``null`` so any JSON parser reads it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.model import Frame, ScanArea, Spectrum
from probepilot.store._common import FloatArray, atomic_write, json_safe
from probepilot.store.grid import Grid

__all__ = ["encode_npz", "write_npz"]


def write_npz(data: Frame | Spectrum | Grid, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as ``.npz`` (atomically).

    :raises TypeError: ``data`` is not a frame, a spectrum or a grid.
    """
    return atomic_write(path, encode_npz(data))


def encode_npz(data: Frame | Spectrum | Grid) -> bytes:
    """The bytes of the ``.npz`` file for ``data`` (see the module docstring)."""
    arrays: dict[str, Any]
    if isinstance(data, Frame):
        arrays, meta = _frame(data)
    elif isinstance(data, Spectrum):
        arrays = {"sweep": data.sweep}
        arrays |= {f"channel/{name}": values for name, values in data.channels.items()}
        meta = {
            "kind": "spectrum",
            "sweep_name": data.sweep_name,
            "sweep_unit": data.sweep_unit,
            "units": data.units,
            "position": list(data.position),
            "started_at": data.started_at,
            "complete": data.complete,
            "header": data.metadata,
        }
    elif isinstance(data, Grid):
        arrays, meta = _grid(data)
    else:
        raise TypeError(f"cannot write a {type(data).__name__} as .npz")
    arrays["metadata.json"] = np.array(json.dumps(json_safe(meta), ensure_ascii=False))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _frame(frame: Frame) -> tuple[dict[str, Any], dict[str, Any]]:
    arrays: dict[str, FloatArray] = {}
    for name, channel in frame.channels.items():
        arrays[f"forward/{name}"] = channel.forward
        if channel.backward is not None:
            arrays[f"backward/{name}"] = channel.backward
    meta = {
        "kind": "frame",
        "units": {name: channel.unit for name, channel in frame.channels.items()},
        "area": _area(frame.area),
        "direction": frame.direction,
        "bias": frame.bias,
        "setpoint": frame.setpoint,
        "line_time": frame.line_time,
        "started_at": frame.started_at,
        "finished_at": frame.finished_at,
        "lines_done": frame.lines_done,
        "source": frame.source,
        "header": frame.metadata,
    }
    return dict(arrays), meta


def _grid(grid: Grid) -> tuple[dict[str, Any], dict[str, Any]]:
    arrays: dict[str, Any] = {"sweep": grid.sweep, "measured": grid.measured}
    arrays |= {f"channel/{name}": values for name, values in grid.channels.items()}
    arrays |= {f"parameter/{name}": values for name, values in grid.parameters.items()}
    meta = {
        "kind": "grid",
        "sweep_name": grid.sweep_name,
        "sweep_unit": grid.sweep_unit,
        "units": grid.units,
        "parameter_units": grid.parameter_units,
        "fixed": list(grid.fixed),
        "area": _area(grid.area),
        "started_at": grid.started_at,
        "finished_at": grid.finished_at,
        "source": grid.source,
        "header": grid.metadata,
    }
    return arrays, meta


def _area(area: ScanArea) -> dict[str, Any]:
    return {
        "centre": list(area.centre),
        "size": list(area.size),
        "pixels": area.pixels,
        "lines": area.lines,
        "angle": area.angle,
    }
