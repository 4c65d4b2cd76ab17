"""Model values and errors across the wire: what goes in comes out, with the same types; what
does not fit the model is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from probepilot import errors
from probepilot.bus import codec, wire
from probepilot.errors import ProtocolError
from probepilot.model import (
    Channel,
    Dip,
    Finding,
    Frame,
    InstrumentLimits,
    LineProgress,
    Pulse,
    Scan,
    ScanArea,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)

AREA = ScanArea((1e-9, -2e-9), (10e-9, 5e-9), 16, 8, 0.25)


def over_the_wire(value: Any, expected: Any = Any) -> Any:
    message = wire.decode(wire.encode("result", {"value": codec.to_wire(value)}))
    return codec.from_wire(message.body["value"], expected)


def frame() -> Frame:
    rng = np.random.default_rng(1)
    return Frame(
        channels={
            "Z": Channel("Z", "m", rng.normal(size=(8, 16)), rng.normal(size=(8, 16))),
            "Current": Channel("Current", "A", rng.normal(size=(8, 16)), None),
        },
        area=AREA,
        direction="up",
        bias=0.5,
        setpoint=1e-10,
        line_time=0.05,
        started_at=100.0,
        finished_at=101.5,
        lines_done=8,
        source="sim",
        metadata={"seed": 3, "surface": "au111", "time": 1.5},
    )


@pytest.mark.parametrize(
    "value",
    [
        AREA,
        ScanSettings(AREA, 0.1, "up", ("Z",)),
        SpectrumRequest(-1.0, 1.0, 101, channels=("Current", "dIdV")),
        TipPosition(1e-9, 2e-9, 3e-9),
        InstrumentLimits((1e-6, 1e-6, 2e-7), (-10.0, 10.0), 1e-7, (0.0, 2e-7)),
        InstrumentLimits((1e-6, 1e-6, 2e-7), (-10.0, 10.0)),
    ],
)
def test_frozen_model_values_round_trip_equal(value: Any) -> None:
    assert over_the_wire(value, type(value)) == value


def test_a_frame_round_trips_with_its_arrays_bit_for_bit_and_its_types() -> None:
    original = frame()
    received = over_the_wire(original, Frame)
    assert received.area == original.area and received.direction == "up"
    assert received.metadata == original.metadata
    assert type(received.metadata["seed"]) is int  # an int stays an int
    for name, channel in original.channels.items():
        got = received.channels[name]
        assert np.array_equal(got.forward, channel.forward)
        assert got.forward.dtype == np.float64
        if channel.backward is None:
            assert got.backward is None
        else:
            assert np.array_equal(got.backward, channel.backward)


def test_spectra_and_progress_lines_round_trip() -> None:
    spectrum = Spectrum(
        "Bias",
        "V",
        np.linspace(-1, 1, 5),
        {"Current": np.arange(5.0)},
        {"Current": "A"},
        (1e-9, 0.0),
        complete=False,
    )
    got = over_the_wire(spectrum, Spectrum)
    assert np.array_equal(got.sweep, spectrum.sweep) and got.position == (1e-9, 0.0)
    assert got.complete is False
    line = LineProgress(3, 8, {"Z": np.arange(16.0)}, {"Z": np.arange(16.0)[::-1]})
    got_line = over_the_wire(line, LineProgress)
    assert got_line.index == 3 and np.array_equal(got_line.backward["Z"], np.arange(16.0)[::-1])


@pytest.mark.parametrize(
    ("value", "expected", "problem"),
    [
        (
            {"__t": "ScanArea", "centre": [0, 0], "size": [1, 1], "pixels": "8", "lines": 8},
            ScanArea,
            "pixels: '8' is not an integer",
        ),
        (
            {"__t": "ScanArea", "centre": [0], "size": [1, 1], "pixels": 8, "lines": 8},
            ScanArea,
            "a list of 2 values",
        ),
        (
            {"__t": "ScanSettings", "area": {"__t": "ScanArea"}, "line_time": 0.1},
            ScanSettings,
            "cannot build a ScanArea",
        ),
        ({"__t": "Popen", "args": ["rm"]}, Any, "not a probepilot model type"),
        (
            {"__t": "TipPosition", "x": 1.0, "y": 2.0, "z": 3.0, "evil": 1},
            TipPosition,
            "has no field 'evil'",
        ),
        ({"__t": "ScanSettings", "area": None, "line_time": 0.1}, ScanSettings, "area"),
        (
            {
                "__t": "ScanSettings",
                "area": {
                    "__t": "ScanArea",
                    "centre": [0, 0],
                    "size": [1, 1],
                    "pixels": 8,
                    "lines": 8,
                },
                "line_time": 0.1,
                "direction": "sideways",
            },
            ScanSettings,
            "one of",
        ),
        (True, float, "not a number"),
        ("1.0", float, "not a number"),
    ],
)
def test_values_that_do_not_fit_the_model_are_refused(
    value: Any, expected: Any, problem: str
) -> None:
    with pytest.raises(ProtocolError, match=problem):
        codec.from_wire(value, expected)


def test_only_model_types_may_be_sent() -> None:
    from dataclasses import dataclass

    @dataclass
    class Mine:
        x: int = 1

    with pytest.raises(ProtocolError, match="cannot travel"):
        codec.to_wire(Mine())


@pytest.mark.parametrize(
    "error",
    [
        errors.LimitError("sim: bias 100 V is outside [-10, 10] V", hint="see limits()"),
        errors.NotConnectedError("sim: not connected"),
        errors.NotSupportedError("driver 'x' does not support dips"),
        errors.DriverTimeoutError("Bias.Get: no reply within 5 s"),
        errors.DriverConnectionError("lost"),
        errors.InstrumentError("Scan.Action", "scan is already running"),
        errors.TipCrashError("Dip", "the tip crashed"),
        errors.ProtocolError("bad"),
    ],
)
def test_errors_are_raised_again_as_the_same_type_with_the_same_text(
    error: errors.ProbepilotError,
) -> None:
    body = wire.decode(wire.encode("error", codec.error_to_wire(error))).body
    again = codec.error_from_wire(body, "driver host tcp://h:1")
    assert type(again) is type(error)
    assert str(again) == str(error) and again.hint == error.hint
    if isinstance(error, errors.InstrumentError):
        assert isinstance(again, errors.InstrumentError)
        assert (again.command, again.detail) == (error.command, error.detail)


def test_foreign_exceptions_and_unknown_types_become_remote_errors_saying_where() -> None:
    again = codec.error_from_wire(codec.error_to_wire(ZeroDivisionError("division by zero")), "h")
    assert type(again) is errors.RemoteError
    assert str(again) == "h: ZeroDivisionError: division by zero"
    odd = codec.error_from_wire({"type": "SystemExit", "message": "bye"}, "h")
    assert type(odd) is errors.RemoteError and "SystemExit" in str(odd)

    class Mine(errors.LimitError):
        pass

    assert codec.error_to_wire(Mine("x"))["type"] == "LimitError"  # its nearest known base


def test_event_actions_and_findings_are_rebuilt_from_their_journal_form() -> None:
    from probepilot.store.journal import plain

    for action in (Pulse(4.0, 0.2, (1e-9, 2e-9)), Dip(1e-9), Scan(ScanSettings(AREA, 0.1))):
        assert codec.action_from_plain(plain(action)) == action
    finding = Finding("double_tip", "double_tip", 0.8, {"offset_x": 1e-9, "status": "ok"}, (1, 2))
    assert codec.finding_from_plain(plain(finding)) == finding
    with pytest.raises(ProtocolError):
        codec.action_from_plain({"kind": "launch"})
