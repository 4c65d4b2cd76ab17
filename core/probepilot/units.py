"""Unit strings at the config boundary: ``"2 nm"`` -> ``2e-9``, ``"-250 mV"`` -> ``-0.25``.

The grammar is deliberately small and strict: a number, optional spaces, then an SI prefix and a
unit from :data:`UNITS`, optionally ``/s`` for rates (``"10 nm/s"``). Anything else is an error
naming the text and the unit that was expected; nothing is guessed. Inside probepilot every
quantity is a plain float in SI units, so this module is only used when reading config.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

#: Base units probepilot accepts: (SI base, power of ten, extra factor). Powers of ten are applied
#: in decimal so that "200 nm" reads as exactly the float 2e-7 and written values read back equal.
UNITS: dict[str, tuple[str, int, float]] = {
    "m": ("m", 0, 1.0),
    "V": ("V", 0, 1.0),
    "A": ("A", 0, 1.0),
    "s": ("s", 0, 1.0),
    "Hz": ("Hz", 0, 1.0),
    "K": ("K", 0, 1.0),
    "rad": ("rad", 0, 1.0),
    "deg": ("rad", 0, math.pi / 180.0),
    "Å": ("m", -10, 1.0),
    "Ang": ("m", -10, 1.0),
    "%": ("%", -2, 1.0),
}

#: Units that take no SI prefix.
_UNPREFIXED = {"%", "Å", "Ang", "deg"}

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

#: SI prefixes as powers of ten.
PREFIXES: dict[str, int] = {
    "f": -15,
    "p": -12,
    "n": -9,
    "u": -6,
    "µ": -6,
    "μ": -6,
    "m": -3,
    "c": -2,
    "k": 3,
    "M": 6,
    "G": 9,
}

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>[^\s\d+-][^\s]*)?\s*$")


class UnitError(ValueError):
    """A unit string could not be parsed or has the wrong dimension."""


def _split_unit(token: str) -> tuple[str, int, float]:
    """``"nm"`` -> ("m", -9, 1.0); ``"deg"`` -> ("rad", 0, pi/180); UnitError if unknown."""
    if token in UNITS:
        return UNITS[token]
    prefix, rest = token[:1], token[1:]
    if prefix in PREFIXES and rest in UNITS and rest not in _UNPREFIXED:
        base, power, factor = UNITS[rest]
        return base, power + PREFIXES[prefix], factor
    raise UnitError(f"unknown unit {token!r}")


def parse_quantity(text: str, unit: str) -> float:
    """Convert ``text`` to a float in the SI ``unit`` (``"m"``, ``"V"``, ``"m/s"``, ``"1/s"`` ...).

    A bare number is taken as already in SI. Raises :class:`UnitError` with a message that names
    the text and what was expected.
    """
    match = _QUANTITY.match(text)
    if match is None:
        raise UnitError(f"cannot read {text!r} as {describe(unit)}")
    token = match["unit"]
    if token is None:
        return float(match["num"])
    numerator, _, denominator = token.partition("/")
    try:
        if numerator == "1" and unit.startswith("1/"):
            base, power, factor = "1", 0, 1.0
        else:
            base, power, factor = _split_unit(numerator)
        if denominator:
            den_base, den_power, den_factor = _split_unit(denominator)
            base, power, factor = f"{base}/{den_base}", power - den_power, factor / den_factor
    except UnitError as exc:
        raise UnitError(f"{exc} in {text!r}; expected {describe(unit)}") from None
    if base != unit and not (base == "Hz" and unit == "1/s"):
        raise UnitError(f"{text!r} is not {describe(unit)}")
    return float(Decimal(match["num"]).scaleb(power)) * factor


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


def format_quantity(value: float, unit: str, digits: int | None = None) -> str:
    """SI string for display and for writing config back: ``2e-9, "m"`` -> ``"2 nm"``.

    Compound units take the prefix on their numerator (``1e-6, "m/s"`` -> ``"1 µm/s"``). With
    ``digits=None`` the number is the shortest decimal of ``value`` shifted by whole powers of
    ten, so :func:`parse_quantity` gives back exactly ``value``; otherwise it is rounded to
    ``digits`` significant digits for display.
    """
    if not math.isfinite(value):
        return f"{value} {unit}"
    if unit == "%":
        return f"{_shift(value, 2, digits)} %"
    base, slash, per = unit.partition("/")
    if value == 0 or base not in UNITS or base in _UNPREFIXED or base == "rad":
        return f"{_shift(value, 0, digits)} {unit}"
    magnitude = abs(value)
    prefix, power = next(
        ((p, e) for p, e in _DISPLAY_PREFIXES if magnitude >= 10.0**e * 0.9999999),
        _DISPLAY_PREFIXES[-1],
    )
    return f"{_shift(value, -power, digits)} {prefix}{base}{slash}{per}"


_DISPLAY_PREFIXES = (
    ("G", 9),
    ("M", 6),
    ("k", 3),
    ("", 0),
    ("m", -3),
    ("µ", -6),
    ("n", -9),
    ("p", -12),
    ("f", -15),
)


def _shift(value: float, power: int, digits: int | None) -> str:
    """``value * 10**power`` in decimal: ``_shift(2e-7, 9, None)`` -> ``"200"``."""
    shifted = Decimal(repr(value)).scaleb(power)
    if digits is not None:
        return f"{float(shifted):.{digits}g}"
    return format(shifted.normalize(), "f")
