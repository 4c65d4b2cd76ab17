"""Option schemas: the typed tables plugins declare and the core validates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from probepilot.errors import ConfigError
from probepilot.options import Doc, Quantity, Range, build, fields_of, to_table


@dataclass(frozen=True)
class Inner:
    gain: Annotated[float, Range(0, 10)] = 1.0


@dataclass(frozen=True)
class Schema:
    host: Annotated[str, Doc("controller address")] = "127.0.0.1"
    ports: Annotated[list[int], Range(1, 65535)] = field(default_factory=lambda: [6501])
    mode: Literal["fast", "careful"] = "careful"
    bias: Annotated[float, Quantity("V"), Range(-10, 10, ceiling=True)] = 1.0
    window: Annotated[tuple[float, float], Quantity("m")] = (0.0, 1e-6)
    steps: tuple[float, ...] = ()
    timeout: Annotated[float | None, Quantity("s")] = None
    inner: Inner = field(default_factory=Inner)


def make(table: dict[str, object]) -> Schema:
    return build(Schema, table, source="lab.toml", key="drivers.x")


def test_defaults_and_conversion() -> None:
    assert make({}) == Schema()
    value = make(
        {
            "ports": [6501, 6502],
            "bias": "-250 mV",
            "window": ["10 nm", "1 um"],
            "steps": [1, 2.5],
            "timeout": "500 ms",
            "inner": {"gain": 3},
            "mode": "fast",
        }
    )
    assert value.ports == [6501, 6502]
    assert value.bias == pytest.approx(-0.25)
    assert value.window == pytest.approx((1e-8, 1e-6))
    assert value.steps == (1.0, 2.5)
    assert value.timeout == pytest.approx(0.5)
    assert value.inner.gain == 3.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"ports": [6501, 70000]}, "drivers.x.ports[1]: 70000 is above the maximum of 65535"),
        ({"ports": 6501}, "drivers.x.ports: 6501 is not a list"),
        ({"mode": "quick"}, "drivers.x.mode: 'quick' is not allowed; expected one of 'fast'"),
        ({"bias": "-11 V"}, "drivers.x.bias: -11 V is below the hard floor of -10 V"),
        ({"inner": {"gain": -1}}, "drivers.x.inner.gain: -1 is below the minimum of 0"),
        ({"inner": {"gian": 1}}, "drivers.x.inner.gian: unknown key 'gian'; expected one of: gain"),
        ({"inner": 3}, "drivers.x.inner: 3 is not a table"),
        ({"host": 5}, "drivers.x.host: 5 is not a string"),
        ({"timeout": "5 nm"}, "drivers.x.timeout: bad unit string: '5 nm' is not a time"),
        ({"steps": ["a"]}, "drivers.x.steps[0]: 'a' is not a number"),
    ],
)
def test_errors_name_file_key_and_expectation(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(table)
    assert str(info.value).startswith(f"lab.toml: {message}")
    assert "\n" not in str(info.value)


def test_to_table_writes_units_and_reads_back() -> None:
    value = make({"bias": "-250 mV", "window": ["10 nm", "1 um"], "timeout": "2 s"})
    table = to_table(value)
    assert table["bias"] == "-250 mV"
    assert table["window"] == ["10 nm", "1 µm"]
    assert make(table) == value
    assert "timeout" not in to_table(make({}))  # None is absent, as TOML has no null


def test_fields_carry_their_docs() -> None:
    infos = {info.name: info for info in fields_of(Schema)}
    assert infos["host"].doc == "controller address"
    assert infos["bias"].quantity == Quantity("V")
