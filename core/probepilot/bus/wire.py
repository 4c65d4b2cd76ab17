"""The wire format of every probepilot ZeroMQ message: a msgpack header plus raw array buffers.

A message is one ZeroMQ multipart message (after the routing identity of a ROUTER socket or the
topic of a PUB socket, which the sockets add and strip)::

    frame 0      msgpack map  {"v": 1, "t": type, "s": seq, "c": cid, "ts": time,
                               "a": [[dtype, shape], ...], "b": body}
    frame 1..n   the raw bytes of each array, in the order of "a"

``v`` is the protocol version (:data:`PROTOCOL_VERSION`), ``t`` the message type (one of
:data:`MESSAGE_TYPES`), ``s`` the sender's sequence number, ``c`` the correlation id that ties a
reply to its request (0 when there is none), ``ts`` the sender's POSIX time in seconds, ``a``
the dtype (``"<f8"``, ``"|u1"`` ...: numbers only) and shape of each array and ``b`` the body, a
map of msgpack values in which each array stands as a reference (msgpack extension type
:data:`ARRAY_EXT` holding the array's index). So arrays are never copied into the header and
never pickled: they are sent from their own memory and received as numpy views of the message
buffers (zero copy both ways), and numbers, strings and maps stay readable by any msgpack
library.

Decoding is strict, because the other end may be a different version, a broken client or
something that is not probepilot at all: anything that is not exactly a message of this format
(bad msgpack, a missing or unknown header key, a wrong version, an unknown type, an object or
structured dtype, a buffer whose size does not match its shape, an array reference that points
nowhere or twice ...) raises :class:`~probepilot.errors.ProtocolError` naming what was wrong,
and never anything else, so a receiver can report it and keep running.
"""

from __future__ import annotations

import math
import re
import struct
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from probepilot.errors import ProtocolError

#: Bumped whenever the header or a body changes incompatibly; both ends must agree.
PROTOCOL_VERSION = 1
#: msgpack extension type code of an array reference in a body (payload: index, uint32 BE).
ARRAY_EXT = 1
#: Largest header (including the body) a receiver accepts, bytes.
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Most arrays in one message, and most dimensions of one array.
MAX_ARRAYS = 1024
MAX_NDIM = 8
#: Deepest nesting of lists and maps in a body.
MAX_DEPTH = 32

#: Every message type, by channel. Driver host: hello/welcome, call -> progress* + result | error
#: | cancelled, cancel, ping/pong, bye, status. Run stream: event, line, state (PUB); hello/
#: welcome, frame/ack, replay/events, command/reply/error, ping/pong, bye (ROUTER).
MESSAGE_TYPES = frozenset(
    {
        "hello",
        "welcome",
        "call",
        "result",
        "error",
        "progress",
        "cancel",
        "cancelled",
        "ping",
        "pong",
        "bye",
        "status",
        "event",
        "line",
        "state",
        "frame",
        "ack",
        "replay",
        "events",
        "command",
        "reply",
    }
)

