"""Omicron MATRIX result files (``*.Z_mtrx``, ``*.I(V)_mtrx`` ...): :func:`read_matrix`.

probepilot parses MATRIX itself rather than through ``access2thematrix``: that package swallows
errors into status strings, walks every value with ``struct.unpack`` and trusts the size fields,
while a reader here must turn every bad file into a one-line :class:`FormatError` and never
allocate on the word of a size field it has not checked. ``access2thematrix`` remains the
independent reference the tests compare against.

Format. Both files start with ``ONTMATRX0101`` and then hold blocks: a 4-byte tag (its name
spelled backwards: ``TLKB`` is a bricklet, ``APEE`` experiment parameters ...), a little-endian
u32 length, for most tags an 8-byte timestamp, then ``length`` bytes of content. Strings are a
u32 character count and UTF-16LE text; values are a 4-byte type tag (``LOOB`` bool, ``GNOL``
int32, ``BUOD`` float64, ``GRTS`` string) and the value.

* The result data file (one channel, one scan) holds one bricklet: its creation time, a ``CSED``
  description (channel id, bricklet size, number of values recorded) and ``ATAD`` with the raw
  int32 values in the order measured.
* The parameter file ``<session>_0001.mtrx`` (continued in ``_0002`` ...) is the session's log:
  the initial parameters (``APEE``), later changes (``DOMP``), the channel dictionary and raw-to-SI
  transfer functions (``TCID``/``REFX`` inside ``YSCC``), and a ``FERB`` record each time a result
  file was created. The parameters that describe a result file are the log's state when its
  ``FERB`` record appears.

Images map to the model like ``.sxm`` ones: the values run line by line in scan order, forward
trace (x increasing) then, with ``X_Retrace``, backward trace (x decreasing, so reversed here).
With ``Y_Retrace`` the scan goes up and then down: the reader returns one frame per pass, row 0
of each being its first line scanned (the bottom line for ``up``, the top line for ``down``).
An aborted scan records fewer values than the bricklet holds; missing lines are NaN and
``lines_done`` counts the lines with data. ``XYScanner.Angle`` is taken as degrees,
counter-clockwise (no rotated MATRIX file was at hand to confirm the sense). MATRIX channel
``I`` is named ``Current``, as the model's drivers name it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import numpy.typing as npt

from probepilot.model import Channel, Frame, ScanArea, ScanDirection, Spectrum
from probepilot.store._common import FloatArray, MetaValue, Source, fail, load, show
from probepilot.store._mtrx_log import (
    MAGIC,
    UNTIMED_RESULT,
    Cursor,
    MatrixParameters,
    ParamValue,
    blocks,
    parameter_files,
    parse_parameters,
    session_of,
    timestamp,
)

__all__ = ["MatrixParameters", "parameter_files", "parse_parameters", "read_matrix"]

#: Most values a frame may hold, whatever the size fields say (64 Mi values, 512 MiB).
MAX_VALUES = 1 << 26
_STS_LOCATION = re.compile(r"^MTRX\$STS_LOCATION-(\d+),(\d+);([^,;]+),([^%;]+)")


# ------------------------------------------------------------------------------------------
# The result file


@dataclass(frozen=True, slots=True)
class _Bricklet:
    created: float
    channel_id: bytes
    size: int
    raw: npt.NDArray[np.int32]


def _bricklet(data: bytes, label: str) -> _Bricklet:
    if not data.startswith(MAGIC):
        raise fail(
            label,
            f"not a MATRIX result file: it should start with {MAGIC.decode()!r}, "
            f"it starts with {show(data[:12])}",
        )
    for tag, block, content, stop in blocks(data, len(MAGIC), len(data), label, UNTIMED_RESULT):
        if tag == b"TLKB":
            return _bricklet_content(data, timestamp(data, block), content, stop, label)
    raise fail(label, "the file holds no bricklet (TLKB block)")


def _bricklet_content(data: bytes, created: float, start: int, end: int, label: str) -> _Bricklet:
    description: tuple[bytes, int, int] | None = None
    values: tuple[int, int] | None = None
    for tag, _, content, stop in blocks(data, start + 4, end, label, UNTIMED_RESULT):
        if tag == b"CSED":
            cursor = Cursor(data, content, stop, label)
            channel_id = cursor.take(8, "bricklet description")
            cursor.skip(12, "bricklet description")
            size, recorded = cursor.i32("bricklet size"), cursor.i32("value count")
            if not 0 <= recorded <= size:
                raise fail(label, f"the bricklet claims {recorded} values recorded of {size}")
            description = (channel_id, size, recorded)
        elif tag == b"ATAD":
            values = (content, stop)
    if description is None or values is None:
        raise fail(label, "the bricklet lacks its description (CSED) or its data (ATAD)")
    channel_id, size, recorded = description
    if values[1] - values[0] < 4 * recorded:
        raise fail(
            label,
            f"truncated data: {recorded} values recorded, {(values[1] - values[0]) // 4} stored",
        )
    raw = np.frombuffer(data, "<i4", count=recorded, offset=values[0])
    return _Bricklet(created, channel_id, size, raw)


def _transfer(raw: npt.NDArray[np.int32], function: str, p: dict[str, ParamValue]) -> FloatArray:
    """Raw values to physical ones, the same arithmetic as MATRIX (and access2thematrix)."""

    def param(name: str) -> float:
        value = p.get(name, math.nan)
        return float(value) if isinstance(value, int | float) else math.nan

    data = raw.astype(np.float64)
    with np.errstate(all="ignore"):  # a zero factor in a corrupt log gives inf, not a warning
        if function == "TFF_Linear1D":
            return (data - param("Offset")) / param("Factor")
        if function == "TFF_MultiLinear1D":
            return (
                (param("Raw_1") - param("PreOffset"))
                * (data - param("Offset"))
                / (param("NeutralFactor") * param("PreFactor"))
            )
    return data


def read_matrix(
    source: Source, *, parameters: Source | None = None, name: str | None = None
) -> list[Frame] | Spectrum:
    """The content of a MATRIX result file: frames (one per slow-axis pass) or a spectrum.

    :param source: the result file (path or bytes).
    :param parameters: the parameter log (path or bytes); by default the ``_0001.mtrx`` chain
        beside ``source``. Required when ``source`` is bytes.
    :param name: the result file's name, which the log refers to (default: ``source``'s).
    :raises FormatError: a file is corrupt, missing, or they do not belong together.
    :raises ValueError: ``source`` is bytes and ``parameters`` or ``name`` is missing.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        if parameters is None or name is None:
            raise ValueError("reading MATRIX bytes needs parameters= and name= (the log cites it)")
        data, label = load(source, name)
        log, log_label = load(parameters, _log_name(parameters, name))
    else:
        data, label = load(source, name)
        if parameters is not None:
            log, log_label = load(parameters, _log_name(parameters, label))
        else:
            chain = parameter_files(Path(source))
            if not chain:
                session = session_of(Path(source).name)
                raise fail(label, f"its parameter file {session}_0001.mtrx is missing")
            log, log_label = _chain(chain), str(chain[0])
    file_name = PurePath(label).name
    state = parse_parameters(log, file_name, log_label)
    bricklet = _bricklet(data, label)
    channel = _channel_name(bricklet.channel_id, file_name, state)
    key = state.channel_ids.get(bricklet.channel_id)
    function, transfer = state.transfers.get(key, ("", {})) if key is not None else ("", {})
    values = _transfer(bricklet.raw, function, transfer)
    unit = state.channels[key][1] if key in state.channels else ""
    metadata = _metadata(state, file_name, channel, function)
    if "(" in channel:
        return _spectrum(values, bricklet, channel, unit, state, metadata, label)
    return _frames(values, bricklet, channel, unit, state, metadata, label)


