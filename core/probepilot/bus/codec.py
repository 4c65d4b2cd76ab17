"""Model values and errors to and from what :mod:`probepilot.bus.wire` carries.

A model dataclass (:class:`~probepilot.model.Frame`, :class:`~probepilot.model.ScanSettings`
...) travels as a map of its fields plus ``"__t"``, its class name; arrays stay arrays (the wire
sends them as raw buffers). Only the classes in :data:`MODEL_TYPES` are ever rebuilt, and each
field is checked against the class's type hints on the way in (numbers, strings, literals,
tuples of the right length, arrays, nested model types), so a peer cannot make the receiver
build anything else, nor hand a driver a scan area whose ``pixels`` is a string.

Errors travel as their class name, message and hint and are raised again as the same class with
the same text (:func:`error_from_wire`); a class the receiver does not know becomes
:class:`~probepilot.errors.RemoteError`.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np

from probepilot import errors as err
from probepilot import model
from probepilot.errors import ProbepilotError, ProtocolError

TAG = "__t"

#: The model classes a peer may send; nothing else is ever built from a message.
MODEL_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        model.ScanArea,
        model.ScanSettings,
        model.SpectrumRequest,
        model.TipPosition,
        model.InstrumentLimits,
        model.Channel,
        model.Frame,
        model.Spectrum,
        model.LineProgress,
    )
}

#: Errors raised again as themselves on the other side.
ERROR_TYPES: dict[str, type[ProbepilotError]] = {
    cls.__name__: cls
    for cls in (
        err.ProbepilotError,
        err.DriverError,
        err.DriverConnectionError,
        err.DriverTimeoutError,
        err.LimitError,
        err.NotSupportedError,
        err.InstrumentError,
        err.TipCrashError,
        err.NotConnectedError,
        err.ProtocolError,
        err.RemoteError,
        err.PluginError,
    )
}


# --------------------------------------------------------------------------------------------
# Values


def to_wire(value: Any) -> Any:
    """``value`` as wire values: model dataclasses become tagged maps, enums their values,
    tuples lists; arrays and msgpack values stay as they are."""
    if value is None or isinstance(value, bool | int | float | str | bytes | np.ndarray):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return to_wire(value.value)
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if MODEL_TYPES.get(name) is not type(value):
            raise ProtocolError(f"a {name} cannot travel (not a probepilot model type)")
        out: dict[str, Any] = {TAG: name}
        for f in dataclasses.fields(value):
            out[f.name] = to_wire(getattr(value, f.name))
        return out
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    raise ProtocolError(f"a {type(value).__name__} value cannot travel: {value!r:.60}")


def from_wire(value: Any, expected: Any = Any, where: str = "value") -> Any:
    """The value ``to_wire`` sent, checked against the type ``expected`` (a type hint).

    :raises ProtocolError: ``value`` does not fit ``expected``, naming ``where`` it was.
    """
    return _convert(value, expected, where)


def _fail(where: str, value: Any, expected: str) -> ProtocolError:
    return ProtocolError(f"{where}: {value!r:.60} is not {expected}")


def _convert(value: Any, tp: Any, where: str) -> Any:
    if tp is Any:
        if isinstance(value, dict) and TAG in value:
            return _model(value, where)
        if isinstance(value, dict):
            return {k: _convert(v, Any, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [_convert(v, Any, f"{where}[{i}]") for i, v in enumerate(value)]
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        if type(value) in options and type(value) in (int, float, str, bool, bytes):
            return value  # an exact match keeps its type (an int stays an int in int | float)
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ProtocolError:
                continue
        raise _fail(where, value, " or ".join(_name(o) for o in options))
    if origin is Literal:
        if value not in get_args(tp):
            raise _fail(where, value, f"one of {get_args(tp)}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list):
            raise _fail(where, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(where, value, f"a list of {len(args)} values")
        return tuple(
            _convert(v, a, f"{where}[{i}]")
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        key_tp, value_tp = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise _fail(where, value, "a map")
        return {
            _convert(k, key_tp, where): _convert(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if origin is np.ndarray or tp is np.ndarray:
        if not isinstance(value, np.ndarray):
            raise _fail(where, value, "an array")
        return value.astype(np.float64, copy=False)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict) or value.get(TAG, tp.__name__) != tp.__name__:
            raise _fail(where, value, f"a {tp.__name__}")
        return _build(tp, {k: v for k, v in value.items() if k != TAG}, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(where, value, "a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, value, "an integer")
        return value
    if tp in (str, bool, bytes):
        if not isinstance(value, tp):
            raise _fail(where, value, f"a {tp.__name__}")
        return value
    raise ProtocolError(f"{where}: cannot check values of type {tp!r}")


def _model(value: dict[str, Any], where: str) -> Any:
    name = value.get(TAG)
    cls = MODEL_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProtocolError(f"{where}: {name!r:.40} is not a probepilot model type")
    return _build(cls, {k: v for k, v in value.items() if k != TAG}, where)


def _build(cls: type, fields: dict[str, Any], where: str) -> Any:
    name = cls.__name__
    hints = _hints(cls)
    unknown = set(fields) - set(hints)
    if unknown:
        raise ProtocolError(f"{where}: {name} has no field {sorted(unknown)[0]!r}")
    converted = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in fields.items()}
    try:
        return cls(**converted)
    except TypeError as exc:
        raise ProtocolError(f"{where}: cannot build a {name}: {exc}") from None


@cache
def _hints(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=False)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


#: Action classes by their ``kind``, to rebuild the actions in events.
ACTION_TYPES: dict[str, type] = {
    str(next(f.default for f in dataclasses.fields(cls) if f.name == "kind")): cls
    for cls in typing.get_args(model.Action)
}


def action_from_plain(value: Any, where: str = "action") -> Any:
    """The :data:`~probepilot.model.Action` an event's plain map (as the journal writes it)
    describes, chosen by its ``kind``."""
    kind = value.get("kind") if isinstance(value, dict) else None
    cls = ACTION_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"{where}: {value!r:.60} is not an action")
    return _build(cls, dict(value), where)


def finding_from_plain(value: Any, where: str = "finding") -> model.Finding:
    """The :class:`~probepilot.model.Finding` an event's plain map describes."""
    finding: model.Finding = _convert(value, model.Finding, where)
    return finding


