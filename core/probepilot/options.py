"""Option schemas: how the core and every plugin declare what their config table accepts.

A schema is a frozen dataclass whose fields carry their type and, through ``typing.Annotated``,
their unit, range and documentation::

    @dataclass(frozen=True)
    class RulesOptions:
        bad_frames_before_conditioning: Annotated[int, Range(1, 100), Doc("...")] = 3
        first_pulse: Annotated[float, Quantity("V"), Range(-10, 10)] = 2.5

:func:`build` turns a TOML table into an instance, converting unit strings to SI once, and raises
:class:`~probepilot.errors.ConfigError` naming the file, the key path, the value and what was
expected. :func:`to_table` goes the other way for ``probepilot config show``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from probepilot.errors import ConfigError
from probepilot.units import UnitError, describe, format_quantity, parse_quantity

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Quantity:
    """The field is a physical quantity stored in SI ``unit``; config may write a unit string."""

    unit: str


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds. ``ceiling=True`` marks them as hard limits no config can exceed."""

    low: float | None = None
    high: float | None = None
    ceiling: bool = False


@dataclass(frozen=True, slots=True)
class Doc:
    """One sentence for the config reference."""

    text: str


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """Everything :func:`build` knows about one field."""

    name: str
    type: Any
    quantity: Quantity | None
    range: Range | None
    doc: str
    default: Any


def fields_of(schema: type) -> list[FieldInfo]:
    """The documented fields of a schema dataclass, in declaration order."""
    hints = get_type_hints(schema, include_extras=True)
    out = []
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        quantity = range_ = None
        doc = ""
        base = hint
        if get_origin(hint) is typing.Annotated:
            base, *extras = get_args(hint)
            for extra in extras:
                if isinstance(extra, Quantity):
                    quantity = extra
                elif isinstance(extra, Range):
                    range_ = extra
                elif isinstance(extra, Doc):
                    doc = extra.text
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(FieldInfo(f.name, base, quantity, range_, doc, default))
    return out


def build(schema: type[T], table: Mapping[str, Any] | None, *, source: str, key: str) -> T:
    """Validate ``table`` against ``schema`` and return the instance.

    ``source`` (the file) and ``key`` (the dotted path of ``table`` inside it) go into every
    error message.
    """
    table = dict(table or {})
    infos = fields_of(schema)
    known = {info.name for info in infos}
    for name in table:
        if name not in known:
            raise ConfigError(
                f"unknown key {name!r}",
                source=source,
                key=_join(key, name),
                expected=f"one of: {', '.join(sorted(known))}" if known else "no keys here",
            )
    values: dict[str, Any] = {}
    for info in infos:
        path = _join(key, info.name)
        if info.name in table:
            values[info.name] = _convert(info, info.type, table[info.name], source, path)
        elif info.default is dataclasses.MISSING:
            raise ConfigError("missing required key", source=source, key=path)
    try:
        instance = schema(**values)
    except (ValueError, TypeError) as exc:
        # A schema's own __post_init__ checks (e.g. low < high) report through ValueError.
        raise ConfigError(str(exc), source=source, key=key or "<top level>") from None
    return instance


def _join(key: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


def _type_name(tp: Any, quantity: Quantity | None) -> str:
    if quantity is not None:
        return describe(quantity.unit)
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(info: FieldInfo, tp: Any, value: Any, source: str, path: str) -> Any:
    def fail(problem: str, expected: str | None = None) -> ConfigError:
        return ConfigError(problem, source=source, key=path, value=value, expected=expected)

    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"schema field {info.name}: only `X | None` unions are supported")
        return _convert(info, args[0], value, source, path)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise fail(f"{value!r} is not allowed", _type_name(tp, None))
        return value
    if origin is list or (origin is tuple and get_args(tp)[-1:] == (Ellipsis,)):
        if not isinstance(value, list):
            raise fail(
                f"{value!r} is not a list",
                f"a list of {_type_name(get_args(tp)[0], info.quantity)}",
            )
        item_tp = get_args(tp)[0]
        items = [
            _convert(info, item_tp, item, source, _join(path, i)) for i, item in enumerate(value)
        ]
        return items if origin is list else tuple(items)
    if origin is tuple:
        item_tps = get_args(tp)
        if not isinstance(value, list) or len(value) != len(item_tps):
            raise fail(
                f"{value!r} is not a list of {len(item_tps)} values",
                f"{len(item_tps)} values, each {_type_name(item_tps[0], info.quantity)}",
            )
        return tuple(
            _convert(info, item_tp, item, source, _join(path, i))
            for i, (item_tp, item) in enumerate(zip(item_tps, value, strict=True))
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise fail(f"{value!r} is not a table", "a table")
        return build(tp, value, source=source, key=path)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"{value!r} is not a boolean", "true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"{value!r} is not a string", "a string")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"{value!r} is not an integer", "an integer")
        _check_range(info, value, fail)
        return value
    if tp is float:
        if info.quantity is not None and isinstance(value, str):
            try:
                number = parse_quantity(value, info.quantity.unit)
            except UnitError as exc:
                raise fail(f"bad unit string: {exc}") from None
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"{value!r} is not a number", _type_name(tp, info.quantity))
        else:
            number = float(value)
        if not math.isfinite(number):
            raise fail(f"{value!r} is not a finite number", _type_name(tp, info.quantity))
        _check_range(info, number, fail)
        return number
    raise TypeError(f"schema field {info.name}: unsupported type {tp!r}")


def _check_range(info: FieldInfo, number: float, fail: Callable[[str], ConfigError]) -> None:
    rng = info.range
    if rng is None:
        return
    unit = info.quantity.unit if info.quantity else ""

    def show(v: float) -> str:
        return format_quantity(v, unit) if unit else f"{v:g}"

    kind = "hard ceiling" if rng.ceiling else "maximum"
    if rng.high is not None and number > rng.high:
        raise fail(f"{show(number)} is above the {kind} of {show(rng.high)}")
    kind = "hard floor" if rng.ceiling else "minimum"
    if rng.low is not None and number < rng.low:
        raise fail(f"{show(number)} is below the {kind} of {show(rng.low)}")


def to_table(instance: Any) -> dict[str, Any]:
    """The TOML table of a schema instance, quantities written with their unit."""
    out: dict[str, Any] = {}
    for info in fields_of(type(instance)):
        value = getattr(instance, info.name)
        if value is not None:  # TOML has no null: an unset optional key is simply absent
            out[info.name] = _to_toml(info, value)
    return out


def _to_toml(info: FieldInfo, value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_table(value)
    if isinstance(value, (list, tuple)):
        return [_to_toml(info, v) for v in value]
    if info.quantity is not None and isinstance(value, float):
        return format_quantity(value, info.quantity.unit)
    return value
