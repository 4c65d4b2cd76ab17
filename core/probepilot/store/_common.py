"""Plumbing shared by the readers and writers: where bytes come from, how a bad file is reported,
how numbers and times are parsed and printed so that a round trip is exact.

Every reader takes a path *or* the file's bytes (so tests can fuzz in memory) and raises only
:class:`~probepilot.errors.FormatError`, whose one-line message starts with the file's name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from probepilot.errors import FormatError

#: What a reader accepts: a path to the file, or the file's content.
Source: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

#: Header values as the model's ``metadata`` holds them.
MetaValue: TypeAlias = str | float | int

BOM = b"\xef\xbb\xbf"

#: Non-SI units instruments write, with the SI unit and the factor to it; readers multiply.
SI_UNITS: dict[str, tuple[str, float]] = {"deg": ("rad", math.pi / 180.0), "ms": ("s", 1e-3)}

#: SI units that Nanonis files never hold, with the unit they are written in and the factor
#: from it (writers divide by it): angles go back to degrees, seconds stay seconds.
FILE_UNITS: dict[str, tuple[str, float]] = {"rad": ("deg", math.pi / 180.0)}

# Nanonis writes local wall-clock time without a zone; probepilot reads it as UTC so that a file
# means the same timestamp on every machine and a round trip is exact.
_TIME_FORMAT = "%d.%m.%Y %H:%M:%S"


def load(source: Source, name: str | None) -> tuple[bytes, str]:
    """The bytes of ``source`` and the label error messages use for it (the path, or ``name``)."""
    if isinstance(source, bytes):
        return source, name or "<bytes>"
    if isinstance(source, bytearray | memoryview):
        return bytes(source), name or "<bytes>"
    path = Path(source)
    label = name or str(path)
    try:
        return path.read_bytes(), label
    except OSError as exc:
        raise FormatError(f"{label}: cannot be read: {exc.strerror or exc}") from exc


def fail(label: str, problem: str, hint: str | None = None) -> FormatError:
    """A :class:`FormatError` for ``label``; the caller raises it."""
    return FormatError(f"{label}: {problem}", hint=hint)


def show(text: str | bytes, limit: int = 40) -> str:
    """A short, printable rendering of a bad value for an error message."""
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def decode(raw: bytes) -> str:
    """Header text: UTF-8, or Latin-1 for the Windows code-page bytes older instruments write.

    Latin-1 maps every byte, so a stray non-UTF-8 byte in a comment never makes a file
    unreadable; a corrupt byte in a value that matters fails where that value is parsed.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def number(label: str, key: str, text: str) -> float:
    """``text`` as a float, or a :class:`FormatError` naming ``key``."""
    try:
        return float(text)
    except ValueError:
        raise fail(label, f"{key}: {show(text)} is not a number") from None


def numbers(label: str, key: str, text: str, count: int, sep: str | None = None) -> list[float]:
    """Exactly ``count`` floats separated by ``sep`` (whitespace when None)."""
    parts = text.split(sep)
    if len(parts) != count:
        raise fail(label, f"{key}: expected {count} numbers, found {show(text)}")
    return [number(label, key, part) for part in parts]


def count(label: str, key: str, text: str, *, limit: int = 1 << 31) -> int:
    """A positive integer no larger than ``limit`` (sizes are checked against the file later)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise fail(label, f"{key}: {show(text)} is not a whole number") from None
    if not 0 < value <= limit:
        raise fail(label, f"{key}: {value} is out of range (1 to {limit})")
    return value


def parse_time(text: str) -> float:
    """A Nanonis ``dd.mm.yyyy HH:MM:SS`` time as a POSIX timestamp (UTC), NaN if unparsable.

    A bad timestamp is not worth refusing a file for; the raw text stays in the metadata.
    """
    try:
        moment = datetime.strptime(text.strip(), _TIME_FORMAT)
    except ValueError:
        return math.nan
    return moment.replace(tzinfo=UTC).timestamp()


def format_time(timestamp: float) -> str:
    """The Nanonis text for ``timestamp`` (whole seconds, UTC)."""
    return datetime.fromtimestamp(math.floor(timestamp), UTC).strftime(_TIME_FORMAT)


def fmt(value: float) -> str:
    """The shortest text that reads back as exactly ``value``, in Nanonis' spelling."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(float(value)).replace("e", "E")


def exact_text(
    value: float, convert: Callable[[float], float], invert: Callable[[float], float]
) -> str:
    """Text for ``invert(value)`` chosen so that ``convert`` of it gives back exactly ``value``.

    Unit conversions (degrees clockwise to radians counter-clockwise ...) are not exactly
    invertible in floating point; one or two neighbouring floats always are.
    """
    guess = invert(value)
    if not math.isfinite(guess):
        return fmt(guess)
    candidates = [guess]
    below = above = guess
    for _ in range(4):
        below, above = math.nextafter(below, -math.inf), math.nextafter(above, math.inf)
        candidates += [below, above]
    for candidate in candidates:
        if convert(candidate) == value:
            return fmt(candidate)
    return fmt(guess)


def split_unit(title: str) -> tuple[str, str]:
    """``"Current [bwd] (A)"`` -> ``("Current [bwd]", "A")``; the unit is the last ``(...)``.

    Nanonis puts tags on either side of the unit (``"Current (A) [filt]"``); the name keeps the
    tags in their order, the unit is taken out. A title without parentheses has unit ``""``.
    """
    close = title.rfind(")")
    open_ = title.rfind("(", 0, close) if close >= 0 else -1
    if open_ < 0:
        return title.strip(), ""
    name = " ".join((title[:open_] + " " + title[close + 1 :]).split())
    return name, title[open_ + 1 : close].strip()


def to_si(values: FloatArray, unit: str) -> tuple[FloatArray, str]:
    """``values`` in ``unit`` converted in place to SI, with the SI unit."""
    if unit in SI_UNITS:
        si_unit, factor = SI_UNITS[unit]
        values *= factor
        return values, si_unit
    return values, unit


def from_si(values: FloatArray, unit: str) -> tuple[FloatArray, str]:
    """``values`` in SI ``unit`` converted to the unit files use (a new array), with that unit.

    Division by the reader's factor is corrected to the neighbouring float where needed, so that
    reading the written numbers back gives exactly ``values`` (see :func:`exact_text`).
    """
    if unit not in FILE_UNITS:
        return values, unit
    file_unit, factor = FILE_UNITS[unit]
    out = values / factor
    for _ in range(2):
        off = (out * factor != values) & np.isfinite(out)
        if not off.any():
            break
        up = np.nextafter(out, np.inf)
        down = np.nextafter(out, -np.inf)
        out = np.where(off & (up * factor == values), up, out)
        out = np.where(off & (down * factor == values), down, out)
    return out, file_unit


def json_safe(value: object) -> object:
    """``value`` (dicts, lists, scalars) with NaN and infinities replaced by None: strict JSON
    has neither, and summaries and ``.npz`` metadata must load in any JSON parser."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader, a killed process or a power cut never sees
    half a file: a temporary name in the same folder, fsync, rename into place, fsync the folder.

    The folder's fsync is what makes the rename itself durable: without it a power cut after
    the call returns can leave the old name (or none) even though the data blocks were synced.
    A killed writer may leave its temporary file (``.NAME.PID.tmp``) behind; nothing reads it.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return target


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make the entries of ``folder`` (files created, renamed or removed in it) durable.

    POSIX only: Windows cannot open a folder for fsync and makes renames durable on its own.
    """
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
