"""Writing ``.sxm`` files: the frame's fields become header entries, its channels images.

Every metadata entry is kept; the entries the frame's fields define are rewritten, keeping the
metadata's original text wherever it still says the same thing (so a file read and written back
has the same header). Images are float32, big-endian, backward traces mirrored as Nanonis stores
them; radians go back to degrees.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from probepilot.errors import FormatError
from probepilot.model import Frame
from probepilot.store._common import (
    FloatArray,
    MetaValue,
    atomic_write,
    exact_text,
    fmt,
    format_time,
    from_si,
    parse_time,
)
from probepilot.store._sxm_header import (
    DATA_INFO_TITLES,
    SCANIT_TYPE,
    TABLES,
    ChannelInfo,
    data_info,
    first_number,
    setpoint,
    table_cell,
    to_file_angle,
    to_model_angle,
)

__all__ = ["encode_sxm", "write_sxm"]

_MARK = b"\x1a\x04"


def write_sxm(frame: Frame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as a Nanonis ``.sxm`` file (atomically: temporary file, fsync, rename).

    :raises ValueError: the frame cannot be written (array shapes disagree with the area, a
        channel name has a tab or newline, no channels).
    """
    return atomic_write(path, encode_sxm(frame))


def encode_sxm(frame: Frame) -> bytes:
    """The bytes of the ``.sxm`` file for ``frame`` (see :func:`write_sxm`)."""
    infos, planes = _planes(frame)
    entries = _entries(frame, infos)
    lines: list[str] = []
    for key, value in entries.items():
        lines.append(f":{key}:")
        rows = value.split("\n")
        lines += ["\t" + row for row in rows] if key in TABLES else rows
    # DATA_INFO last, one blank line, the end tag, then Nanonis' exact 4 bytes before the data:
    # other readers (nanonispy) count on all three.
    header = "\n".join(lines) + "\n\n:SCANIT_END:\n\n\n"
    data = np.stack(planes).astype(">f4")
    return header.encode("utf-8") + _MARK + data.tobytes()


def _planes(frame: Frame) -> tuple[list[ChannelInfo], list[FloatArray]]:
    """DATA_INFO rows and the images in file order (backward mirrored, SI undone)."""
    if not frame.channels:
        raise ValueError("a .sxm file needs at least one channel; the frame has none")
    shape = (frame.area.lines, frame.area.pixels)
    old = {info.name: info for info in _old_data_info(frame.metadata.get("DATA_INFO"))}
    infos: list[ChannelInfo] = []
    planes: list[FloatArray] = []
    for index, (name, channel) in enumerate(frame.channels.items()):
        if not name or any(c in name + channel.unit for c in "\t\n\r"):
            raise ValueError(
                f"channel {name!r} (unit {channel.unit!r}): empty, or has a tab or newline"
            )
        for trace, image in (("forward", channel.forward), ("backward", channel.backward)):
            if image is not None and image.shape != shape:
                raise ValueError(
                    f"channel {name!r}: {trace} image has shape {image.shape}, area says {shape}"
                )
        forward, unit = from_si(np.asarray(channel.forward, dtype=np.float64), channel.unit)
        planes.append(forward)
        if channel.backward is not None:
            backward = from_si(np.asarray(channel.backward, dtype=np.float64), channel.unit)[0]
            planes.append(backward[:, ::-1])
        was = old.get(name)
        infos.append(
            ChannelInfo(
                name,
                unit,
                True,
                channel.backward is not None,
                was.number if was else str(index),
                was.calibration if was else "1.000E+0",
                was.offset if was else "0.000E+0",
            )
        )
    return infos, planes


def _old_data_info(table: MetaValue | None) -> list[ChannelInfo]:
    """The DATA_INFO rows of a frame read from a file, to keep channel numbers and calibration."""
    if not isinstance(table, str):
        return []
    try:
        return data_info({"DATA_INFO": table}, "")
    except FormatError:  # stale or edited metadata is simply not reused
        return []


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _entries(frame: Frame, infos: list[ChannelInfo]) -> dict[str, str]:
    """Header entries in file order: metadata kept, the frame's own fields rewritten."""
    meta = {key: v if isinstance(v, str) else fmt(float(v)) for key, v in frame.metadata.items()}
    for key in meta:
        if not key or "\n" in key or "\r" in key:
            raise ValueError(f"metadata key {key!r} cannot be a .sxm header tag")
    computed = _computed(frame, meta)
    computed["DATA_INFO"] = "\n".join(
        [DATA_INFO_TITLES]
        + [
            "\t".join(
                (
                    i.number,
                    i.name,
                    i.unit,
                    "both" if i.backward else "forward",
                    i.calibration,
                    i.offset,
                )
            )
            for i in infos
        ]
    )
    skip = {"NANONIS_VERSION", "DATA_INFO", "SCANIT_END"}
    order = (
        ["NANONIS_VERSION"]
        + [key for key in computed if key not in meta and key not in skip]
        + [key for key in meta if key not in skip]
        + ["DATA_INFO"]
    )
    return {key: computed[key] if key in computed else meta[key] for key in order}


