import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probepilot.units import UnitError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("2 nm", "m", 2e-9),
        ("-250 mV", "V", -0.25),
        ("50 pA", "A", 50e-12),
        ("200 ms", "s", 0.2),
        ("1.5e-9", "m", 1.5e-9),
        ("1.5e-9 m", "m", 1.5e-9),
        ("3Å", "m", 3e-10),
        ("10 nm/s", "m/s", 10e-9),
        ("2 µm/s", "m/s", 2e-6),
        ("30 deg", "rad", math.pi / 6),
        ("5 kHz", "Hz", 5e3),
        ("10 Hz", "1/s", 10.0),
        ("+4 V", "V", 4.0),
        (".5 nA", "A", 0.5e-9),
        ("5 %", "%", 0.05),
    ],
)
def test_parse(text: str, unit: str, expected: float) -> None:
    assert parse_quantity(text, unit) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "unit", "message"),
    [
        ("2 nmm", "m", "unknown unit 'nmm'"),
        ("2 nm", "V", "is not a voltage"),
        ("two nm", "m", "cannot read 'two nm'"),
        ("", "V", "cannot read"),
        ("4 V V", "V", "cannot read"),
        ("3 nA", "m/s", "is not a speed"),
    ],
)
def test_parse_errors_say_what_was_expected(text: str, unit: str, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_quantity(text, unit)


@pytest.mark.parametrize(
    ("value", "unit"), [(2e-9, "m"), (-0.25, "V"), (5e-11, "A"), (0.2, "s"), (0.05, "%")]
)
def test_format_parses_back(value: float, unit: str) -> None:
    assert parse_quantity(format_quantity(value, unit), unit) == pytest.approx(value, rel=1e-9)


def test_format_picks_prefix() -> None:
    assert format_quantity(2e-9, "m") == "2 nm"
    assert format_quantity(-0.25, "V") == "-250 mV"
    assert format_quantity(4.0, "V") == "4 V"


@given(
    value=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(["m", "V", "A", "s", "Hz", "%", "m/s", "rad"]),
)
def test_writing_and_reading_back_is_exact(value: float, unit: str) -> None:
    assert parse_quantity(format_quantity(value, unit), unit) == value
