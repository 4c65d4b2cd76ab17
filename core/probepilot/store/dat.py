"""Nanonis ``.dat`` point spectra: :func:`read_dat` and :func:`write_dat`.

Layout: header lines ``key<TAB>value<TAB>``, a blank line, ``[DATA]``, a line of tab-separated
column titles such as ``Bias calc (V)`` or ``Current [bwd] (A)``, then one row of numbers per
sweep point. Files come with CRLF or LF line endings, sometimes a byte-order mark.

In the model the first column is the sweep (``sweep_name`` ``"Bias calc"``, ``sweep_unit``
``"V"``); every other column is a channel named by its title without the unit (``"Current"``,
``"Current [bwd]"``, ``"Current [filt]"``), its unit in ``units``. Degrees become radians.
Backward sweeps are stored aligned with the forward sweep already, so they are kept as they are.

An interrupted sweep is recognised two ways: trailing rows where every channel is NaN (they are
dropped), or fewer rows than the header's ``... Spectroscopy>Num Pixel`` planned; either makes
``complete`` False. ``started_at`` comes from ``Start time``, else ``Date``, else ``Saved Date``
(read as UTC). ``metadata`` keeps every header entry as text; repeated keys keep the last value.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from probepilot.model import Spectrum
from probepilot.store._common import (
    BOM,
    FloatArray,
    MetaValue,
    Source,
    atomic_write,
    decode,
    fail,
    fmt,
    format_time,
    from_si,
    load,
    parse_time,
    show,
    split_unit,
    to_si,
)

__all__ = ["decode_dat", "encode_dat", "read_dat", "write_dat"]

_DATA = re.compile(r"^\[DATA\][ \t]*\r?$", re.MULTILINE)
#: Header keys holding the start time, in the order the reader trusts them.
_TIME_KEYS = ("Start time", "Date", "Saved Date")
#: Experiment -> header key with the number of sweep points planned.
_PLANNED = {
    "bias spectroscopy": "Bias Spectroscopy>Num Pixel",
    "z spectroscopy": "Z Spectroscopy>Num Pixel",
}


# ------------------------------------------------------------------------------------------
# Reading


def read_dat(source: Source, *, name: str | None = None) -> Spectrum:
    """The spectrum in a Nanonis ``.dat`` file (a path or the file's bytes).

    :param name: what error messages call the file (default: the path, or ``<bytes>``).
    :raises FormatError: the content is not a valid ``.dat`` spectrum.
    """
    data, label = load(source, name)
    return decode_dat(data, label)


def decode_dat(data: bytes, label: str = "<bytes>") -> Spectrum:
    """The spectrum in the bytes of a ``.dat`` file; ``label`` names it in error messages."""
    text = decode(data[len(BOM) :] if data.startswith(BOM) else data)
    marker = _DATA.search(text)
    if marker is None:
        raise fail(label, "not a Nanonis .dat spectrum: there is no [DATA] line")
    header = _header(text[: marker.start()])
    titles_line, _, body = text[marker.end() :].lstrip("\r\n").partition("\n")
    titles = [title.strip() for title in titles_line.rstrip("\r\t ").split("\t")]
    if not titles[0]:
        raise fail(label, "there are no column titles after [DATA]")
    table = _table(body, len(titles), label)
    names, units = _columns(titles)
    columns = [to_si(table[:, i].copy(), unit) for i, unit in enumerate(units)]
    rows = _rows_measured(table)
    planned = _planned(header)
    sweep, sweep_unit = columns[0]
    return Spectrum(
        sweep_name=names[0],
        sweep_unit=sweep_unit,
        sweep=sweep[:rows],
        channels={n: values[:rows] for n, (values, _) in zip(names[1:], columns[1:], strict=True)},
        units={n: unit for n, (_, unit) in zip(names[1:], columns[1:], strict=True)},
        position=(_number(header.get("X (m)")), _number(header.get("Y (m)"))),
        started_at=_started(header),
        complete=rows == len(table) and (planned is None or rows >= planned),
        metadata=dict[str, MetaValue](header),
    )


def _header(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.partition("\t")
            entries[key.strip()] = value.strip()
    return entries


def _table(body: str, columns: int, label: str) -> FloatArray:
    """The numbers, ``(rows, columns)``, parsed by numpy's C reader."""
    if not body.strip():
        return np.empty((0, columns))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (instead of failing) on some bad input
            table = np.loadtxt(io.StringIO(body), dtype=np.float64, comments=None, ndmin=2)
    except (ValueError, Warning) as exc:
        problem = " ".join(str(exc).split())
        raise fail(
            label, f"the data table is not a table of numbers: {show(problem, 120)}"
        ) from None
    if table.shape[1] != columns:
        raise fail(
            label, f"the data rows have {table.shape[1]} numbers, there are {columns} titles"
        )
    return table


def _columns(titles: list[str]) -> tuple[list[str], list[str]]:
    """Names (made unique) and units of the columns."""
    names: list[str] = []
    units: list[str] = []
    for title in titles:
        name, unit = split_unit(title)
        base, n = name, 2
        while name in names:
            name, n = f"{base} #{n}", n + 1
        names.append(name)
        units.append(unit)
    return names, units


def _rows_measured(table: FloatArray) -> int:
    """Rows up to the last one where some channel (not the sweep) holds a number."""
    if table.shape[1] < 2 or len(table) == 0:
        return len(table)
    rows = np.flatnonzero(~np.isnan(table[:, 1:]).all(axis=1))
    return int(rows[-1]) + 1 if rows.size else 0


def _planned(header: dict[str, str]) -> int | None:
    key = _PLANNED.get(header.get("Experiment", "").strip().lower())
    try:
        return int(header[key]) if key else None
    except (KeyError, ValueError):
        return None


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _started(header: dict[str, str]) -> float:
    for key in _TIME_KEYS:
        moment = parse_time(header.get(key, ""))
        if math.isfinite(moment):
            return moment
    return math.nan


# ------------------------------------------------------------------------------------------
# Writing


def write_dat(spectrum: Spectrum, path: str | os.PathLike[str]) -> Path:
    """Write ``spectrum`` as a Nanonis ``.dat`` file (atomically: temporary file, fsync, rename).

    Numbers are written with as many digits as it takes to read them back exactly. An
    incomplete spectrum gets NaN rows up to the planned number of points (at least one), which
    is how the reader recognises it.

    :raises ValueError: array lengths differ, or a name has a tab or newline.
    """
    return atomic_write(path, encode_dat(spectrum))


def encode_dat(spectrum: Spectrum) -> bytes:
    """The bytes of the ``.dat`` file for ``spectrum`` (see :func:`write_dat`)."""
    titles, columns = _columns_out(spectrum)
    entries = _entries(spectrum, len(columns[0]))
    table = np.column_stack(columns) if columns else np.empty((0, 0))
    planned = _planned(entries)
    if not spectrum.complete:
        missing = max(1, (planned or 0) - len(table))
        table = np.vstack((table, np.full((missing, len(titles)), np.nan)))
    lines = [f"{key}\t{value}\t" for key, value in entries.items()]
    lines += ["", "[DATA]", "\t".join(titles)]
    lines += ["\t".join(map(fmt, row)) for row in table.tolist()]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _title(name: str, unit: str) -> str:
    """Nanonis' spelling: the unit before a trailing ``[filt]`` tag; ``()`` keeps a name with
    parentheses from losing them to the unit."""
    if any(c in name + unit for c in "\t\r\n"):
        raise ValueError(f"column {name!r} (unit {unit!r}) has a tab or newline")
    if not unit:
        return f"{name} ()" if "(" in name else name
    if name.endswith(" [filt]"):
        return f"{name[: -len(' [filt]')]} ({unit}) [filt]"
    return f"{name} ({unit})"


def _columns_out(spectrum: Spectrum) -> tuple[list[str], list[FloatArray]]:
    sweep, sweep_unit = from_si(np.asarray(spectrum.sweep, dtype=np.float64), spectrum.sweep_unit)
    titles, columns = [_title(spectrum.sweep_name, sweep_unit)], [sweep]
    for name, values in spectrum.channels.items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != sweep.shape:
            raise ValueError(f"channel {name!r} has shape {array.shape}, the sweep {sweep.shape}")
        converted, unit = from_si(array, spectrum.units.get(name, ""))
        titles.append(_title(name, unit))
        columns.append(converted)
    return titles, columns


def _entries(spectrum: Spectrum, rows: int) -> dict[str, str]:
    """Header entries: metadata kept, position, time and point count rewritten as needed."""
    entries = {k: v if isinstance(v, str) else fmt(float(v)) for k, v in spectrum.metadata.items()}
    for key, value in entries.items():  # values may hold tabs: the reader splits at the first
        if any(c in key for c in "\t\r\n") or any(c in value for c in "\r\n") or key == "[DATA]":
            raise ValueError(f"metadata entry {key!r}: {value!r} cannot go in a .dat header")
    if "Experiment" not in entries:
        kind = "bias spectroscopy" if spectrum.sweep_unit == "V" else "spectroscopy"
        entries = {"Experiment": kind, **entries}
    for key, coordinate in zip(("X (m)", "Y (m)"), spectrum.position, strict=True):
        old = _number(entries.get(key))
        if not (old == coordinate or (math.isnan(old) and math.isnan(coordinate))):
            entries[key] = fmt(coordinate)
    started = spectrum.started_at
    if not (
        _started(entries) == started or (math.isnan(started) and math.isnan(_started(entries)))
    ):
        if math.isfinite(started):
            entries["Start time" if "Start time" in entries else "Date"] = format_time(started)
        else:
            entries.update({key: "" for key in _TIME_KEYS if key in entries})
    planned_key = _PLANNED.get(entries["Experiment"].strip().lower())
    if spectrum.complete and planned_key in entries and _planned(entries) != rows:
        entries[str(planned_key)] = str(rows)
    return entries