_HEADER_KEYS = frozenset({"v", "t", "s", "c", "ts", "a", "b"})
_DTYPE = re.compile(r"[<>|][biufc][0-9]{1,2}")
_INDEX = struct.Struct(">I")
_U64 = 2**64


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded message. ``body`` holds msgpack values with numpy arrays in place of the
    array references (views of the received buffers: zero copy, writable, valid as long as
    they are referenced)."""

    type: str
    body: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    cid: int = 0
    time: float = 0.0


# --------------------------------------------------------------------------------------------
# Encoding


def encode(
    type: str,
    body: Mapping[str, Any] | None = None,
    *,
    seq: int = 0,
    cid: int = 0,
    now: float | None = None,
) -> list[Any]:
    """The frames of one message, ready for ``socket.send_multipart(frames, copy=False)``.

    ``body`` may hold numpy arrays (numeric dtypes only; non-contiguous ones are made
    contiguous), numpy scalars, and msgpack values. The arrays themselves are returned as
    frames, not copied.

    :raises ProtocolError: an unknown type, an object (or other non-numeric) array, or a value
        msgpack cannot carry. Raised at the sender, so nothing malformed is ever sent.
    """
    if type not in MESSAGE_TYPES:
        raise ProtocolError(f"cannot send a message of unknown type {type!r}")
    moment = time.time() if now is None else now
    if not body:
        # Nothing to walk (an ack, a bye, most pings): no arrays, the same bytes.
        header = {"v": PROTOCOL_VERSION, "t": type, "s": seq, "c": cid, "ts": moment}
        header["b"], header["a"] = {}, []
        try:
            packed = _packb(header, default=_scalar, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode a {type!r} message: {exc}") from None
        return [packed]
    arrays: list[np.ndarray] = []
    # The header's array list, filled while msgpack walks the body: "a" comes after "b" in the
    # header, so by the time msgpack packs it every array has been found (one pass).
    descriptors: list[list[Any]] = []

    def default(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufc":
                raise ProtocolError(
                    f"cannot send an array of dtype {value.dtype} ({type!r} message): only "
                    "numeric arrays travel (object arrays would need pickle, which is refused)"
                )
            index = len(arrays)
            if index >= MAX_ARRAYS:
                raise ProtocolError(f"a {type!r} message may carry at most {MAX_ARRAYS} arrays")
            # (not np.ascontiguousarray: it turns a 0-d array into a 1-d one)
            array = value if value.flags.c_contiguous else value.copy(order="C")
            arrays.append(array)
            descriptors.append([array.dtype.str, list(array.shape)])
            return _REFS[index]
        return _scalar(value)

    header = {
        "v": PROTOCOL_VERSION,
        "t": type,
        "s": seq,
        "c": cid,
        "ts": moment,
        "b": body,
        "a": descriptors,
    }
    try:
        packed = _packb(header, default=default, use_bin_type=True)
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode a {type!r} message: {exc}") from None
    return [packed, *arrays]


def _scalar(value: Any) -> Any:
    """A numpy scalar as the msgpack value it stands for; anything else cannot travel."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{value.__class__.__name__} values cannot travel: {value!r:.60}")


_packb = msgpack.packb
#: The array references, made once (``ExtType`` is a named tuple: slow to build per message).
_REFS = tuple(msgpack.ExtType(ARRAY_EXT, _INDEX.pack(i)) for i in range(MAX_ARRAYS))


# --------------------------------------------------------------------------------------------
# Decoding