def _log_name(parameters: Source, result_file: str) -> str | None:
    """What errors call a log given as bytes: the name MATRIX gives it (a path names itself)."""
    if isinstance(parameters, bytes | bytearray | memoryview):
        return f"{session_of(PurePath(result_file).name)}_0001.mtrx"
    return None


def _chain(paths: list[Path]) -> bytes:
    parts: list[bytes] = []
    for index, path in enumerate(paths):
        part = load(path, None)[0]
        parts.append(part if index == 0 else part[len(MAGIC) :])
    return b"".join(parts)


def _channel_name(channel_id: bytes, file_name: str, state: MatrixParameters) -> str:
    key = state.channel_ids.get(channel_id)
    if key is not None and key in state.channels:
        name = state.channels[key][0]
    else:  # the name in "<session>--<run>_<cycle>.<channel>_mtrx"
        name = file_name.rsplit(".", 1)[-1].removesuffix("_mtrx")
    return "Current" if name == "I" else name


def _metadata(
    state: MatrixParameters, file_name: str, channel: str, function: str
) -> dict[str, MetaValue]:
    metadata: dict[str, MetaValue] = {"MATRIX result file": file_name, "MATRIX channel": channel}
    if function:
        metadata["MATRIX transfer function"] = function
    for key, (value, unit) in state.values.items():
        metadata[f"{key} ({unit})" if unit and unit != "--" else key] = value
    for index, mark in enumerate(state.marks):
        metadata[f"MARK {index}"] = mark
    return metadata


