"""Unit strings at the config boundary: ``"2 nm"`` -> ``2e-9``, ``"-250 mV"`` -> ``-0.25``.

The grammar is deliberately small and strict: a number, optional spaces, then an SI prefix and a
unit from :data:`UNITS`, optionally ``/s`` for rates (``"10 nm/s"``). Anything else is an error
naming the text and the unit that was expected; nothing is guessed. Inside probepilot every
quantity is a plain float in SI units, so this module is only used when reading config.
"""

from __future__ import annotations

import math
import re

#: Base units probepilot accepts, with the factor to SI.
UNITS: dict[str, float] = {
    "m": 1.0,
    "V": 1.0,
    "A": 1.0,
    "s": 1.0,
    "Hz": 1.0,
    "K": 1.0,
    "rad": 1.0,
    "deg": math.pi / 180.0,
    "Å": 1e-10,
    "Ang": 1e-10,
    "%": 0.01,
}

#: What each unit accepted for a quantity is called in error messages.
DIMENSIONS: dict[str, str] = {
    "m": "a length",
    "V": "a voltage",
    "A": "a current",
    "s": "a time",
    "Hz": "a frequency",
    "K": "a temperature",
    "rad": "an angle",
    "m/s": "a speed",
    "V/s": "a voltage rate",
    "1/s": "a rate",
    "%": "a fraction",
}

PREFIXES: dict[str, float] = {
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "µ": 1e-6,
    "μ": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
}

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>[^\s\d+-][^\s]*)?\s*$")

# Which SI base a unit belongs to, for checking "expected a voltage, got a length".
_BASE_OF: dict[str, str] = {"deg": "rad", "Å": "m", "Ang": "m"}


class UnitError(ValueError):
    """A unit string could not be parsed or has the wrong dimension."""


def _split_unit(token: str) -> tuple[float, str]:
    """``"nm"`` -> (1e-9, "m"); ``"mV"`` -> (1e-3, "V"); raises UnitError for unknown units."""
    if token in UNITS:
        return UNITS[token], _BASE_OF.get(token, token)
    prefix, rest = token[:1], token[1:]
    if prefix in PREFIXES and rest in UNITS and rest not in ("%", "Å", "Ang", "deg"):
        return PREFIXES[prefix] * UNITS[rest], _BASE_OF.get(rest, rest)
    raise UnitError(f"unknown unit {token!r}")


def parse_quantity(text: str, unit: str) -> float:
    """Convert ``text`` to a float in the SI ``unit`` (``"m"``, ``"V"``, ``"m/s"``, ``"1/s"`` ...).

    A bare number is taken as already in SI. Raises :class:`UnitError` with a message that names
    the text and what was expected.
    """
    match = _QUANTITY.match(text)
    if match is None:
        raise UnitError(f"cannot read {text!r} as {describe(unit)}")
    value = float(match["num"])
    token = match["unit"]
    if token is None:
        return value
    numerator, _, denominator = token.partition("/")
    try:
        if numerator == "1" and unit.startswith("1/"):
            factor, base = 1.0, "1"
        else:
            factor, base = _split_unit(numerator)
        if denominator:
            den_factor, den_base = _split_unit(denominator)
            factor /= den_factor
            base = f"{base}/{den_base}"
    except UnitError as exc:
        raise UnitError(f"{exc} in {text!r}; expected {describe(unit)}") from None
    if base != unit and not (base == "Hz" and unit == "1/s"):
        raise UnitError(f"{text!r} is not {describe(unit)}")
    return value * factor


def describe(unit: str) -> str:
    """``"V"`` -> ``"a voltage such as '2.5 V' or '-250 mV'"``, for error messages."""
    examples = {
        "m": "'2 nm' or '500 pm'",
        "V": "'2.5 V' or '-250 mV'",
        "A": "'50 pA' or '1 nA'",
        "s": "'200 ms' or '1 s'",
        "Hz": "'1 kHz'",
        "K": "'4.3 K'",
        "rad": "'30 deg' or '0.5 rad'",
        "m/s": "'50 nm/s'",
        "1/s": "'10 1/s' or '10 Hz'",
        "%": "'5 %'",
    }
    name = DIMENSIONS.get(unit, f"a quantity in {unit}")
    example = examples.get(unit)
    return f"{name} such as {example}" if example else name


def format_quantity(value: float, unit: str) -> str:
    """Pretty SI string for display: ``format_quantity(2e-9, "m")`` -> ``"2 nm"``."""
    if unit == "%":
        return f"{value * 100:g} %"
    if value == 0 or not math.isfinite(value) or "/" in unit or unit == "rad":
        return f"{value:g} {unit}"
    magnitude = abs(value)
    for prefix, factor in (
        ("G", 1e9),
        ("M", 1e6),
        ("k", 1e3),
        ("", 1.0),
        ("m", 1e-3),
        ("µ", 1e-6),
        ("n", 1e-9),
        ("p", 1e-12),
        ("f", 1e-15),
    ):
        if magnitude >= factor * 0.9999999:
            return f"{value / factor:.6g} {prefix}{unit}"
    return f"{value / 1e-15:.6g} f{unit}"