# --------------------------------------------------------------------------------------------
# Errors


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """What the other side needs to raise ``exc`` again: class name, message, hint (and the
    instrument's own ``command`` and ``detail`` for :class:`~probepilot.errors.InstrumentError`).
    Exceptions that are not probepilot's travel as ``RemoteError`` with their class named."""
    if isinstance(exc, ProbepilotError):
        name = type(exc).__name__
        out: dict[str, Any] = {"type": name, "message": exc.message, "hint": exc.hint}
        if name not in ERROR_TYPES:
            # A subclass the peer may not know: send its nearest known base.
            base = next(c for c in type(exc).__mro__ if c.__name__ in ERROR_TYPES)
            out["type"] = base.__name__
        if isinstance(exc, err.InstrumentError):
            out["command"], out["detail"] = exc.command, exc.detail
        return out
    return {"type": "RemoteError", "message": f"{type(exc).__name__}: {exc}", "hint": None}


def error_from_wire(body: Mapping[str, Any], where: str = "") -> ProbepilotError:
    """The error ``error_to_wire`` described, as the same class with the same message.

    ``where`` (e.g. ``"driver host tcp://10.0.0.2:5570"``) is added to the message of errors
    the peer could not name (``RemoteError``), which otherwise would not say where they came
    from."""
    name, message, hint = body.get("type"), body.get("message"), body.get("hint")
    if not isinstance(message, str):
        message = repr(message)
    hint = hint if isinstance(hint, str) else None
    cls = ERROR_TYPES.get(name) if isinstance(name, str) else None
    if cls is None or cls is err.RemoteError:
        prefix = f"{where}: " if where else ""
        unknown = f"({name}) " if cls is None and isinstance(name, str) else ""
        return err.RemoteError(f"{prefix}{unknown}{message}", hint=hint)
    exc = cls.__new__(cls)
    if isinstance(exc, err.InstrumentError):
        command, detail = body.get("command"), body.get("detail")
        exc.command = command if isinstance(command, str) else ""
        exc.detail = detail if isinstance(detail, str) else message
    ProbepilotError.__init__(exc, message, hint=hint)
    return exc
