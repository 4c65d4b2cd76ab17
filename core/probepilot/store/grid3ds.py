"""Nanonis ``.3ds`` grid spectroscopy: :func:`read_3ds` and :func:`write_3ds`.

Layout: header lines ``key=value`` (lists separated by ``;``, some values in double quotes) up
to ``:HEADER_END:``, then for every grid point, row by row: the point's parameters (the fixed
ones, ``Sweep Start;Sweep End``, then the experiment ones, ``X (m);Y (m);Z (m);...``) and each
channel's sweep, all float32 big-endian. ``Grid dim="nx x ny"``; ``Grid settings`` is centre x,
centre y, width, height and angle (degrees, clockwise like scans).

Points never measured (an aborted grid) are stored as zeros; the reader marks them in
``Grid.measured`` and makes their values NaN; the writer stores zeros again. The sweep is
rebuilt from the first measured point's ``Sweep Start``/``Sweep End`` (the first two fixed
parameters). Degrees become radians. Old headers (2016) lack ``Delay before measuring``,
``Start time`` and ``End time``; the writer always adds them (other readers require them), so a
rewritten old file has those extra metadata entries.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from probepilot.model import ScanArea
from probepilot.store._common import (
    BOM,
    BoolArray,
    FloatArray,
    MetaValue,
    Source,
    atomic_write,
    count,
    decode,
    exact_text,
    fail,
    fmt,
    format_time,
    from_si,
    load,
    numbers,
    parse_time,
    show,
    split_unit,
    to_si,
)
from probepilot.store.grid import Grid

__all__ = ["decode_3ds", "encode_3ds", "read_3ds", "write_3ds"]

_MAGIC = b"Grid dim="
_END = b":HEADER_END:"
_DIM = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
#: Keys Nanonis writes with their value in double quotes.
_QUOTED = frozenset(
    {
        "Grid dim",
        "Sweep Signal",
        "Fixed parameters",
        "Experiment parameters",
        "Channels",
        "Date",
        "Start time",
        "End time",
        "Comment",
    }
)


# ------------------------------------------------------------------------------------------
# Reading


def read_3ds(source: Source, *, name: str | None = None) -> Grid:
    """The grid in a Nanonis ``.3ds`` file (a path or the file's bytes).

    :param name: what error messages call the file (default: the path, or ``<bytes>``).
    :raises FormatError: the content is not a valid ``.3ds`` file.
    """
    data, label = load(source, name)
    return decode_3ds(data, label)


def decode_3ds(data: bytes, label: str = "<bytes>") -> Grid:
    """The grid in the bytes of a ``.3ds`` file; ``label`` names it in error messages."""
    start = len(BOM) if data.startswith(BOM) else 0
    if not data.startswith(_MAGIC, start):
        raise fail(
            label,
            "not a Nanonis .3ds grid: it should start with 'Grid dim=', "
            f"it starts with {show(data[start : start + 20])}",
        )
    end = data.find(_END, start)
    if end < 0:
        raise fail(label, "truncated header: there is no ':HEADER_END:' line")
    offset = end + len(_END)
    offset += 2 if data.startswith(b"\r\n", offset) else 1 if data.startswith(b"\n", offset) else 0
    entries = _header(decode(data[start:end]))
    nx, ny = _dimensions(entries, label)
    fixed = _list(entries.get("Fixed parameters", ""))
    names = fixed + _list(entries.get("Experiment parameters", ""))
    channels = _list(_required(entries, "Channels", label))
    points = count(label, "Points", _required(entries, "Points", label))
    _check_sizes(entries, len(names), len(channels), points, label)
    if not channels:
        raise fail(label, "Channels lists no channels")
    per_point = len(names) + len(channels) * points
    have = len(data) - offset
    if have != 4 * nx * ny * per_point:
        what = "truncated" if have < 4 * nx * ny * per_point else "unexpected bytes after the data"
        raise fail(
            label,
            f"{what}: the header promises {nx}x{ny} points of {per_point} float32 "
            f"({4 * nx * ny * per_point} bytes) after the header, the file has {have}",
        )
    raw = np.frombuffer(data, ">f4", count=nx * ny * per_point, offset=offset)
    with np.errstate(invalid="ignore"):  # signalling NaNs in the data are NaNs all the same
        block = raw.astype(np.float64).reshape(ny, nx, per_point)
    measured = ((block != 0) & ~np.isnan(block)).any(axis=-1)
    block[~measured] = np.nan
    sweep_name, sweep_unit = split_unit(_required(entries, "Sweep Signal", label))
    sweep = _sweep(block, measured, len(fixed), points)
    parameters, parameter_units = _named(names, [block[..., i] for i in range(len(names))])
    values = block[..., len(names) :].reshape(ny, nx, len(channels), points)
    grid_channels, units = _named(channels, [values[..., k, :] for k in range(len(channels))])
    settings = numbers(label, "Grid settings", _required(entries, "Grid settings", label), 5, ";")
    sweep, sweep_unit = to_si(sweep, sweep_unit)
    return Grid(
        sweep_name=sweep_name,
        sweep_unit=sweep_unit,
        sweep=sweep,
        channels=grid_channels,
        units=units,
        parameters=parameters,
        parameter_units=parameter_units,
        measured=measured,
        area=ScanArea(
            (settings[0], settings[1]), (settings[2], settings[3]), nx, ny, _to_model(settings[4])
        ),
        fixed=tuple(split_unit(name)[0] for name in fixed),
        started_at=_time(entries, ("Start time", "Date")),
        finished_at=_time(entries, ("End time",)),
        source=label,
        metadata=dict[str, MetaValue](entries),
    )


def _header(text: str) -> dict[str, str]:
    """``key=value`` entries, quotes removed; a line without ``=`` continues the last value
    (multi-line comments)."""
    entries: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            last = key.strip()
            entries[last] = value.strip()
        elif last is not None and line.strip():
            entries[last] += "\n" + line.strip()
    for key, value in entries.items():
        if len(value) >= 2 and value[0] == value[-1] == '"':
            entries[key] = value[1:-1]
    return entries


def _required(entries: dict[str, str], key: str, label: str) -> str:
    if key not in entries:
        raise fail(label, f"the header has no {key!r}")
    return entries[key]


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(";")] if text.strip() else []


def _dimensions(entries: dict[str, str], label: str) -> tuple[int, int]:
    text = _required(entries, "Grid dim", label)
    match = _DIM.match(text)
    if match is None:
        raise fail(label, f"Grid dim: expected 'nx x ny', found {show(text)}")
    return count(label, "Grid dim", match[1]), count(label, "Grid dim", match[2])


def _check_sizes(
    entries: dict[str, str], parameters: int, channels: int, points: int, label: str
) -> None:
    """The header states its sizes twice; both must agree before anything is allocated."""
    stated = count(
        label, "# Parameters (4 byte)", _required(entries, "# Parameters (4 byte)", label)
    )
    if stated != parameters:
        raise fail(
            label,
            f"# Parameters (4 byte) says {stated}, the fixed and experiment parameters "
            f"name {parameters}",
        )
    key = "Experiment size (bytes)"
    size = count(label, key, _required(entries, key, label))
    if size != 4 * channels * points:
        raise fail(
            label,
            f"{key} says {size}, {channels} channels of {points} points take "
            f"{4 * channels * points}",
        )


def _sweep(block: FloatArray, measured: BoolArray, fixed: int, points: int) -> FloatArray:
    """The sweep from the first measured point's start and end (NaN if there is none)."""
    first = np.argwhere(measured)
    if fixed < 2 or not first.size:
        return np.full(points, np.nan)
    start, end = block[first[0][0], first[0][1], :2]
    return np.linspace(start, end, points)


def _named(
    titles: list[str], arrays: list[FloatArray]
) -> tuple[dict[str, FloatArray], dict[str, str]]:
    """Arrays keyed by name (unit taken out, made SI), and their units."""
    values: dict[str, FloatArray] = {}
    units: dict[str, str] = {}
    for title, array in zip(titles, arrays, strict=True):
        name, unit = split_unit(title)
        if name in values:
            name = title  # two titles differing only in unit keep their full titles
        values[name], units[name] = to_si(array, unit)
    return values, units


def _time(entries: dict[str, str], keys: tuple[str, ...]) -> float:
    for key in keys:
        moment = parse_time(entries.get(key, ""))
        if math.isfinite(moment):
            return moment
    return math.nan


def _to_model(degrees_clockwise: float) -> float:
    return 0.0 - math.radians(degrees_clockwise)


def _to_file(radians_counter_clockwise: float) -> float:
    return 0.0 - math.degrees(radians_counter_clockwise)


# ------------------------------------------------------------------------------------------
# Writing


def write_3ds(grid: Grid, path: str | os.PathLike[str]) -> Path:
    """Write ``grid`` as a Nanonis ``.3ds`` file (atomically: temporary file, fsync, rename).

    Values are float32 in the file. Unmeasured points are written as zeros, as Nanonis does.

    :raises ValueError: array shapes disagree, or a name has ``;``, a quote or a newline.
    """
    return atomic_write(path, encode_3ds(grid))


def encode_3ds(grid: Grid) -> bytes:
    """The bytes of the ``.3ds`` file for ``grid`` (see :func:`write_3ds`)."""
    ny, nx = grid.shape
    points = len(grid.sweep)
    fixed_titles, experiment_titles, parameter_planes = _parameters_out(grid)
    channel_titles, channel_blocks = _channels_out(grid, ny, nx, points)
    stack = np.concatenate([np.stack(parameter_planes, axis=-1), *channel_blocks], axis=-1)
    measured = np.asarray(grid.measured, dtype=bool)
    if measured.shape != (ny, nx):
        raise ValueError(f"measured has shape {measured.shape}, the grid is {(ny, nx)}")
    stack[~measured] = 0.0
    entries = _entries(grid, fixed_titles, experiment_titles, channel_titles, points)
    lines = [f'{k}="{v}"' if k in _QUOTED else f"{k}={v}" for k, v in entries.items()]
    header = "\r\n".join([*lines, ":HEADER_END:", ""])
    return header.encode("utf-8") + stack.astype(">f4").tobytes()


def _check_name(name: str) -> None:
    if not name or any(c in name for c in ';"\r\n'):
        raise ValueError(f"name {name!r} is empty or has a ';', '\"' or newline")


def _title(name: str, unit: str) -> str:
    _check_name(name)
    return f"{name} ({unit})" if unit else name


def _parameters_out(grid: Grid) -> tuple[list[str], list[str], list[FloatArray]]:
    """Titles of the fixed and experiment parameters and their planes (fixed first)."""
    shape = grid.shape
    names = list(grid.fixed) + [n for n in grid.parameters if n not in grid.fixed]
    planes: list[FloatArray] = []
    titles: list[str] = []
    for name in names:
        if name not in grid.parameters:
            raise ValueError(f"fixed parameter {name!r} has no values in parameters")
        plane = np.asarray(grid.parameters[name], dtype=np.float64)
        if plane.shape != shape:
            raise ValueError(f"parameter {name!r} has shape {plane.shape}, the grid is {shape}")
        plane, unit = from_si(plane, grid.parameter_units.get(name, ""))
        planes.append(plane)
        titles.append(_title(name, unit))
    fixed_count = len(grid.fixed)
    if fixed_count == 0:  # the reader rebuilds the sweep from these two
        sweep = from_si(np.asarray(grid.sweep, dtype=np.float64), grid.sweep_unit)[0]
        ends = [
            np.full(shape, sweep[0] if sweep.size else np.nan),
            np.full(shape, sweep[-1] if sweep.size else np.nan),
        ]
        return ["Sweep Start", "Sweep End"], titles, ends + planes
    return titles[:fixed_count], titles[fixed_count:], planes


def _channels_out(grid: Grid, ny: int, nx: int, points: int) -> tuple[list[str], list[FloatArray]]:
    titles: list[str] = []
    blocks: list[FloatArray] = []
    for name, values in grid.channels.items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (ny, nx, points):
            raise ValueError(
                f"channel {name!r} has shape {array.shape}, expected {(ny, nx, points)}"
            )
        converted, unit = from_si(array, grid.units.get(name, ""))
        titles.append(_title(name, unit))
        blocks.append(converted)
    if not blocks:
        raise ValueError("a .3ds file needs at least one channel; the grid has none")
    return titles, blocks


def _entries(
    grid: Grid,
    fixed: list[str],
    experiment: list[str],
    channels: list[str],
    points: int,
) -> dict[str, str]:
    """Header entries: structure from the grid, everything else from metadata, in file order."""
    meta = {k: v if isinstance(v, str) else fmt(float(v)) for k, v in grid.metadata.items()}
    for key, value in meta.items():
        rest = value.split("\n")[1:]  # continuation lines: the reader strips them, skips blanks
        if any(c in key for c in "=\r\n") or any(
            "=" in line or "\r" in line or line != line.strip() or not line for line in rest
        ):
            raise ValueError(f"metadata entry {key!r}: {value!r} cannot go in a .3ds header")
    area = grid.area
    settings = [*area.centre, *area.size]
    old = meta.get("Grid settings", "").split(";")
    same = (
        len(old) == 5 and _floats(old[:4]) == settings and _to_model(_float(old[4])) == area.angle
    )
    angle = exact_text(area.angle, _to_model, _to_file)
    sweep_unit = from_si(np.zeros(0), grid.sweep_unit)[1]
    structure = {
        "Grid dim": f"{area.pixels} x {area.lines}",
        "Grid settings": meta["Grid settings"] if same else ";".join([*map(fmt, settings), angle]),
        "Sweep Signal": _title(grid.sweep_name, sweep_unit),
        "Fixed parameters": ";".join(fixed),
        "Experiment parameters": ";".join(experiment),
        "# Parameters (4 byte)": str(len(fixed) + len(experiment)),
        "Experiment size (bytes)": str(4 * len(channels) * points),
        "Points": str(points),
        "Channels": ";".join(channels),
        "Delay before measuring (s)": meta.get("Delay before measuring (s)", "0"),
        "Experiment": meta.get("Experiment", "Grid Spectroscopy"),
        "Start time": _time_text(meta, ("Start time", "Date"), grid.started_at),
        "End time": _time_text(meta, ("End time",), grid.finished_at),
        "User": meta.get("User", ""),
        "Comment": meta.get("Comment", ""),
    }
    if "Date" in meta and not math.isfinite(grid.started_at):
        structure["Date"] = ""  # else the reader would fall back to it
    # "Grid dim" first: it is how readers recognise the file
    order = ["Grid dim", *(k for k in [*meta, *structure] if k != "Grid dim")]
    order = list(dict.fromkeys(order))
    return {key: structure[key] if key in structure else meta[key] for key in order}


def _time_text(meta: dict[str, str], keys: tuple[str, ...], moment: float) -> str:
    """The text for a time entry: kept if it still reads as ``moment``, blank for NaN."""
    if _time(meta, keys) == moment:
        for key in keys:
            if math.isfinite(parse_time(meta.get(key, ""))):
                return meta[key]
    return format_time(moment) if math.isfinite(moment) else ""


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _floats(texts: list[str]) -> list[float]:
    return [_float(text) for text in texts]