def _keep(meta: dict[str, str], key: str, fresh: str, same: Callable[[str], bool]) -> str:
    """The metadata's text for ``key`` if it still means the same (``same``), else ``fresh``."""
    old = meta.get(key)
    if old is not None:
        try:
            if same(old):
                return old
        except (ValueError, IndexError):
            pass
    return fresh


def _computed(frame: Frame, meta: dict[str, str]) -> dict[str, str]:
    """The entries the frame's fields define, in Nanonis' order."""
    area = frame.area
    out: dict[str, str] = {"NANONIS_VERSION": meta.get("NANONIS_VERSION", "2")}
    out["SCANIT_TYPE"] = _keep(
        meta, "SCANIT_TYPE", SCANIT_TYPE, lambda t: t.split() == ["FLOAT", "MSBFIRST"]
    )
    started, finished = frame.started_at, frame.finished_at
    if math.isfinite(started):
        date, time = format_time(started).split(" ")
        both = f"{meta.get('REC_DATE', '')} {meta.get('REC_TIME', '')}"
        unchanged = parse_time(both) == started
        out["REC_DATE"] = meta["REC_DATE"] if unchanged else date
        out["REC_TIME"] = meta["REC_TIME"] if unchanged else time
    else:
        for key in ("REC_DATE", "REC_TIME"):
            if key in meta:
                out[key] = ""
    acquisition = finished - started
    out["ACQ_TIME"] = _keep(
        meta, "ACQ_TIME", fmt(acquisition), lambda t: _same(started + float(t), finished)
    )
    out["SCAN_PIXELS"] = _keep(
        meta,
        "SCAN_PIXELS",
        f"{area.pixels:>10}{area.lines:>10}",
        lambda t: [int(v) for v in t.split()] == [area.pixels, area.lines],
    )
    scan_time = meta.get("SCAN_TIME", "").split()
    backward_time = first_number(scan_time[1]) if len(scan_time) == 2 else math.nan
    if math.isnan(backward_time):
        backward_time = frame.line_time
    out["SCAN_TIME"] = _keep(
        meta,
        "SCAN_TIME",
        f"{fmt(frame.line_time)} {fmt(backward_time)}",
        lambda t: len(t.split()) == 2 and _same(float(t.split()[0]), frame.line_time),
    )
    out["SCAN_RANGE"] = _keep(
        meta,
        "SCAN_RANGE",
        f"{fmt(area.size[0])} {fmt(area.size[1])}",
        lambda t: [float(v) for v in t.split()] == list(area.size),
    )
    out["SCAN_OFFSET"] = _keep(
        meta,
        "SCAN_OFFSET",
        f"{fmt(area.centre[0])} {fmt(area.centre[1])}",
        lambda t: [float(v) for v in t.split()] == list(area.centre),
    )
    out["SCAN_ANGLE"] = _keep(
        meta,
        "SCAN_ANGLE",
        exact_text(area.angle, to_model_angle, to_file_angle),
        lambda t: to_model_angle(float(t)) == area.angle,
    )
    out["SCAN_DIR"] = frame.direction
    out["BIAS"] = _keep(meta, "BIAS", fmt(frame.bias), lambda t: _same(float(t), frame.bias))
    out.update(_setpoint_entries(frame.setpoint, meta))
    return out


def _setpoint_entries(value: float, meta: dict[str, str]) -> dict[str, str]:
    """Write the setpoint where :func:`setpoint` will look for it."""
    if "Z-Controller>Setpoint" in meta and "Z-Controller>Setpoint unit" in meta:
        if _same(setpoint(meta), value):
            return {}
        return {"Z-Controller>Setpoint": fmt(value), "Z-Controller>Setpoint unit": "A"}
    table = meta.get("Z-CONTROLLER", "")
    if _same(setpoint({"Z-CONTROLLER": table}), value):
        return {}
    if table_cell(table, "Setpoint") is None:
        return {"Z-CONTROLLER": f"Name\tSetpoint\nCurrent\t{fmt(value)} A"}
    titles, values, *rest = table.split("\n")
    cells = values.split("\t")
    cells[titles.split("\t").index("Setpoint")] = f"{fmt(value)} A"
    return {"Z-CONTROLLER": "\n".join([titles, "\t".join(cells), *rest])}