def _frames(
    values: FloatArray,
    bricklet: _Bricklet,
    channel: str,
    unit: str,
    state: MatrixParameters,
    metadata: dict[str, MetaValue],
    label: str,
) -> list[Frame]:
    pixels, lines = int(state.get("XYScanner.Points")), int(state.get("XYScanner.Lines"))
    traces = 1 + bool(state.values.get("XYScanner.X_Retrace", (False, ""))[0])
    passes = 1 + bool(state.values.get("XYScanner.Y_Retrace", (False, ""))[0])
    total = pixels * lines * traces * passes
    if not (pixels > 0 and lines > 0 and total == bricklet.size and total <= MAX_VALUES):
        raise fail(
            label,
            f"the parameters describe {passes} pass(es) of {lines} lines of {pixels} points "
            f"x {traces} traces, the bricklet holds {bricklet.size} values",
        )
    stream = np.full(total, np.nan)
    stream[: len(values)] = values
    images = stream.reshape(passes, lines, traces, pixels)
    per_line = pixels * traces
    area = ScanArea(
        (state.get("XYScanner.X_Offset"), state.get("XYScanner.Y_Offset")),
        (state.get("XYScanner.Width"), state.get("XYScanner.Height")),
        pixels,
        lines,
        math.radians(state.get("XYScanner.Angle")),
    )
    frames: list[Frame] = []
    directions: tuple[ScanDirection, ...] = ("up", "down")
    for index, direction in enumerate(directions[:passes]):
        recorded = len(values) - index * lines * per_line
        if index and recorded <= 0:
            break
        image = images[index]
        backward = image[:, 1, ::-1] if traces == 2 else None
        frames.append(
            Frame(
                channels={channel: Channel(channel, unit, image[:, 0, :], backward)},
                area=area,
                direction=direction,
                bias=state.get("GapVoltageControl.Voltage", "Volt"),
                setpoint=state.get("Regulator.Setpoint_1", "Ampere"),
                line_time=state.get("XYScanner.Raster_Time") * pixels,
                started_at=bricklet.created,
                finished_at=math.nan,
                lines_done=min(lines, max(0, -(-recorded // per_line))),
                source=label,
                metadata=dict(metadata),
            )
        )
    return frames


def _spectrum(
    values: FloatArray,
    bricklet: _Bricklet,
    channel: str,
    unit: str,
    state: MatrixParameters,
    metadata: dict[str, MetaValue],
    label: str,
) -> Spectrum:
    """A point spectrum: ``I(V)`` sweeps the device in volts, ``I(Z)`` the one in metres."""
    if state.values.get("XYScanner.Enable_Subgrid", (False, ""))[0]:
        raise fail(label, "MATRIX grid spectroscopy (CITS volumes) is not supported")
    wanted = {"(V)": ("Volt", "Bias", "V"), "(Z)": ("Meter", "Z", "m")}.get(
        channel[channel.find("(") :]
    )
    if wanted is None:
        raise fail(
            label, f"MATRIX curves of channel {channel!r} are not supported (only (V) and (Z))"
        )
    device_unit, sweep_name, sweep_unit = wanted
    device = next(
        (
            d
            for d in ("Device_1", "Device_2")
            if state.values.get(f"Spectroscopy.{d}_Start", (0, ""))[1] == device_unit
        ),
        None,
    )
    if device is None:
        raise fail(label, f"no spectroscopy device sweeps in {device_unit}")
    points = int(state.get(f"Spectroscopy.{device}_Points"))
    retrace = bool(state.values.get(f"Spectroscopy.Enable_{device}_Ramp_Reversal", (False, ""))[0])
    if not (0 < points <= MAX_VALUES and points * (1 + retrace) == bricklet.size):
        raise fail(
            label,
            f"the parameters describe {points} points x {1 + retrace} sweeps, "
            f"the bricklet holds {bricklet.size}",
        )
    sweep = np.linspace(
        state.get(f"Spectroscopy.{device}_Start"), state.get(f"Spectroscopy.{device}_End"), points
    )
    forward = values[:points]
    channels = {channel: forward}
    if retrace and len(values) > points:
        backward = np.full(points, np.nan)
        backward[: len(values) - points] = values[points:]
        channels[f"{channel} [bwd]"] = backward[::-1]
    elif len(forward) < points:
        sweep = sweep[: len(forward)]
    return Spectrum(
        sweep_name=sweep_name,
        sweep_unit=sweep_unit,
        sweep=sweep,
        channels=channels,
        units=dict.fromkeys(channels, unit),
        position=_location(state.marks),
        started_at=bricklet.created,
        complete=len(values) == bricklet.size,
        metadata=metadata,
    )


def _location(marks: list[str]) -> tuple[float, float]:
    """The tip position (m) from the log's last ``STS_LOCATION`` mark, NaN if none."""
    for mark in reversed(marks):
        match = _STS_LOCATION.match(mark)
        if match:
            try:
                return float(match[3]), float(match[4])
            except ValueError:
                break
    return math.nan, math.nan