class _Ref:
    """An extension value found in a body: an array reference or something unknown."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        self.code = code
        self.data = data


#: What msgpack decodes that a body holds as it is (exact types: msgpack makes no subclasses).
_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
#: The arrays of a message that has none (never changed: only read).
_NO_ARRAYS: list[np.ndarray] = []
#: Array dtypes already checked, by their text: a receiver sees the same few again and again.
_DTYPES: dict[str, np.dtype[Any]] = {}


def decode(frames: Sequence[Any], *, expect: Collection[str] | None = None) -> Message:
    """The message in ``frames`` (``zmq.Frame``, bytes or memoryviews; routing identity or
    topic already removed).

    :param expect: the message types acceptable here; another known type is refused too.
    :raises ProtocolError: anything wrong, named (see the module docstring).
    """
    if not frames:
        raise ProtocolError("empty message: no header frame")
    header_bytes = _view(frames[0])
    if header_bytes.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(
            f"header of {header_bytes.nbytes} bytes is larger than {MAX_HEADER_BYTES}"
        )
    try:
        header = msgpack.unpackb(
            header_bytes,
            raw=False,
            strict_map_key=True,
            ext_hook=_Ref,
            use_list=True,
            timestamp=0,
        )
    # msgpack reports bad bytes as ValueError subclasses (truncated, extra data, bad UTF-8,
    # too deep), unhashable map keys as TypeError.
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(f"header is not valid msgpack: {exc}") from None
    if type(header) is not dict:
        raise ProtocolError(f"header is a {_kind(header)}, not a map")
    if "v" not in header:
        raise ProtocolError("header has no protocol version ('v')")
    version = header["v"]
    if version != PROTOCOL_VERSION or type(version) is bool:
        raise ProtocolError(
            f"protocol version {version!r:.40}, but this probepilot speaks version "
            f"{PROTOCOL_VERSION}",
            hint="run the same probepilot version on both machines",
        )
    if header.keys() != _HEADER_KEYS:
        keys = set(header)
        missing, extra = sorted(_HEADER_KEYS - keys), sorted(str(k) for k in keys - _HEADER_KEYS)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(extra)}"] if extra else []
        )
        raise ProtocolError(f"header keys are wrong: {'; '.join(parts)}")
    kind = header["t"]
    if type(kind) is not str or kind not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message type {kind!r:.40}")
    if expect is not None and kind not in expect:
        raise ProtocolError(
            f"unexpected {kind!r} message here (expected {', '.join(sorted(expect))})"
        )
    seq, cid, moment = header["s"], header["c"], header["ts"]
    # (msgpack decodes integers as exactly int, booleans as bool: no subclasses to allow for)
    for name, value in (("sequence number", seq), ("correlation id", cid)):
        if type(value) is not int or not 0 <= value < _U64:
            raise ProtocolError(f"{kind!r} message: {name} {value!r:.40} is not an unsigned int")
    if (type(moment) is not float and type(moment) is not int) or not math.isfinite(moment):
        raise ProtocolError(f"{kind!r} message: timestamp {moment!r:.40} is not a finite number")
    specs = header["a"]
    # (no arrays, the common case: nothing to check beyond that no buffer follows)
    if type(specs) is list and not specs and len(frames) == 1:
        arrays = _NO_ARRAYS
    else:
        arrays = _arrays(kind, specs, frames)
    body = header["b"]
    if type(body) is not dict:
        raise ProtocolError(f"{kind!r} message: body is a {_kind(body)}, not a map")
    used = [False] * len(arrays)
    if body:
        _resolve(kind, body, arrays, used, 0)
    if arrays and False in used:
        raise ProtocolError(
            f"{kind!r} message: array {used.index(False)} is sent but not referenced in the body"
        )
    return Message(kind, body, seq, cid, float(moment))


def _view(frame: Any) -> memoryview:
    if isinstance(frame, np.ndarray):  # frames straight from encode(), without a socket
        return memoryview(frame.copy(order="C").reshape(-1).view(np.uint8).data)
    buffer = getattr(frame, "buffer", frame)  # zmq.Frame -> its (zero-copy) buffer
    try:
        view = memoryview(buffer)
    except TypeError:
        raise ProtocolError(f"a message frame is a {_kind(frame)}, not bytes") from None
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def _arrays(kind: str, specs: Any, frames: Sequence[Any]) -> list[np.ndarray]:
    """The arrays ``specs`` describes, as views of ``frames[1:]`` (the header is frame 0)."""
    if type(specs) is not list:
        raise ProtocolError(f"{kind!r} message: array list is a {_kind(specs)}, not a list")
    if len(specs) != len(frames) - 1:
        raise ProtocolError(
            f"{kind!r} message: {len(specs)} arrays are described but {len(frames) - 1} "
            "buffers follow the header (truncated or padded message)"
        )
    if len(specs) > MAX_ARRAYS:
        raise ProtocolError(f"{kind!r} message: {len(specs)} arrays, more than {MAX_ARRAYS}")
    out = []
    for i, spec in enumerate(specs):
        buffer = _view(frames[i + 1])
        if not (type(spec) is list and len(spec) == 2):
            raise ProtocolError(
                f"{kind!r} message, array {i}: descriptor {spec!r:.60} is not [dtype, shape]"
            )
        dtype_text, shape = spec
        dtype = _DTYPES.get(dtype_text) if type(dtype_text) is str else None
        if dtype is None:
            dtype = _dtype(f"{kind!r} message, array {i}", dtype_text)
        if (
            type(shape) is not list
            or len(shape) > MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)
        ):
            raise ProtocolError(
                f"{kind!r} message, array {i}: shape {shape!r:.60} is not a list of at most "
                f"{MAX_NDIM} sizes"
            )
        size = math.prod(shape) * dtype.itemsize
        if size != buffer.nbytes:
            raise ProtocolError(
                f"{kind!r} message, array {i}: shape {tuple(shape)} of {dtype_text} needs {size} "
                f"bytes but the buffer has {buffer.nbytes}"
            )
        out.append(np.ndarray(tuple(shape), dtype, buffer))
    return out


def _dtype(where: str, dtype_text: Any) -> np.dtype[Any]:
    """The numpy dtype ``dtype_text`` names, if it is a numeric one (remembered)."""
    if not isinstance(dtype_text, str) or not _DTYPE.fullmatch(dtype_text):
        raise ProtocolError(
            f"{where}: dtype {dtype_text!r:.40} refused (only numeric dtypes such as '<f8' "
            "travel; object, string and structured arrays never do)"
        )
    try:
        dtype = np.dtype(dtype_text)
    except TypeError:
        raise ProtocolError(f"{where}: dtype {dtype_text!r} is not a numpy dtype") from None
    if dtype.kind not in "biufc" or dtype.str.lstrip("<>|=") != dtype_text[1:]:
        raise ProtocolError(f"{where}: dtype {dtype_text!r} refused")
    _DTYPES[dtype_text] = dtype  # at most a few thousand texts match _DTYPE
    return dtype


def _resolve(
    kind: str, container: Any, arrays: list[np.ndarray], used: list[bool], depth: int
) -> None:
    """Replace, in place, the array references in ``container`` (a map or list at nesting
    ``depth``) by the arrays; anything msgpack-decoded that a probepilot body may not hold
    (timestamps, other extension types) is refused."""
    items = container.items() if type(container) is dict else enumerate(container)
    # Assigning to an existing key or index while iterating is safe: the size never changes.
    for key, value in items:
        cls = type(value)
        if cls in _SCALARS:
            continue
        if depth + 1 >= MAX_DEPTH:
            raise ProtocolError(f"{kind!r} message: body nested deeper than {MAX_DEPTH}")
        if cls is dict or cls is list:
            _resolve(kind, value, arrays, used, depth + 1)
        elif cls is _Ref:
            container[key] = _array(kind, value, arrays, used)
        else:
            raise ProtocolError(
                f"{kind!r} message: a {_kind(value)} value is not allowed in a body"
            )


def _array(kind: str, ref: _Ref, arrays: list[np.ndarray], used: list[bool]) -> np.ndarray:
    if ref.code != ARRAY_EXT or len(ref.data) != _INDEX.size:
        raise ProtocolError(f"{kind!r} message: unknown msgpack extension type {ref.code}")
    index = int(_INDEX.unpack(ref.data)[0])
    if index >= len(arrays):
        raise ProtocolError(
            f"{kind!r} message: reference to array {index}, but only {len(arrays)} were sent"
        )
    if used[index]:
        raise ProtocolError(f"{kind!r} message: array {index} is referenced twice")
    used[index] = True
    return arrays[index]


def _kind(value: object) -> str:
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Body helpers shared by the receivers: they turn a bad field into a ProtocolError naming it.


def field_of(message: Message, key: str, types: type | tuple[type, ...]) -> Any:
    """``message.body[key]``, which must be of ``types`` (bool is never an int here)."""
    value = message.body.get(key)
    ok = isinstance(value, types) and not (
        isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
    )
    if not ok:
        names = (
            " or ".join(t.__name__ for t in types) if isinstance(types, tuple) else types.__name__
        )
        raise ProtocolError(f"{message.type!r} message: {key!r} is {value!r:.40}, expected {names}")
    return value
