"""MATRIX containers and the parameter log (see :mod:`probepilot.store.matrix` for the format).

Everything here reads through :class:`Cursor`, which checks every length against the bytes
that are actually there, so a corrupt or lying file is a :class:`FormatError`, never an
exception from ``struct`` or an allocation sized by the file.
"""

from __future__ import annotations

import codecs
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from probepilot.store._common import fail, show

MAGIC = b"ONTMATRX0101"
#: Block tags that have no timestamp after their length, in parameter and in result files.
_UNTIMED = frozenset({b"REFX", b"NACS", b"TCID", b"SCHC", b"TSNI", b"SXNC", b"LNEG"})
UNTIMED_RESULT = _UNTIMED | {b"CSED", b"ATAD"}
#: Parameter files in a chain, at most (``_0001.mtrx`` ... ``_0999.mtrx``).
_MAX_CHAIN = 999

ParamValue = bool | int | float | str

_U32, _I32, _F64 = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<d")
_utf16 = codecs.getdecoder("utf-16-le")


class Cursor:
    """Little-endian reads over ``data[pos:end]``; reading past ``end`` is a FormatError."""

    def __init__(self, data: bytes, pos: int, end: int, label: str) -> None:
        self.data, self.pos, self.end, self.label = data, pos, end, label

    def _advance(self, size: int, what: str) -> int:
        """Move past ``size`` bytes, returning where they start."""
        start = self.pos
        if size < 0 or start + size > self.end:
            raise fail(
                self.label,
                f"truncated {what} at byte {start}: needs {size} bytes, {self.end - start} left",
            )
        self.pos = start + size
        return start

    def take(self, size: int, what: str) -> bytes:
        start = self._advance(size, what)
        return self.data[start : start + size]

    def skip(self, size: int, what: str) -> None:
        self._advance(size, what)

    def u32(self, what: str) -> int:
        return int(_U32.unpack_from(self.data, self._advance(4, what))[0])

    def i32(self, what: str) -> int:
        return int(_I32.unpack_from(self.data, self._advance(4, what))[0])

    def string(self, what: str) -> str:
        size = 2 * self.u32(what)
        start = self._advance(size, what)
        try:
            return _utf16(self.data[start : start + size])[0]
        except UnicodeDecodeError:
            raise fail(self.label, f"{what} at byte {start} is not UTF-16 text") from None

    def value(self, what: str) -> ParamValue:
        kind = self.take(4, what)
        if kind == b"LOOB":
            return self.u32(what) != 0
        if kind == b"GNOL":
            return self.i32(what)
        if kind == b"BUOD":
            return float(_F64.unpack_from(self.data, self._advance(8, what))[0])
        if kind == b"GRTS":
            return self.string(what)
        raise fail(self.label, f"{what} at byte {self.pos - 4} has unknown value type {show(kind)}")


