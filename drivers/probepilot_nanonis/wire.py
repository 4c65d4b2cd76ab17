"""The Nanonis TCP wire format: headers, value types, argument layouts and the error section.

Pure functions over bytes (no sockets), shared by the driver (the client) and the virtual Nanonis
(the server), so both sides agree by construction. Everything is big-endian, as on the wire.

A :class:`Layout` is the ordered list of :class:`Field`\\ s of one request or reply. Runs of
scalars compile to a single :class:`struct.Struct` (one call per run, not per field), and arrays
go through ``numpy.frombuffer`` / ``ndarray.tobytes`` with big-endian dtypes, never element by
element: a 1024 x 1024 frame decodes as one 4 MiB view.

Counts travel as separate arguments before their arrays (``i32 n`` then ``f32[n]``); a layout
names the count field of each array, fills it from the array when encoding, and reads the array
with it when decoding. String arrays carry their own ``int32 total_bytes`` and ``int32 count``:
when reading, the count is trusted and ``total_bytes`` ignored (clients send different wrong
values); when writing, ``total_bytes`` is exactly the sum of ``4 + len`` over the strings.

Malformed input raises :class:`~probepilot.errors.ProtocolError` naming the field and the byte
offset; nothing is allocated from an unchecked count.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from probepilot.errors import ProtocolError

HEADER_SIZE = 40
NAME_SIZE = 32
#: Request header: name[32], int32 body size, uint16 send-response flag, uint16 0.
REQUEST_HEADER = struct.Struct(">32siHH")
#: Reply header: name[32], int32 body size, uint32 0.
REPLY_HEADER = struct.Struct(">32siI")
_ERROR_HEAD = struct.Struct(">Ii")
_I32 = struct.Struct(">i")
#: The body of a reply without return values and without error: status 0, empty description.
OK_BODY = _ERROR_HEAD.pack(0, 0)


class Kind(enum.Enum):
    """Wire types. Scalars carry their :mod:`struct` code."""

    I32 = "i"
    U32 = "I"
    U16 = "H"
    F32 = "f"
    F64 = "d"
    STR = "str"  # int32 byte count + bytes
    STRS = "strs"  # int32 total bytes, int32 count, count x (int32 len + bytes)
    I32S = "i32s"  # 1D int32 array, count in a preceding field
    F32S = "f32s"  # 1D float32 array, count in a preceding field
    F32_2D = "f32_2d"  # row-major float32 matrix, rows and cols in preceding fields

    @property
    def scalar(self) -> bool:
        return len(self.value) == 1


_DTYPES = {Kind.I32S: np.dtype(">i4"), Kind.F32S: np.dtype(">f4"), Kind.F32_2D: np.dtype(">f4")}
_SCALAR_SIZE = {k: struct.calcsize(">" + k.value) for k in Kind if k.scalar}


@dataclass(frozen=True, slots=True)
class Field:
    """One argument: ``name``, wire ``kind``, and for arrays the names of their count fields
    (``count`` for 1D arrays, ``shape`` = (rows, cols) for 2D)."""

    name: str
    kind: Kind
    count: str | None = None
    shape: tuple[str, str] | None = None


def i32(name: str) -> Field:
    return Field(name, Kind.I32)


def u32(name: str) -> Field:
    return Field(name, Kind.U32)


def u16(name: str) -> Field:
    return Field(name, Kind.U16)


def f32(name: str) -> Field:
    return Field(name, Kind.F32)


def f64(name: str) -> Field:
    return Field(name, Kind.F64)


def string(name: str) -> Field:
    return Field(name, Kind.STR)


def strings(name: str) -> Field:
    return Field(name, Kind.STRS)


def i32s(name: str, count: str) -> Field:
    return Field(name, Kind.I32S, count=count)


def f32s(name: str, count: str) -> Field:
    return Field(name, Kind.F32S, count=count)


def f32_2d(name: str, rows: str, cols: str) -> Field:
    return Field(name, Kind.F32_2D, shape=(rows, cols))


class _Run(NamedTuple):
    """Consecutive scalar fields packed by one Struct."""

    codec: struct.Struct
    names: tuple[str, ...]


class Layout:
    """The ordered arguments of one request or reply; see the module docstring.

    ``optional_from``: index of the first field that older clients may leave out of a
    *request* (decoding stops cleanly there and fills the rest with zeros).
    """

    def __init__(self, *fields: Field, optional_from: int | None = None) -> None:
        self.fields = fields
        self.names = tuple(f.name for f in fields)
        self.optional_from = optional_from
        seen: dict[str, Kind] = {}
        #: count field name -> (array field name, axis: 0 = length / rows, 1 = cols)
        self.derived: dict[str, tuple[str, int]] = {}
        for f in fields:
            refs = [f.count] if f.count else list(f.shape or ())
            for axis, ref in enumerate(refs):
                if seen.get(ref) not in (Kind.I32, Kind.U32):
                    raise ValueError(f"field {f.name!r}: count {ref!r} must be an earlier int")
                self.derived[ref] = (f.name, axis)
            if f.name in seen:
                raise ValueError(f"duplicate field {f.name!r}")
            seen[f.name] = f.kind
        self._steps: list[_Run | Field] = []
        run: list[Field] = []
        for index, f in enumerate(fields):
            if f.kind.scalar and index != optional_from:
                run.append(f)
                continue
            self._flush(run)
            run = [f] if f.kind.scalar else []
            if not f.kind.scalar:
                self._steps.append(f)
        self._flush(run)
        self._zeros = {f.name: _zero(f.kind) for f in fields}
        #: All fields scalar: the layout followed by an empty error section is one fixed Struct
        #: (the fast path for the commonest replies).
        self.fixed_reply: struct.Struct | None = None
        if all(f.kind.scalar for f in fields):
            self.fixed_reply = struct.Struct(">" + "".join(f.kind.value for f in fields) + "Ii")
        self._optional_step = next(
            (
                i
                for i, step in enumerate(self._steps)
                if optional_from is not None
                and (step.names[0] if isinstance(step, _Run) else step.name)
                == fields[optional_from].name
            ),
            None,
        )

    def _flush(self, run: list[Field]) -> None:
        if run:
            fmt = ">" + "".join(f.kind.value for f in run)
            self._steps.append(_Run(struct.Struct(fmt), tuple(f.name for f in run)))
            run.clear()

    def __repr__(self) -> str:
        return f"Layout({', '.join(f'{f.name}:{f.kind.name}' for f in self.fields)})"

    # ------------------------------------------------------------------ encoding

    def zeros(self) -> dict[str, Any]:
        """Every field at zero: 0, "", [] or an empty array (the layout of an error reply)."""
        return dict(self._zeros)

    def encode(self, values: Mapping[str, Any] | None = None) -> bytes:
        """The bytes of ``values`` (a mapping by field name). Count fields may be left out:
        they are taken from their arrays. Missing fields are an error."""
        values = values or {}
        parts: list[bytes] = []
        for step in self._steps:
            if isinstance(step, _Run):
                try:
                    args = [self._value(values, name) for name in step.names]
                    parts.append(step.codec.pack(*args))
                except struct.error as exc:
                    raise ValueError(f"cannot encode {step.names}: {exc}") from None
            else:
                parts.append(_encode_field(step, values[step.name]))
        return b"".join(parts)

    def _value(self, values: Mapping[str, Any], name: str) -> Any:
        if name in values:
            return values[name]
        if name in self.derived:
            array_name, axis = self.derived[name]
            array = values[array_name]
            return int(np.shape(array)[axis]) if axis or np.ndim(array) != 1 else len(array)
        raise KeyError(f"missing value for field {name!r}")

    # ------------------------------------------------------------------ decoding

    def decode(
        self, buf: bytes | bytearray | memoryview, offset: int = 0, *, what: str = "body"
    ) -> tuple[dict[str, Any], int]:
        """Values by field name and the offset after them. Arrays are read-only big-endian
        numpy views into ``buf``; string arrays are lists of str."""
        out: dict[str, Any] = {}
        end = len(buf)
        for index, step in enumerate(self._steps):
            if index == self._optional_step and offset == end:
                for f in self.fields[self.optional_from or 0 :]:
                    out[f.name] = _zero(f.kind)
                return out, offset
            if isinstance(step, _Run):
                size = step.codec.size
                if offset + size > end:
                    raise _truncated(what, step.names[0], offset, size, end)
                out.update(zip(step.names, step.codec.unpack_from(buf, offset), strict=True))
                offset += size
            else:
                out[step.name], offset = _decode_field(step, buf, offset, out, what)
        return out, offset


def _zero(kind: Kind) -> Any:
    if kind.scalar:
        return 0
    if kind is Kind.STR:
        return ""
    if kind is Kind.STRS:
        return []
    if kind is Kind.F32_2D:
        return np.zeros((0, 0), _DTYPES[kind])
    return np.zeros(0, _DTYPES[kind])


def _text(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _encode_field(f: Field, value: Any) -> bytes:
    if f.kind is Kind.STR:
        raw = _text(value)
        return _I32.pack(len(raw)) + raw
    if f.kind is Kind.STRS:
        raws = [_text(v) for v in value]
        body = b"".join(_I32.pack(len(r)) + r for r in raws)
        return struct.pack(">ii", len(body), len(raws)) + body
    dtype = _DTYPES[f.kind]
    array = np.asarray(value)
    if f.kind is Kind.F32_2D and array.ndim != 2:
        raise ValueError(f"field {f.name!r} needs a 2D array, got shape {array.shape}")
    if f.kind is not Kind.F32_2D and array.ndim != 1:
        raise ValueError(f"field {f.name!r} needs a 1D array, got shape {array.shape}")
    # astype(copy=False) is a no-op for data already big-endian float32 (the server keeps its
    # frame buffers that way), so a frame is one memcpy into the reply.
    return np.ascontiguousarray(array.astype(dtype, copy=False)).tobytes()


def _decode_field(
    f: Field, buf: bytes | bytearray | memoryview, offset: int, out: dict[str, Any], what: str
) -> tuple[Any, int]:
    end = len(buf)
    if f.kind is Kind.STR:
        n = _count(buf, offset, end, what, f.name)
        offset += 4
        if offset + n > end:
            raise _truncated(what, f.name, offset, n, end)
        return bytes(buf[offset : offset + n]).decode("utf-8", "replace"), offset + n
    if f.kind is Kind.STRS:
        # int32 total_bytes (ignored: clients send different wrong values), int32 count.
        if offset + 8 > end:
            raise _truncated(what, f.name, offset, 8, end)
        count = _count(buf, offset + 4, end, what, f.name)
        offset += 8
        items = []
        for _ in range(count):
            n = _count(buf, offset, end, what, f.name)
            offset += 4
            if offset + n > end:
                raise _truncated(what, f.name, offset, n, end)
            items.append(bytes(buf[offset : offset + n]).decode("utf-8", "replace"))
            offset += n
        return items, offset
    dtype = _DTYPES[f.kind]
    if f.kind is Kind.F32_2D:
        assert f.shape is not None
        rows, cols = (_checked(out[k], what, k, offset) for k in f.shape)
        n = rows * cols
    else:
        assert f.count is not None
        n = _checked(out[f.count], what, f.count, offset)
    size = n * dtype.itemsize
    if offset + size > end:
        raise _truncated(what, f.name, offset, size, end)
    array = np.frombuffer(buf, dtype=dtype, count=n, offset=offset)
    if f.kind is Kind.F32_2D:
        array = array.reshape(rows, cols)
    return array, offset + size


def _count(buf: bytes | bytearray | memoryview, offset: int, end: int, what: str, name: str) -> int:
    if offset + 4 > end:
        raise _truncated(what, name, offset, 4, end)
    return _checked(_I32.unpack_from(buf, offset)[0], what, name, offset)


def _checked(n: int, what: str, name: str, offset: int) -> int:
    if n < 0:
        raise ProtocolError(f"{what}: negative count {n} for {name!r} at byte {offset}")
    return int(n)


def _truncated(what: str, name: str, offset: int, size: int, end: int) -> ProtocolError:
    return ProtocolError(
        f"{what}: {name!r} needs {size} bytes at byte {offset} but the body ends at byte {end}",
        hint="the peer uses a different layout for this command (another Nanonis version?)",
    )


# ---------------------------------------------------------------------- headers


class RequestHeader(NamedTuple):
    raw_name: bytes  # the 32 bytes as sent: a reply echoes them exactly
    name: str
    body_size: int
    send_response: bool


def command_name(raw: bytes) -> str:
    """The command name in a 32-byte name field (up to the first NUL)."""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _name_field(name: str | bytes) -> bytes:
    raw = name if isinstance(name, bytes) else name.encode("ascii")
    if len(raw) > NAME_SIZE:
        raise ValueError(f"command name {raw!r} is longer than {NAME_SIZE} bytes")
    return raw.ljust(NAME_SIZE, b"\0")


def encode_request_header(
    name: str | bytes, body_size: int, *, send_response: bool = True
) -> bytes:
    return REQUEST_HEADER.pack(_name_field(name), body_size, 1 if send_response else 0, 0)


def decode_request_header(header: bytes) -> RequestHeader:
    if len(header) != HEADER_SIZE:
        raise ProtocolError(f"a request header is {HEADER_SIZE} bytes, got {len(header)}")
    raw, size, respond, _ = REQUEST_HEADER.unpack(header)
    if size < 0:
        raise ProtocolError(f"request {command_name(raw)!r}: negative body size {size}")
    return RequestHeader(raw, command_name(raw), size, respond != 0)


def encode_reply_header(name: str | bytes, body_size: int) -> bytes:
    return REPLY_HEADER.pack(_name_field(name), body_size, 0)


def decode_reply_header(header: bytes) -> tuple[str, int]:
    """(command name, body size) of a 40-byte reply header."""
    if len(header) != HEADER_SIZE:
        raise ProtocolError(f"a reply header is {HEADER_SIZE} bytes, got {len(header)}")
    raw, size, _ = REPLY_HEADER.unpack(header)
    if size < 0:
        raise ProtocolError(f"reply {command_name(raw)!r}: negative body size {size}")
    return command_name(raw), size


# ---------------------------------------------------------------------- error section


def encode_error(message: str = "", status: int | None = None) -> bytes:
    """The error section: ``uint32 status`` (1 when ``message`` is not empty unless given),
    ``int32 n``, ``n`` bytes of description."""
    raw = message.encode("utf-8")
    if status is None:
        status = 1 if raw else 0
    return _ERROR_HEAD.pack(status, len(raw)) + raw


def decode_error(
    buf: bytes | bytearray | memoryview, offset: int = 0, *, what: str = "reply"
) -> tuple[int, str, int]:
    """(status, description, offset after the section)."""
    end = len(buf)
    if offset + 8 > end:
        raise _truncated(what, "error section", offset, 8, end)
    status, n = _ERROR_HEAD.unpack_from(buf, offset)
    n = _checked(n, what, "error description", offset + 4)
    offset += 8
    if offset + n > end:
        raise _truncated(what, "error description", offset, n, end)
    return status, bytes(buf[offset : offset + n]).decode("utf-8", "replace"), offset + n


_F32 = struct.Struct(">f")


def nice_f32(value: float) -> float:
    """The shortest decimal that float32 rounds to the same value: a float32 0.1 on the wire
    becomes 0.1 again, not 0.10000000149011612 (so limits, headers and comparisons stay clean).
    """
    packed = _F32.pack(value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if _F32.pack(candidate) == packed:
            return candidate
    return value
