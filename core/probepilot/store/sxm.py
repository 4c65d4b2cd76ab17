"""Nanonis ``.sxm`` scan images: :func:`read_sxm` and :func:`write_sxm`.

Layout: a text header of ``:TAG:`` lines each followed by its value lines, ending with
``:SCANIT_END:``, then ``\\x1a\\x04`` and the data: for each channel of ``DATA_INFO`` in order, the
forward image then (direction ``both``) the backward image, each ``lines x pixels`` float32,
big-endian (``SCANIT_TYPE FLOAT MSBFIRST``).

How stored images map to the model (decided here, checked against Gwyddion and pySPM, which
agree): Nanonis stores lines in the order they were scanned, whatever ``SCAN_DIR`` says, so
stored row ``k`` is model row ``k`` and row 0 is the first line scanned. For ``down`` scans row 0
is the top edge of the area, for ``up`` scans the bottom edge; ``Frame.direction`` says which.
Backward images are stored in scan order too, i.e. mirrored in x; the reader reverses their
columns so backward pixel ``i`` lies over forward pixel ``i``. Unscanned lines of an aborted scan
are NaN, so ``lines_done`` is one past the last row holding any number.

``SCAN_ANGLE`` is in degrees, clockwise positive; the model's ``area.angle`` is in radians,
counter-clockwise positive. Channel data in degrees becomes radians (unit ``rad``). ``REC_DATE``/
``REC_TIME`` (no time zone in the file) are read as UTC, to the second. ``metadata`` keeps every
header entry as text, tables (``DATA_INFO``, ``Z-CONTROLLER``) as tab-separated lines.

The writer (:mod:`probepilot.store._sxm_writer`) keeps every metadata entry and rewrites only
the entries the frame's fields define, keeping the original text where it still says the same
thing; the data is float32, so values that are not float32 numbers are rounded.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from probepilot.model import Channel, Frame, ScanArea, ScanDirection
from probepilot.store._common import (
    BOM,
    SI_UNITS,
    FloatArray,
    MetaValue,
    Source,
    count,
    decode,
    fail,
    load,
    number,
    numbers,
    parse_time,
    show,
)
from probepilot.store._sxm_header import (
    ChannelInfo,
    data_info,
    first_number,
    parse_header,
    setpoint,
    to_model_angle,
)
from probepilot.store._sxm_writer import encode_sxm, write_sxm

__all__ = ["decode_sxm", "encode_sxm", "parse_header", "read_sxm", "write_sxm"]

_MAGIC = b":NANONIS_VERSION:"
_END = b":SCANIT_END:"
_MARK = b"\x1a\x04"
_DTYPES = {("FLOAT", "MSBFIRST"): ">f4", ("FLOAT", "LSBFIRST"): "<f4"}


def read_sxm(source: Source, *, name: str | None = None) -> Frame:
    """The frame in a Nanonis ``.sxm`` file (a path or the file's bytes).

    :param name: what error messages call the file (default: the path, or ``<bytes>``).
    :raises FormatError: the content is not a valid ``.sxm`` file; the message names the file
        and what is wrong.
    """
    data, label = load(source, name)
    return decode_sxm(data, label)


def decode_sxm(data: bytes, label: str = "<bytes>") -> Frame:
    """The frame in the bytes of an ``.sxm`` file; ``label`` names it in error messages."""
    start = len(BOM) if data.startswith(BOM) else 0
    if not data.startswith(_MAGIC, start):
        raise fail(
            label,
            "not a Nanonis .sxm file: it should start with ':NANONIS_VERSION:', "
            f"it starts with {show(data[start : start + 20])}",
        )
    end = data.find(_END, start)
    if end < 0:
        raise fail(label, "truncated header: there is no ':SCANIT_END:' line")
    mark = data.find(_MARK, end + len(_END), end + len(_END) + 16)
    if mark < 0:
        raise fail(
            label, "no data after the header: the \\x1a\\x04 marker after :SCANIT_END: is missing"
        )
    entries = parse_header(decode(data[start:end]))
    infos = data_info(entries, label)
    pixels, lines = _pixels(entries, label)
    block = _images(data, mark + len(_MARK), entries, infos, pixels, lines, label)
    channels = _channels(block, infos)
    started = _started(entries)
    return Frame(
        channels=channels,
        area=_area(entries, pixels, lines, label),
        direction=_direction(entries, label),
        bias=_bias(entries),
        setpoint=setpoint(entries),
        line_time=first_number(entries.get("SCAN_TIME", "")),
        started_at=started,
        finished_at=started + first_number(entries.get("ACQ_TIME", "")),
        lines_done=_lines_done(block),
        source=label,
        metadata=dict[str, MetaValue](entries),
    )


def _pixels(entries: dict[str, str], label: str) -> tuple[int, int]:
    text = entries.get("SCAN_PIXELS")
    if text is None:
        raise fail(label, "the header has no SCAN_PIXELS")
    parts = text.split()
    if len(parts) != 2:
        raise fail(label, f"SCAN_PIXELS: expected pixels and lines, found {show(text)}")
    return count(label, "SCAN_PIXELS", parts[0]), count(label, "SCAN_PIXELS", parts[1])


def _images(
    data: bytes,
    offset: int,
    entries: dict[str, str],
    infos: list[ChannelInfo],
    pixels: int,
    lines: int,
    label: str,
) -> npt.NDArray[np.float32]:
    """All images, ``(planes, lines, pixels)``, a view of the file's float32 data as stored;
    sizes are checked against the file before anything is made of them."""
    kind = entries.get("SCANIT_TYPE", "FLOAT MSBFIRST").split()
    dtype = _DTYPES.get((kind[0], kind[1])) if len(kind) == 2 else None
    if dtype is None:
        raise fail(
            label,
            f"SCANIT_TYPE {show(' '.join(kind))} is not supported (FLOAT MSBFIRST or LSBFIRST)",
        )
    planes = sum(info.forward + info.backward for info in infos)
    values = planes * lines * pixels
    have = len(data) - offset
    if have != 4 * values:
        what = "truncated" if have < 4 * values else "unexpected bytes after the data"
        raise fail(
            label,
            f"{what}: the header promises {planes} images of {pixels}x{lines} float32 "
            f"({4 * values} bytes) after the header, the file has {have}",
        )
    return np.frombuffer(data, dtype=dtype, count=values, offset=offset).reshape(
        planes, lines, pixels
    )


def _channels(block: npt.NDArray[np.float32], infos: list[ChannelInfo]) -> dict[str, Channel]:
    """Channels from the stored float32 images: float64, backward un-mirrored, degrees made
    radians. The whole file is converted in one go, the channels are views of the result: one
    large allocation is reused by the allocator from read to read, many image-sized ones come
    from fresh pages more often (measured: up to 2x slower)."""
    with np.errstate(invalid="ignore"):  # signalling NaNs are NaNs all the same
        converted = block.astype(np.float64)
    channels: dict[str, Channel] = {}
    plane = 0
    for info in infos:
        images: list[FloatArray | None] = []
        for present, mirrored in ((info.forward, False), (info.backward, True)):
            if not present:
                images.append(None)
                continue
            image = converted[plane]
            if info.unit in SI_UNITS:
                image *= SI_UNITS[info.unit][1]
            images.append(image[:, ::-1] if mirrored else image)
            plane += 1
        forward, backward = images
        if forward is None:  # backward-only channel: the model needs a forward trace
            forward = np.full(block.shape[1:], np.nan)
        unit = SI_UNITS.get(info.unit, (info.unit, 1.0))[0]
        channels[info.name] = Channel(info.name, unit, forward, backward)
    return channels


def _lines_done(block: npt.NDArray[np.float32]) -> int:
    """One past the last row holding any number in any image (rows are in scan order)."""
    if block.shape[1] == 0 or not np.isnan(block[:, -1, :]).all():
        return int(block.shape[1])
    rows = np.flatnonzero(~np.isnan(block).all(axis=(0, 2)))
    return int(rows[-1]) + 1 if rows.size else 0


def _area(entries: dict[str, str], pixels: int, lines: int, label: str) -> ScanArea:
    if "SCAN_RANGE" not in entries:
        raise fail(label, "the header has no SCAN_RANGE")
    width, height = numbers(label, "SCAN_RANGE", entries["SCAN_RANGE"], 2)
    x, y = numbers(label, "SCAN_OFFSET", entries.get("SCAN_OFFSET", "0 0"), 2)
    angle = number(label, "SCAN_ANGLE", entries.get("SCAN_ANGLE", "0"))
    return ScanArea((x, y), (width, height), pixels, lines, to_model_angle(angle))


def _direction(entries: dict[str, str], label: str) -> ScanDirection:
    direction = entries.get("SCAN_DIR", "down").strip().lower()
    if direction == "up":
        return "up"
    if direction == "down":
        return "down"
    raise fail(label, f"SCAN_DIR: {show(direction)} is neither 'up' nor 'down'")


def _bias(entries: dict[str, str]) -> float:
    return first_number(entries.get("BIAS", entries.get("Bias>Bias (V)", "")))


def _started(entries: dict[str, str]) -> float:
    if "REC_DATE" not in entries or "REC_TIME" not in entries:
        return math.nan
    return parse_time(f"{entries['REC_DATE']} {entries['REC_TIME']}")