def blocks(
    data: bytes, start: int, end: int, label: str, untimed: frozenset[bytes] = _UNTIMED
) -> Iterator[tuple[bytes, int, int, int]]:
    """``(tag, block start, content start, content end)`` of each block in ``data[start:end]``."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise fail(label, f"truncated block header at byte {pos}")
        tag = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        content = pos + 8 + (0 if tag in untimed else 8)
        if content + length > end:
            raise fail(
                label,
                f"block {show(tag)} at byte {pos} claims {length} bytes, "
                f"{max(end - content, 0)} are left",
            )
        yield tag, pos, content, content + length
        pos = content + length


def timestamp(data: bytes, block: int) -> float:
    return float(int.from_bytes(data[block + 8 : block + 16], "little"))


# ------------------------------------------------------------------------------------------
# The parameter log


@dataclass(slots=True)
class MatrixParameters:
    """The parameter log's state when one result file was created.

    ``values`` maps ``"XYScanner.Width"`` to ``(value, unit)``; ``channels`` maps channel keys to
    ``(name, unit)``, ``channel_ids`` the 8-byte ids data files use to keys, ``transfers`` keys
    to ``(function, parameters)``; ``marks`` are the log's free-text marks.
    """

    values: dict[str, tuple[ParamValue, str]] = field(default_factory=dict)
    channels: dict[int, tuple[str, str]] = field(default_factory=dict)
    channel_ids: dict[bytes, int] = field(default_factory=dict)
    transfers: dict[int, tuple[str, dict[str, ParamValue]]] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)

    def get(self, key: str, unit: str | None = None) -> float:
        """A numeric parameter (NaN if absent, not a number, or not in ``unit``)."""
        value, its_unit = self.values.get(key, (math.nan, ""))
        if isinstance(value, str) or (unit is not None and its_unit != unit):
            return math.nan
        return float(value)


def parse_parameters(
    data: bytes, result_file: str, label: str = "<parameters>"
) -> MatrixParameters:
    """The state of the parameter log ``data`` when ``result_file`` (a file name) was created.

    :raises FormatError: the log is corrupt, or never mentions ``result_file``.
    """
    if not data.startswith(MAGIC):
        raise fail(label, f"not a MATRIX parameter file: it starts with {show(data[:12])}")
    state = MatrixParameters()
    if _walk(data, len(MAGIC), len(data), state, result_file, label):
        return state
    raise fail(label, f"the parameter log has no record of result file {result_file!r}")


def _walk(
    data: bytes, start: int, end: int, state: MatrixParameters, result_file: str, label: str
) -> bool:
    """Apply the blocks in ``data[start:end]`` to ``state``; True once ``result_file``'s
    creation record is reached."""
    for tag, _, content, stop in blocks(data, start, end, label):
        cursor = Cursor(data, content, stop, label)
        handler = _HANDLERS.get(tag)
        if handler is not None:
            handler(cursor, state)
        elif tag == b"YSCC":  # a container of further blocks
            if _walk(data, content + 4, stop, state, result_file, label):
                return True
        elif tag == b"FERB":
            cursor.skip(4, "result file record")
            if cursor.string("result file name") == result_file:
                return True
    return False


def _experiment_parameters(cursor: Cursor, state: MatrixParameters) -> None:
    cursor.skip(4, "parameters")
    for _ in range(cursor.u32("parameter group count")):
        group = cursor.string("parameter group")
        for _ in range(cursor.u32("parameter count")):
            name = cursor.string("parameter name")
            unit = cursor.string("parameter unit")
            cursor.skip(4, "parameter value")
            state.values[f"{group}.{name}"] = (cursor.value("parameter value"), unit)


def _parameter_change(cursor: Cursor, state: MatrixParameters) -> None:
    cursor.skip(4, "parameter change")
    group = cursor.string("parameter group")
    name = cursor.string("parameter name")
    unit = cursor.string("parameter unit")
    cursor.skip(4, "parameter value")
    state.values[f"{group}.{name}"] = (cursor.value("parameter value"), unit)


def _channel_dictionary(cursor: Cursor, state: MatrixParameters) -> None:
    cursor.skip(8, "channel dictionary")
    for _ in range(cursor.u32("dictionary count")):
        cursor.skip(16, "dictionary entry")
        cursor.string("dictionary key")
        cursor.string("dictionary value")
    for _ in range(cursor.u32("channel count")):
        cursor.skip(4, "channel entry")
        key = cursor.u32("channel key")
        cursor.skip(8, "channel entry")
        state.channels[key] = (cursor.string("channel name"), cursor.string("channel unit"))
    for _ in range(cursor.u32("channel id count")):
        channel_id = cursor.take(8, "channel id")
        cursor.skip(4, "channel id entry")
        state.channel_ids[channel_id] = cursor.u32("channel key")
        cursor.string("channel description")


def _transfer_functions(cursor: Cursor, state: MatrixParameters) -> None:
    while cursor.pos < cursor.end:
        cursor.skip(4, "transfer function")
        key = cursor.u32("transfer function key")
        function = cursor.string("transfer function name")
        cursor.string("transfer function unit")
        parameters: dict[str, ParamValue] = {}
        for _ in range(cursor.u32("transfer parameter count")):
            name = cursor.string("transfer parameter")
            parameters[name] = cursor.value("transfer parameter")
        state.transfers[key] = (function, parameters)


def _mark(cursor: Cursor, state: MatrixParameters) -> None:
    state.marks.append(cursor.string("mark"))


_HANDLERS: dict[bytes, Callable[[Cursor, MatrixParameters], None]] = {
    b"APEE": _experiment_parameters,
    b"DOMP": _parameter_change,
    b"TCID": _channel_dictionary,
    b"REFX": _transfer_functions,
    b"KRAM": _mark,
}


def parameter_files(result_file: Path) -> list[Path]:
    """The parameter files of a result file: ``<session>_0001.mtrx``, ``_0002`` ... beside it."""
    stem = result_file.name
    session = stem[: stem.rfind("--")] if "--" in stem else stem.split(".")[0]
    chain: list[Path] = []
    for index in range(1, _MAX_CHAIN + 1):
        path = result_file.with_name(f"{session}_{index:04d}.mtrx")
        if not path.is_file():
            break
        chain.append(path)
    return chain


def session_of(file_name: str) -> str:
    return file_name[: file_name.rfind("--")] if "--" in file_name else file_name.split(".")[0]
