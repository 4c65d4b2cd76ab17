"""The ``.sxm`` header, shared by the reader and the writer: ``:TAG:`` entries, the channel
table ``DATA_INFO``, the setpoint's two homes, and the scan-angle convention."""

from __future__ import annotations

import math
from dataclasses import dataclass

from probepilot.store._common import fail, show

#: Entries whose value lines are tab-indented tables.
TABLES = frozenset({"DATA_INFO", "Z-CONTROLLER", "Multipass-Config"})
SCANIT_TYPE = "              FLOAT            MSBFIRST"  # Nanonis' own spacing
#: DATA_INFO direction -> (has forward image, has backward image).
DIRECTIONS = {
    "both": (True, True),
    "forward": (True, False),
    "fwd": (True, False),
    "backward": (False, True),
    "bwd": (False, True),
}
DATA_INFO_TITLES = "Channel\tName\tUnit\tDirection\tCalibration\tOffset"


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One row of DATA_INFO."""

    name: str
    unit: str
    forward: bool
    backward: bool
    number: str = ""
    calibration: str = "1.000E+0"
    offset: str = "0.000E+0"


def parse_header(text: str) -> dict[str, str]:
    """Header entries: tag -> value, values stripped, lines joined by ``\\n`` (CRLF or LF).

    A tag is a line ``:NAME:``; every other line belongs to the value of the tag above it.
    (Splitting on ``"\\n:"`` is several times faster than a regular expression, and the header
    is parsed on every read.)
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    entries: dict[str, str] = {}
    key: str | None = None
    for chunk in ("\n" + text).split("\n:")[1:]:
        name, _, value = chunk.partition("\n")
        name = name.rstrip()
        if name.endswith(":") and len(name) > 1:
            key = name[:-1]
        elif key is not None:  # a value line that happens to start with ':'
            value = f"{entries[key]}\n:{chunk}"
        else:
            continue
        value = value.strip()
        if "\n" in value:
            value = "\n".join(line.strip() for line in value.split("\n"))
        entries[key] = value
    return entries


def row_cells(row: str) -> list[str]:
    """Fields of a table row: tab-separated (Gwyddion has seen spaces in some files)."""
    cells = row.split("\t")
    if len(cells) < 2:
        cells = row.split()
    return [cell.strip() for cell in cells]


def data_info(entries: dict[str, str], label: str) -> list[ChannelInfo]:
    table = entries.get("DATA_INFO")
    if table is None:
        raise fail(label, "the header has no DATA_INFO (the list of channels)")
    rows = [row for row in table.split("\n") if row.strip()]
    titles = row_cells(rows[0]) if rows else []
    if not {"Name", "Unit", "Direction"} <= set(titles):
        raise fail(
            label,
            f"DATA_INFO: titles {show(rows[0] if rows else '')} lack Name, Unit or Direction",
        )
    column = {title: titles.index(title) for title in titles}
    infos: list[ChannelInfo] = []
    for row in rows[1:]:
        cells = row_cells(row)
        if len(cells) != len(titles):
            raise fail(
                label, f"DATA_INFO: row {show(row)} has {len(cells)} fields, not {len(titles)}"
            )
        get = dict(zip(titles, cells, strict=True)).get
        name, direction = cells[column["Name"]], cells[column["Direction"]].lower()
        if direction not in DIRECTIONS:
            raise fail(
                label, f"DATA_INFO: channel {show(name)} has unknown direction {show(direction)}"
            )
        if not name or any(info.name == name for info in infos):
            raise fail(label, f"DATA_INFO: channel name {show(name)} is empty or listed twice")
        forward, backward = DIRECTIONS[direction]
        infos.append(
            ChannelInfo(
                name,
                cells[column["Unit"]],
                forward,
                backward,
                get("Channel", ""),
                get("Calibration", "1.000E+0"),
                get("Offset", "0.000E+0"),
            )
        )
    if not infos:
        raise fail(label, "DATA_INFO lists no channels")
    return infos


def to_model_angle(degrees_clockwise: float) -> float:
    return 0.0 - math.radians(degrees_clockwise)  # 0.0 - x: no negative zero


def to_file_angle(radians_counter_clockwise: float) -> float:
    return 0.0 - math.degrees(radians_counter_clockwise)


def first_number(text: str) -> float:
    """The first number in ``text``, NaN if there is none: for values a frame can do without."""
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return math.nan


def setpoint(entries: dict[str, str]) -> float:
    """The current setpoint (A): ``Z-Controller>Setpoint`` where the header has it with its unit,
    else the ``Z-CONTROLLER`` table; NaN when the controller's setpoint is not a current."""
    if "Z-Controller>Setpoint" in entries and "Z-Controller>Setpoint unit" in entries:
        if entries["Z-Controller>Setpoint unit"].strip() != "A":
            return math.nan
        return first_number(entries["Z-Controller>Setpoint"])
    cell = table_cell(entries.get("Z-CONTROLLER", ""), "Setpoint")
    parts = (cell or "").split()
    return first_number(parts[0]) if len(parts) == 2 and parts[1] == "A" else math.nan


def table_cell(table: str, title: str) -> str | None:
    rows = table.split("\n")
    if len(rows) < 2:
        return None
    titles, values = rows[0].split("\t"), rows[1].split("\t")
    if title not in titles or len(values) != len(titles):
        return None
    return values[titles.index(title)]
