"""The safety envelope: one test per rule with its exact reason, the [safety] config table, and a
property test that throws random configs, instruments and actions at the envelope and checks
every accepted action against an independent oracle."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepilot import options
from probepilot.errors import ConfigError, SafetyError
from probepilot.model import (
    Approach,
    CoarseStep,
    CompensateDrift,
    Dip,
    InstrumentLimits,
    Move,
    Pulse,
    Scan,
    ScanArea,
    ScanSettings,
    SetBias,
    SetSetpoint,
    Stop,
    TipPosition,
    Withdraw,
)
from probepilot.safety import (
    HARD_MAX_BIAS,
    HARD_MAX_COARSE_STEPS,
    HARD_MAX_CONDITIONING_PER_MINUTE,
    HARD_MAX_DIP_DEPTH,
    HARD_MAX_DRIFT_COMPENSATION,
    HARD_MAX_PULSE,
    HARD_MAX_PULSE_WIDTH,
    HARD_MAX_SCAN_PIXELS,
    HARD_MAX_SCAN_SPEED,
    HARD_MAX_SETPOINT,
    HARD_MIN_SETPOINT,
    HARD_MIN_Z_MARGIN,
    EnvelopeState,
    SafetyEnvelope,
    SafetyLimits,
    Verdict,
)

NAN = float("nan")
INF = float("inf")

# A 1 µm x 1 µm x 1 µm scanner with a +/-10 V bias output, tip in the middle of the z range.
INSTRUMENT = InstrumentLimits(piezo_range=(1e-6, 1e-6, 1e-6), bias_range=(-10.0, 10.0))
STATE = EnvelopeState(INSTRUMENT, TipPosition(0.0, 0.0, 0.0))


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def envelope(mode: Literal["reject", "clamp"] = "reject", **limits: Any) -> SafetyEnvelope:
    return SafetyEnvelope(SafetyLimits(on_violation=mode, **limits), clock=FakeClock())


def reasons(action: Any, state: EnvelopeState = STATE, **limits: Any) -> tuple[str, ...]:
    """The reasons of a rejection in reject mode (asserting it was rejected)."""
    verdict = envelope(**limits).check(action, state)
    assert not verdict.accepted
    assert verdict.action is action
    return verdict.reasons


def clamped(action: Any, state: EnvelopeState = STATE, **limits: Any) -> Verdict:
    """The verdict in clamp mode, asserting the action was clamped."""
    verdict = envelope("clamp", **limits).check(action, state)
    assert verdict.accepted and verdict.clamped, verdict.reasons
    assert verdict.requested is action
    return verdict


def accepted(action: Any, state: EnvelopeState = STATE, **limits: Any) -> None:
    verdict = envelope(**limits).check(action, state)
    assert verdict.accepted, verdict.reasons
    assert verdict.action is action
    assert verdict.reasons == ()
    assert not verdict.clamped


# --------------------------------------------------------------------------------------------
# The [safety] table


def test_defaults_are_what_a_microscopist_expects() -> None:
    limits = SafetyLimits()
    assert limits.bias_range == (-3.0, 3.0)
    assert limits.max_setpoint == 1e-9
    assert limits.min_setpoint == 1e-12
    assert limits.max_pulse == 8.0
    assert limits.max_pulse_width == 0.5
    assert limits.max_dip_depth == 5e-9
    assert limits.max_scan_speed == 1e-6
    assert limits.max_conditioning_per_minute == 6
    assert limits.on_violation == "reject"
    assert (HARD_MAX_PULSE, HARD_MAX_DIP_DEPTH, HARD_MAX_BIAS) == (10.0, 10e-9, 10.0)


def test_hard_ceiling_in_config_names_file_key_and_ceiling() -> None:
    with pytest.raises(ConfigError) as info:
        options.build(SafetyLimits, {"max_pulse": "12 V"}, source="x.toml", key="safety")
    text = str(info.value)
    assert "x.toml" in text
    assert "safety.max_pulse" in text
    assert "hard ceiling" in text
    assert text == "x.toml: safety.max_pulse: 12 V is above the hard ceiling of 10 V"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "max_dip_depth",
            "20 nm",
            "safety.max_dip_depth: 20 nm is above the hard ceiling of 10 nm",
        ),
        ("bias_range", ["-12 V", "1 V"], "safety.bias_range[0]: -12 V is below the hard floor"),
        ("max_setpoint", "1 uA", "safety.max_setpoint: 1 µA is above the hard ceiling of 100 nA"),
        ("max_pulse_width", "2 s", "safety.max_pulse_width: 2 s is above the hard ceiling of 1 s"),
        ("max_conditioning_per_minute", 31, "31 is above the hard ceiling of 30"),
        ("max_coarse_steps", 5000, "5000 is above the hard ceiling of 1000"),
        ("z_margin", "0.5 nm", "safety.z_margin: 500 pm is below the hard floor of 1 nm"),
        ("max_scan_speed", "20 um/s", "safety.max_scan_speed: 20 µm/s is above the hard ceiling"),
        ("on_violation", "ignore", "safety.on_violation: 'ignore' is not allowed"),
    ],
)
def test_config_cannot_exceed_hard_limits(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=r"hard|not allowed") as info:
        options.build(SafetyLimits, {key: value}, source="lab.toml", key="safety")
    assert str(info.value).startswith("lab.toml: ")
    assert message in str(info.value)


def test_unit_strings_are_converted_once() -> None:
    limits = options.build(
        SafetyLimits,
        {
            "max_pulse": "4 V",
            "max_pulse_width": "500 ms",
            "max_dip_depth": "2 nm",
            "bias_range": ["-250 mV", "1.5 V"],
            "max_setpoint": "2 nA",
            "min_setpoint": "5 pA",
            "max_scan_speed": "200 nm/s",
            "on_violation": "clamp",
        },
        source="x.toml",
        key="safety",
    )
    assert limits.max_pulse == 4.0
    assert limits.max_pulse_width == pytest.approx(0.5)
    assert limits.max_dip_depth == pytest.approx(2e-9)
    assert limits.bias_range == pytest.approx((-0.25, 1.5))
    assert limits.max_setpoint == pytest.approx(2e-9)
    assert limits.min_setpoint == pytest.approx(5e-12)
    assert limits.max_scan_speed == pytest.approx(2e-7)
    assert limits.on_violation == "clamp"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"bias_range": ["2 V", "-2 V"]}, "bias_range: the low end 2 V must be below the high end"),
        ({"min_setpoint": "2 nA", "max_setpoint": "1 nA"}, "min_setpoint 2 nA must be below"),
        ({"dip_bias_range": ["1 V", "0 V"]}, "dip_bias_range: the low end 1 V must not be above"),
        ({"max_pulse": "0 V"}, "max_pulse must be positive"),
    ],
)
def test_inconsistent_settings_are_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        options.build(SafetyLimits, table, source="x.toml", key="safety")
    assert str(info.value).startswith("x.toml: safety: ")
    assert message in str(info.value)


def test_limits_built_in_code_cannot_bypass_the_ceilings() -> None:
    with pytest.raises(ValueError, match="max_pulse 50 V is above the hard ceiling of 10 V"):
        SafetyLimits(max_pulse=50.0)
    with pytest.raises(ValueError, match="max_dip_depth must be a finite number"):
        SafetyLimits(max_dip_depth=NAN)
    with pytest.raises(ValueError, match="max_coarse_steps must be an integer"):
        SafetyLimits(max_coarse_steps=2.5)  # type: ignore[arg-type]


def test_effective_table_round_trips() -> None:
    limits = SafetyLimits(max_pulse=4.0, on_violation="clamp")
    table = options.to_table(limits)
    assert table["max_pulse"] == "4 V"
    assert table["max_dip_depth"] == "5 nm"
    assert options.build(SafetyLimits, table, source="x.toml", key="safety") == limits


# --------------------------------------------------------------------------------------------
# Pulses


def test_pulse_within_limits_passes() -> None:
    accepted(Pulse(8.0, 0.5))
    accepted(Pulse(-3.0, 0.01, position=(5e-7, -5e-7)))


@pytest.mark.parametrize(
    ("pulse", "expected"),
    [
        (Pulse(9.5, 0.1), "pulse 9.5 V exceeds max_pulse 8 V"),
        (Pulse(-9.5, 0.1), "pulse -9.5 V exceeds max_pulse 8 V in magnitude"),
        (Pulse(8.000001, 0.1), "pulse 8.000001 V exceeds max_pulse 8 V"),
        (Pulse(8.0000000000001, 0.1), "pulse 8.0000000000001 V exceeds max_pulse 8 V"),
        (Pulse(2.0, 0.0), "pulse width 0 s must be positive"),
        (Pulse(2.0, -0.1), "pulse width -100 ms must be positive"),
        (Pulse(2.0, 0.7), "pulse width 700 ms exceeds max_pulse_width 500 ms"),
        (Pulse(NAN, 0.1), "pulse voltage is not a finite number (nan)"),
        (Pulse(INF, 0.1), "pulse voltage is not a finite number (inf)"),
        (Pulse(2.0, NAN), "pulse width is not a finite number (nan)"),
        (Pulse("8 V", 0.1), "pulse voltage is not a number ('8 V')"),  # type: ignore[arg-type]
        (Pulse(True, 0.1), "pulse voltage is not a number (True)"),
        (
            Pulse(2.0, 0.1, (6e-7, 0.0)),
            "pulse position x 600 nm is outside the piezo x range ±500 nm",
        ),
        (Pulse(2.0, 0.1, (0.0, NAN)), "pulse position y is not a finite number (nan)"),
        (Pulse(2.0, 0.1, (0.0,)), "pulse position must be (x, y) in metres, got (0.0,)"),  # type: ignore[arg-type]
    ],
)
def test_pulse_rules(pulse: Pulse, expected: str) -> None:
    assert reasons(pulse) == (expected,)


def test_pulse_reports_every_violated_limit() -> None:
    assert reasons(Pulse(-9.5, 0.7, (6e-7, 0.0))) == (
        "pulse position x 600 nm is outside the piezo x range ±500 nm",
        "pulse -9.5 V exceeds max_pulse 8 V in magnitude",
        "pulse width 700 ms exceeds max_pulse_width 500 ms",
    )


def test_pulse_must_fit_the_instrument_bias_output() -> None:
    small = EnvelopeState(InstrumentLimits((1e-6, 1e-6, 1e-6), (-5.0, 5.0)))
    assert reasons(Pulse(6.0, 0.1), small) == (
        "pulse 6 V is outside the instrument bias range -5 V to 5 V",
    )
    verdict = clamped(Pulse(-9.0, 0.1), small)
    assert verdict.action == Pulse(-5.0, 0.1)
    assert verdict.reasons == (
        "pulse -9 V exceeds max_pulse 8 V in magnitude; clamped to -5 V",
        "pulse -9 V is outside the instrument bias range -5 V to 5 V; clamped to -5 V",
    )


def test_pulse_clamp_keeps_sign_and_says_so() -> None:
    verdict = clamped(Pulse(-9.5, 0.7, (6e-7, 0.0)))
    assert verdict.action == Pulse(-8.0, 0.5, (5e-7, 0.0))
    assert verdict.reasons == (
        "pulse position x 600 nm is outside the piezo x range ±500 nm; clamped to 500 nm",
        "pulse -9.5 V exceeds max_pulse 8 V in magnitude; clamped to -8 V",
        "pulse width 700 ms exceeds max_pulse_width 500 ms; clamped to 500 ms",
    )


def test_clamp_mode_still_rejects_what_cannot_be_clamped() -> None:
    env = envelope("clamp")
    for action in (Pulse(NAN, 0.1), Pulse(9.0, 0.0), Pulse(9.0, INF), Dip(-1e-9)):
        verdict = env.check(action, STATE)
        assert not verdict.accepted and not verdict.clamped
        assert verdict.action is action
    # A fatal problem wins over a clampable one, and nothing claims to have been clamped.
    assert env.check(Pulse(9.0, NAN), STATE).reasons == (
        "pulse width is not a finite number (nan)",
        "pulse 9 V exceeds max_pulse 8 V",
    )


# --------------------------------------------------------------------------------------------
# Dips


def test_dip_within_limits_passes() -> None:
    accepted(Dip(5e-9))
    accepted(Dip(1e-9, bias=0.5, position=(0.0, 1e-7)))


@pytest.mark.parametrize(
    ("dip", "expected"),
    [
        (Dip(0.0), "dip depth 0 m must be positive"),
        (Dip(-2e-9), "dip depth -2 nm must be positive"),
        (Dip(6e-9), "dip depth 6 nm exceeds max_dip_depth 5 nm"),
        (Dip(NAN), "dip depth is not a finite number (nan)"),
        (Dip(2e-9, bias=2.0), "dip bias 2 V is outside dip_bias_range -1 V to 1 V"),
        (Dip(2e-9, bias=-INF), "dip bias is not a finite number (-inf)"),
        (
            Dip(2e-9, position=(0.0, -7e-7)),
            "dip position y -700 nm is outside the piezo y range ±500 nm",
        ),
    ],
)
def test_dip_rules(dip: Dip, expected: str) -> None:
    assert reasons(dip) == (expected,)


def test_dip_keeps_the_tip_above_the_end_of_the_z_range() -> None:
    # z range ±500 nm, z_margin 10 nm: the tip may go down to -490 nm.
    low = EnvelopeState(INSTRUMENT, TipPosition(0.0, 0.0, -487e-9))
    accepted(Dip(3e-9), low)
    assert reasons(Dip(4e-9), low) == (
        "dip depth 4 nm would take the tip from z -487 nm to -491 nm, below the z floor "
        "-490 nm (z range -500 nm to 500 nm, z_margin 10 nm)",
    )
    verdict = clamped(Dip(4e-9), low)
    assert isinstance(verdict.action, Dip)
    assert -487e-9 - verdict.action.depth >= -500e-9 + 10e-9
    assert verdict.action.depth == pytest.approx(3e-9)
    # z_margin is configurable (above its hard floor).
    accepted(Dip(4e-9), low, z_margin=5e-9)


def test_dip_with_no_room_left_is_rejected_even_in_clamp_mode() -> None:
    stuck = EnvelopeState(INSTRUMENT, TipPosition(0.0, 0.0, -495e-9))
    expected = (
        "the tip at z -495 nm has no room for a dip above the z floor -490 nm "
        "(z range -500 nm to 500 nm, z_margin 10 nm)",
    )
    assert reasons(Dip(1e-9), stuck) == expected
    verdict = envelope("clamp").check(Dip(1e-9), stuck)
    assert not verdict.accepted and verdict.reasons == expected


def test_dip_with_unknown_tip_is_checked_against_depth_only() -> None:
    unknown = EnvelopeState(INSTRUMENT, None)
    accepted(Dip(5e-9), unknown)
    assert reasons(Dip(5e-9), EnvelopeState(INSTRUMENT, TipPosition(0.0, 0.0, NAN))) == (
        "tip z is not a finite number (nan)",
    )


def test_dip_bias_must_also_fit_the_instrument() -> None:
    odd = EnvelopeState(InstrumentLimits((1e-6, 1e-6, 1e-6), (-0.5, 10.0)))
    assert reasons(Dip(1e-9, bias=-0.8), odd) == (
        "dip bias -800 mV is outside the instrument bias range -500 mV to 10 V",
    )
    assert clamped(Dip(1e-9, bias=-0.8), odd).action == Dip(1e-9, bias=-0.5)


# --------------------------------------------------------------------------------------------
# Moves, coarse steps, drift compensation


def test_move_inside_the_piezo_range() -> None:
    accepted(Move(5e-7, -5e-7))
    assert reasons(Move(6e-7, -7e-7)) == (
        "move x 600 nm is outside the piezo x range ±500 nm",
        "move y -700 nm is outside the piezo y range ±500 nm",
    )
    assert reasons(Move(NAN, 0.0)) == ("move x is not a finite number (nan)",)
    assert clamped(Move(6e-7, 1e-7)).action == Move(5e-7, 1e-7)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (CoarseStep("w+", 1), "coarse step axis 'w+' is not one of x+, x-, y+, y-, z+, z-"),  # type: ignore[arg-type]
        (CoarseStep("x+", 0), "coarse steps 0 must be at least 1"),
        (CoarseStep("x+", -3), "coarse steps -3 must be at least 1"),
        (CoarseStep("x+", 2.0), "coarse steps must be an integer, got 2.0"),  # type: ignore[arg-type]
        (CoarseStep("x+", True), "coarse steps must be an integer, got True"),
        (CoarseStep("y-", 101), "coarse steps 101 exceed max_coarse_steps 100"),
        (
            CoarseStep("z-", 1),
            "coarse steps towards the surface (z-) are disabled (max_coarse_approach_steps 0); "
            "use Approach",
        ),
    ],
)
def test_coarse_step_rules(step: CoarseStep, expected: str) -> None:
    assert reasons(step) == (expected,)


def test_coarse_steps() -> None:
    accepted(CoarseStep("x+", 100))
    accepted(CoarseStep("z+", 100))  # retracting is always fine
    accepted(CoarseStep("z-", 2), max_coarse_approach_steps=2)
    assert reasons(CoarseStep("z-", 3), max_coarse_approach_steps=2) == (
        "coarse steps towards the surface (z-) 3 exceed max_coarse_approach_steps 2",
    )
    verdict = clamped(CoarseStep("x-", 250))
    assert verdict.action == CoarseStep("x-", 100)
    assert verdict.reasons == ("coarse steps 250 exceed max_coarse_steps 100; clamped to 100",)
    assert envelope("clamp").check(CoarseStep("z-", 5), STATE).accepted is False


def test_drift_compensation() -> None:
    accepted(CompensateDrift(6e-9, 8e-9))
    assert reasons(CompensateDrift(3e-8, 4e-8)) == (
        "drift compensation speed 50 nm/s exceeds max_drift_compensation 10 nm/s",
    )
    assert reasons(CompensateDrift(0.0, 0.0, INF)) == (
        "drift compensation vz is not a finite number (inf)",
    )
    verdict = clamped(CompensateDrift(3e-8, 4e-8))
    assert isinstance(verdict.action, CompensateDrift)
    assert verdict.action.vx == pytest.approx(6e-9)
    assert verdict.action.vy == pytest.approx(8e-9)
    assert math.hypot(verdict.action.vx, verdict.action.vy, verdict.action.vz) <= 10e-9
    huge = clamped(CompensateDrift(1e308, -1e308, 1e308)).action
    assert isinstance(huge, CompensateDrift)
    assert huge.vx == pytest.approx(10e-9 / math.sqrt(3))
    assert huge.vy == pytest.approx(-10e-9 / math.sqrt(3))


# --------------------------------------------------------------------------------------------
# Scans


def scan(
    centre: tuple[float, float] = (0.0, 0.0),
    size: tuple[float, float] = (100e-9, 100e-9),
    pixels: int = 256,
    lines: int = 256,
    angle: float = 0.0,
    line_time: float = 0.2,
) -> Scan:
    return Scan(ScanSettings(ScanArea(centre, size, pixels, lines, angle), line_time))


def test_scan_within_limits_passes() -> None:
    accepted(scan())
    accepted(scan(size=(1e-6, 1e-6), line_time=1.0))  # the whole range, at exactly 1 µm/s


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (scan(pixels=0), "scan pixels 0 must be at least 1"),
        (scan(lines=-1), "scan lines -1 must be at least 1"),
        (scan(pixels=10_000), "scan pixels 10000 exceed the limit of 8192"),
        (scan(size=(0.0, 1e-7)), "scan width 0 m must be positive"),
        (scan(size=(1e-7, NAN)), "scan size y is not a finite number (nan)"),
        (scan(angle=INF), "scan angle is not a finite number (inf)"),
        (scan(line_time=0.0), "scan line_time 0 s must be positive"),
        (
            scan(line_time=0.05),
            "scan speed 2 µm/s (width 100 nm / line_time 50 ms) exceeds max_scan_speed 1 µm/s",
        ),
        (
            scan(centre=(4.5e-7, 0.0)),
            "scan area spans x 400 nm to 500 nm, y -50 nm to 50 nm, outside the piezo range "
            "±500 nm x ±500 nm",
        ),
    ],
)
def test_scan_rules(action: Scan, expected: str) -> None:
    if "spans" in expected:
        # 450 nm + 50 nm is exactly the edge: inside. Nudge it out by 1 nm.
        accepted(action)
        area = action.settings.area
        action = scan(centre=(4.51e-7, 0.0))
        expected = expected.replace("400 nm to 500 nm", "401 nm to 501 nm")
        assert area.centre == (4.5e-7, 0.0)
    assert reasons(action) == (expected,)


def test_rotated_scan_corners_must_be_inside() -> None:
    # An 800 nm square fits unrotated, but rotated by 45° its corners reach ±566 nm.
    accepted(scan(size=(8e-7, 8e-7), line_time=1.0))
    rotated = scan(size=(8e-7, 8e-7), angle=math.pi / 4, line_time=1.0)
    (reason,) = reasons(rotated)
    assert reason.startswith("scan area spans x -565.685 nm to 565.685 nm")
    verdict = clamped(rotated)
    assert isinstance(verdict.action, Scan)
    area = verdict.action.settings.area
    assert area.size[0] == pytest.approx(500e-9 * math.sqrt(2))
    assert all(abs(x) <= 5e-7 and abs(y) <= 5e-7 for x, y in area.corners())


def test_scan_clamp_moves_the_area_and_slows_the_line() -> None:
    verdict = clamped(scan(centre=(4.8e-7, 0.0), line_time=0.05))
    assert isinstance(verdict.action, Scan)
    settings = verdict.action.settings
    assert settings.area.centre == pytest.approx((4.5e-7, 0.0))
    assert settings.area.size == (100e-9, 100e-9)
    assert settings.speed <= 1e-6
    assert settings.line_time == pytest.approx(0.1)
    assert verdict.reasons[1] == (
        "scan speed 2 µm/s (width 100 nm / line_time 50 ms) exceeds max_scan_speed 1 µm/s; "
        "clamped to 1 µm/s (line_time 100 ms)"
    )


# --------------------------------------------------------------------------------------------
# Bias and setpoint


@pytest.mark.parametrize(
    ("voltage", "expected"),
    [
        (-4.0, "bias -4 V is outside bias_range -3 V to 3 V"),
        (3.5, "bias 3.5 V is outside bias_range -3 V to 3 V"),
        (
            0.0,
            "bias 0 V is below min_bias_magnitude 1 mV "
            "(near 0 V the feedback drives the tip into the surface)",
        ),
        (
            -5e-4,
            "bias -500 µV is below min_bias_magnitude 1 mV "
            "(near 0 V the feedback drives the tip into the surface)",
        ),
        (NAN, "bias is not a finite number (nan)"),
    ],
)
def test_bias_rules(voltage: float, expected: str) -> None:
    assert reasons(SetBias(voltage)) == (expected,)


def test_bias() -> None:
    accepted(SetBias(-3.0))
    accepted(SetBias(0.001))
    accepted(SetBias(0.0), min_bias_magnitude=0.0)
    narrow = EnvelopeState(InstrumentLimits((1e-6, 1e-6, 1e-6), (-2.0, 2.0)))
    assert reasons(SetBias(2.5), narrow) == (
        "bias 2.5 V is outside the instrument bias range -2 V to 2 V",
    )
    assert clamped(SetBias(2.5), narrow).action == SetBias(2.0)
    assert clamped(SetBias(-4.0)).action == SetBias(-3.0)
    small = clamped(SetBias(-2e-4))
    assert small.action == SetBias(-1e-3)
    # 0 V has no sign to clamp towards: rejected even in clamp mode, with the reason why.
    zero = envelope("clamp").check(SetBias(0.0), STATE)
    assert not zero.accepted
    assert zero.reasons[-1] == "no allowed bias near 0 V to clamp to"


def test_setpoint() -> None:
    accepted(SetSetpoint(1e-9))
    accepted(SetSetpoint(1e-12))
    assert reasons(SetSetpoint(2e-9)) == ("setpoint 2 nA exceeds max_setpoint 1 nA",)
    assert reasons(SetSetpoint(5e-13)) == ("setpoint 500 fA is below min_setpoint 1 pA",)
    assert reasons(SetSetpoint(-1e-9)) == ("setpoint -1 nA must be positive (a current magnitude)",)
    assert reasons(SetSetpoint(0.0)) == ("setpoint 0 A must be positive (a current magnitude)",)
    weak = EnvelopeState(InstrumentLimits((1e-6, 1e-6, 1e-6), (-10.0, 10.0), max_setpoint=5e-10))
    assert reasons(SetSetpoint(8e-10), weak) == (
        "setpoint 800 pA exceeds the instrument maximum 500 pA",
    )
    assert clamped(SetSetpoint(8e-10), weak).action == SetSetpoint(5e-10)
    assert clamped(SetSetpoint(1e-15)).action == SetSetpoint(1e-12)


# --------------------------------------------------------------------------------------------
# Always-allowed actions, unknown actions, a broken instrument state


def test_withdraw_approach_stop_always_pass() -> None:
    broken = EnvelopeState(InstrumentLimits((NAN, 1e-6, 1e-6), (1.0, -1.0)))
    env = envelope(max_conditioning_per_minute=0)
    for action in (Withdraw(), Approach(), Stop()):
        for state in (STATE, broken):
            verdict = env.check(action, state)
            assert verdict.accepted and verdict.action is action and verdict.reasons == ()


def test_unknown_actions_are_rejected() -> None:
    @dataclass(frozen=True)
    class Teleport:
        x: float

    for thing in (Teleport(1.0), "pulse 3 V", None):
        verdict = envelope("clamp").check(thing, STATE)  # type: ignore[arg-type]
        assert not verdict.accepted
        assert verdict.reasons[0].startswith("unknown action type")


def test_broken_instrument_limits_refuse_everything_else() -> None:
    broken = EnvelopeState(InstrumentLimits((NAN, 1e-6, 1e-6), (-10.0, 10.0)))
    assert reasons(Move(0.0, 0.0), broken) == (
        "instrument piezo_range (nan, 1e-06, 1e-06) is not three positive finite lengths; "
        "only withdraw, approach and stop are allowed",
    )
    backwards = EnvelopeState(InstrumentLimits((1e-6, 1e-6, 1e-6), (10.0, -10.0)))
    (reason,) = reasons(SetBias(1.0), backwards)
    assert reason.startswith("instrument bias_range (10.0, -10.0) is not a finite (low, high)")


# --------------------------------------------------------------------------------------------
# Conditioning rate, records, check_or_raise


def test_conditioning_rate_is_limited_over_a_sliding_minute() -> None:
    clock = FakeClock(100.0)
    env = SafetyEnvelope(SafetyLimits(max_conditioning_per_minute=3), clock=clock)
    for t in (100.0, 110.0, 120.0):
        clock.now = t
        assert env.check(Pulse(3.0, 0.01), STATE).accepted
    clock.now = 130.0
    verdict = env.check(Dip(1e-9), STATE)
    assert verdict.reasons == (
        "conditioning rate: 3 pulses/dips in the last 60 s reach max_conditioning_per_minute 3; "
        "next allowed in 30.0 s",
    )
    # Other actions are not rate limited.
    assert env.check(Move(0.0, 0.0), STATE).accepted
    clock.now = 159.999
    assert not env.check(Pulse(3.0, 0.01), STATE).accepted
    clock.now = 160.0  # the pulse at t=100 has left the window
    assert env.check(Pulse(3.0, 0.01), STATE).accepted
    assert env.conditioning_count() == 3


def test_only_accepted_and_recorded_conditioning_counts() -> None:
    clock = FakeClock()
    env = SafetyEnvelope(SafetyLimits(max_conditioning_per_minute=2), clock=clock)
    for _ in range(5):
        assert not env.check(Pulse(9.9, 0.01), STATE).accepted  # rejected: does not count
        assert env.check(Pulse(1.0, 0.01), STATE, record=False).accepted  # dry run
    assert env.conditioning_count() == 0
    assert env.check(Pulse(1.0, 0.01), STATE).accepted
    assert env.check(Dip(1e-9), STATE).accepted
    assert not env.check(Pulse(1.0, 0.01), STATE).accepted
    assert env.conditioning_count() == 2


def test_clamped_conditioning_counts_and_zero_disables_it() -> None:
    clock = FakeClock()
    env = SafetyEnvelope(
        SafetyLimits(max_conditioning_per_minute=1, on_violation="clamp"), clock=clock
    )
    assert env.check(Pulse(9.9, 0.01), STATE).clamped
    assert not env.check(Pulse(1.0, 0.01), STATE).accepted
    assert reasons(Pulse(1.0, 0.01), max_conditioning_per_minute=0) == (
        "conditioning is disabled (max_conditioning_per_minute 0)",
    )


def test_rejections_and_clamps_are_kept_bounded() -> None:
    clock = FakeClock()
    env = SafetyEnvelope(SafetyLimits(on_violation="clamp"), clock=clock, history=3)
    for i in range(5):
        clock.now = float(i)
        env.check(Pulse(NAN, 0.1), STATE)
        env.check(Move(1.0, 0.0), STATE)
        env.check(Move(0.0, 0.0), STATE)
    assert [r.time for r in env.rejections] == [2.0, 3.0, 4.0]
    assert [r.time for r in env.clamps] == [2.0, 3.0, 4.0]
    assert env.rejections[-1].verdict.reasons == ("pulse voltage is not a finite number (nan)",)
    assert env.clamps[-1].verdict.action == Move(5e-7, 0.0)
    env.check(Move(1.0, 0.0), STATE, record=False)
    assert len(env.clamps) == 3 and env.clamps[-1].time == 4.0


def test_check_or_raise() -> None:
    env = envelope()
    action = Pulse(2.0, 0.1)
    assert env.check_or_raise(action, STATE) is action
    with pytest.raises(SafetyError) as info:
        env.check_or_raise(Pulse(9.5, 0.7), STATE)
    assert info.value.reasons == (
        "pulse 9.5 V exceeds max_pulse 8 V",
        "pulse width 700 ms exceeds max_pulse_width 500 ms",
    )
    assert "max_pulse 8 V" in str(info.value)
    assert envelope("clamp").check_or_raise(Pulse(9.5, 0.1), STATE) == Pulse(8.0, 0.1)


# --------------------------------------------------------------------------------------------
# The property: nothing out of limits ever passes.
#
# ``violations`` is an oracle written from the limits' definitions, independently of the
# envelope's code: it lists what is wrong with an action, and an empty list means the action is
# safe to execute.


def _finite(*values: object) -> bool:
    return all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_piezo(xy: object, half_x: float, half_y: float) -> bool:
    return (
        isinstance(xy, tuple)
        and len(xy) == 2
        and _finite(*xy)
        and abs(xy[0]) <= half_x
        and abs(xy[1]) <= half_y
    )


def _instrument_ok(inst: InstrumentLimits) -> bool:
    return (
        len(inst.piezo_range) == 3
        and _finite(*inst.piezo_range)
        and min(inst.piezo_range) > 0
        and _finite(*inst.bias_range)
        and inst.bias_range[0] < inst.bias_range[1]
        and _finite(inst.max_setpoint)
        and inst.max_setpoint > 0
        and (
            inst.z_limits is None
            or (_finite(*inst.z_limits) and inst.z_limits[0] < inst.z_limits[1])
        )
    )


def violations(action: object, limits: SafetyLimits, state: EnvelopeState) -> list[str]:
    """Everything out of limits about ``action`` (ignoring the rate limit)."""
    if isinstance(action, (Withdraw, Approach, Stop)):
        return []
    inst = state.limits
    if not _instrument_ok(inst):
        return ["instrument limits unusable"]
    hx, hy = inst.piezo_range[0] / 2, inst.piezo_range[1] / 2
    blo, bhi = inst.bias_range
    bad = []
    if isinstance(action, Pulse):
        v, w = action.voltage, action.width
        if not _finite(v, w):
            return ["pulse not finite"]
        if abs(v) > limits.max_pulse:
            bad.append("max_pulse")
        if not blo <= v <= bhi:
            bad.append("instrument bias")
        if not 0 < w <= limits.max_pulse_width:
            bad.append("pulse width")
        if action.position is not None and not _in_piezo(action.position, hx, hy):
            bad.append("pulse position")
    elif isinstance(action, Dip):
        d, b = action.depth, action.bias
        if not _finite(d, b):
            return ["dip not finite"]
        if not 0 < d <= limits.max_dip_depth:
            bad.append("dip depth")
        if not limits.dip_bias_range[0] <= b <= limits.dip_bias_range[1]:
            bad.append("dip bias")
        if not blo <= b <= bhi:
            bad.append("instrument bias")
        if action.position is not None and not _in_piezo(action.position, hx, hy):
            bad.append("dip position")
        tip = state.tip
        lowest = inst.z_bounds()[0]
        if tip is not None and (not _finite(tip.z) or tip.z - d < lowest + limits.z_margin):
            bad.append("z floor")
    elif isinstance(action, Move):
        if not _in_piezo((action.x, action.y), hx, hy):
            bad.append("move")
    elif isinstance(action, CoarseStep):
        n = action.steps
        if action.axis not in ("x+", "x-", "y+", "y-", "z+", "z-"):
            bad.append("axis")
        if not _is_int(n) or not 1 <= n <= limits.max_coarse_steps:
            bad.append("steps")
        elif action.axis == "z-" and n > limits.max_coarse_approach_steps:
            bad.append("approach steps")
    elif isinstance(action, Scan):
        s = action.settings
        a = s.area
        if not (
            isinstance(a.centre, tuple)
            and isinstance(a.size, tuple)
            and _finite(*a.centre, *a.size, a.angle, s.line_time)
        ):
            return ["scan not finite"]
        (cx, cy), (w, h) = a.centre, a.size
        if not (w > 0 and h > 0 and s.line_time > 0):
            return ["scan size or line time"]
        for count in (a.pixels, a.lines):
            if not _is_int(count) or not 1 <= count <= HARD_MAX_SCAN_PIXELS:
                bad.append("pixels")
        if w / s.line_time > limits.max_scan_speed:
            bad.append("speed")
        c, sn = math.cos(a.angle), math.sin(a.angle)
        for sx in (-1, 1):
            for sy in (-1, 1):
                dx, dy = sx * (w / 2), sy * (h / 2)
                if not (abs(cx + dx * c - dy * sn) <= hx and abs(cy + dx * sn + dy * c) <= hy):
                    bad.append("corner")
    elif isinstance(action, CompensateDrift):
        if not _finite(action.vx, action.vy, action.vz):
            return ["drift not finite"]
        if math.hypot(action.vx, action.vy, action.vz) > limits.max_drift_compensation:
            bad.append("drift")
    elif isinstance(action, SetBias):
        v = action.voltage
        if not _finite(v):
            return ["bias not finite"]
        if not limits.bias_range[0] <= v <= limits.bias_range[1]:
            bad.append("bias_range")
        if not blo <= v <= bhi:
            bad.append("instrument bias")
        if abs(v) < limits.min_bias_magnitude:
            bad.append("min bias")
    elif isinstance(action, SetSetpoint):
        i = action.current
        if not _finite(i):
            return ["setpoint not finite"]
        if not (i > 0 and limits.min_setpoint <= i <= limits.max_setpoint):
            bad.append("setpoint")
        if i > inst.max_setpoint:
            bad.append("instrument setpoint")
    else:
        bad.append("unknown action")
    return bad


# Strategies. They are built once, at import: the per-example numbers are drawn from fixed
# strategies and scaled to the example's limits inside the composites, which keeps 10,000
# examples fast.

#: Numbers a buggy or exploring policy might produce, whatever the limits.
WILD = st.one_of(
    st.sampled_from([NAN, INF, -INF, 1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0, 1e-300]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_EDGES: dict[str, Callable[[float], float]] = {
    "at": lambda x: x,
    "-at": lambda x: -x,
    "above": lambda x: math.nextafter(x, INF),
    "-above": lambda x: math.nextafter(-x, -INF),
    "below": lambda x: math.nextafter(x, 0.0),
    "half": lambda x: x / 2,
    "zero": lambda x: 0.0,
}
#: How to pick a number relative to a limit, drawn in one go: a factor in [-2, 2] (two times
#: in five), an edge of the limit (two in five), or nonsense (one in five).
_NEAR = st.one_of(
    st.floats(-2.0, 2.0).map(lambda f: ("factor", f)),
    st.floats(-2.0, 2.0).map(lambda f: ("factor", f)),
    st.sampled_from(sorted(_EDGES)).map(lambda e: ("edge", e)),
    st.sampled_from(sorted(_EDGES)).map(lambda e: ("edge", e)),
    WILD.map(lambda w: ("wild", w)),
)


def near(draw: st.DrawFn, scale: float) -> float:
    """A number on either side of the limit ``scale``: mostly within ±2x, often exactly at the
    limit or one float past it, sometimes nonsense."""
    how, value = draw(_NEAR)
    if how == "factor":
        return float(value) * scale
    if how == "edge":
        return _EDGES[str(value)](scale)
    return float(value)


_COUNT_EDGE = st.sampled_from([0, 1, -1, True, 2.0, NAN, 10**9, HARD_MAX_SCAN_PIXELS + 1])


def count(draw: st.DrawFn, limit: int) -> Any:
    """An integer around ``limit``, or something that is not a valid count at all."""
    if draw(st.booleans()):
        return draw(st.integers(-3, 2 * limit + 3))
    edge = draw(_COUNT_EDGE)
    return limit + 1 if edge == 10**9 and draw(st.booleans()) else edge


_SEED = st.integers(0, 2**64 - 1)


def _pair(rng: random.Random, low: float, high: float) -> tuple[float, float]:
    """A (lo, hi) pair with lo < hi inside [low, high]."""
    a, b = rng.uniform(low, high), rng.uniform(low, high)
    return (min(a, b), max(a, b)) if a != b else (low, high)


def _positive(rng: random.Random, ceiling: float) -> float:
    """A positive limit up to its hard ceiling: often the ceiling, else spread over six decades."""
    return ceiling if rng.random() < 0.4 else ceiling * 10 ** rng.uniform(-6.0, 0.0)


@st.composite
def safety_limits(draw: st.DrawFn) -> SafetyLimits:
    """Any valid [safety] table, in both modes.

    The fifteen settings come from one seeded generator rather than fifteen draws: that halves
    the runtime of 10,000 examples, and the edges that matter most (every ceiling, the smallest
    rates) are picked often on purpose. The actions, where edges matter more, are drawn value by
    value.
    """
    rng = random.Random(draw(_SEED))
    if rng.random() < 0.5:  # setpoints live on a log scale
        low, high = sorted(10 ** rng.uniform(-13.0, -7.0) for _ in "ab")
        setpoints = (max(low, HARD_MIN_SETPOINT), min(high, HARD_MAX_SETPOINT))
    else:
        setpoints = _pair(rng, HARD_MIN_SETPOINT, HARD_MAX_SETPOINT)
    if not setpoints[0] < setpoints[1]:
        setpoints = (HARD_MIN_SETPOINT, HARD_MAX_SETPOINT)
    dip_lo = rng.uniform(-HARD_MAX_BIAS, HARD_MAX_BIAS)
    return SafetyLimits(
        bias_range=_pair(rng, -HARD_MAX_BIAS, HARD_MAX_BIAS),
        min_bias_magnitude=rng.choice([0.0, 1e-3, rng.uniform(0.0, 1.0)]),
        min_setpoint=setpoints[0],
        max_setpoint=setpoints[1],
        max_pulse=_positive(rng, HARD_MAX_PULSE),
        max_pulse_width=_positive(rng, HARD_MAX_PULSE_WIDTH),
        max_dip_depth=_positive(rng, HARD_MAX_DIP_DEPTH),
        dip_bias_range=(dip_lo, rng.choice([dip_lo, rng.uniform(dip_lo, HARD_MAX_BIAS)])),
        max_scan_speed=_positive(rng, HARD_MAX_SCAN_SPEED),
        max_conditioning_per_minute=rng.choice(
            [0, 1, 2, 3, rng.randint(0, HARD_MAX_CONDITIONING_PER_MINUTE)]
        ),
        max_coarse_steps=rng.choice([0, 1, HARD_MAX_COARSE_STEPS, rng.randint(0, 200)]),
        max_coarse_approach_steps=rng.randint(0, 5),
        max_drift_compensation=rng.choice([0.0, _positive(rng, HARD_MAX_DRIFT_COMPENSATION)]),
        z_margin=HARD_MIN_Z_MARGIN * 10 ** rng.uniform(0.0, 3.0),
        on_violation=rng.choice(["reject", "clamp"]),
    )


_BIAS_END = st.floats(-20.0, 20.0)


_TIP = st.sampled_from(["none", "none", "anywhere", "near the ends", "near the floor"])


def make_state(draw: st.DrawFn, limits: SafetyLimits) -> EnvelopeState:
    """An instrument (now and then one reporting nonsense) and maybe a tip position, often just
    above or below the lowest point a dip may reach."""
    length = st.floats(1e-9, 1e-4)
    piezo = (draw(length), draw(length), draw(length))
    bias = (-10.0, 10.0)
    if draw(st.booleans()):
        low, high = draw(_BIAS_END), draw(_BIAS_END)
        bias = (min(low, high), max(low, high)) if low != high else bias
    max_setpoint = draw(st.floats(1e-12, 1e-6))
    if draw(st.integers(0, 19)) == 0:
        piezo = (draw(WILD), piezo[1], piezo[2])
        bias = draw(st.sampled_from([(1.0, -1.0), (NAN, 1.0), bias]))
        max_setpoint = draw(WILD | st.just(max_setpoint))
    # z either centred on zero (the default) or, as on the simulator, from 0 up
    z_limits = None if draw(st.booleans()) else (0.0, piezo[2])
    instrument = InstrumentLimits(piezo, bias, max_setpoint, z_limits)
    tip = None
    where = draw(_TIP)
    lowest, highest = instrument.z_bounds() if _finite(piezo[2]) else (-1.0, 1.0)
    if where == "anywhere":
        tip = TipPosition(0.0, 0.0, draw(st.floats(lowest, highest)))
    elif where == "near the ends":
        tip = TipPosition(0.0, 0.0, near(draw, draw(st.sampled_from([lowest, highest]))))
    elif where == "near the floor":
        floor = lowest + limits.z_margin
        tip = TipPosition(0.0, 0.0, floor + near(draw, limits.max_dip_depth))
    return EnvelopeState(instrument, tip)


_KIND = st.integers(0, 11)
_FRACTION = st.floats(0.01, 1.0)
_AXIS: st.SearchStrategy[Any] = st.sampled_from(["x+", "x-", "y+", "y-", "z+", "z-", "q", ""])
_ANGLE = st.floats(-7.0, 7.0) | st.sampled_from([0.0, math.pi / 4, math.pi / 2]) | WILD
_OTHER = st.sampled_from([Withdraw(), Approach(), Stop(), "junk", None])


def near_one(draw: st.DrawFn, *scales: float) -> float:
    """A number near one of several limits (e.g. the configured and the instrument's)."""
    return near(draw, abs(scales[draw(st.integers(0, len(scales) - 1))]))


_HUG = st.sampled_from([1.0, 1 + 1e-12, 1 - 1e-12, 1 + 1e-6])


_SANE_ANGLE = st.sampled_from([0.0, 0.0, math.pi / 2, math.pi / 4]) | st.floats(-math.pi, math.pi)
_SANE_COUNT = st.integers(1, 1024)
_HUG_AXES = st.sampled_from(["x", "y", "xy"])


def scan_action(draw: st.DrawFn, limits: SafetyLimits, px: float, py: float) -> Scan:
    """A scan: half the time a plausible frame (often with its corners on the edge of the range,
    or a hair either side), half the time anything; its speed often right at the limit."""
    if draw(st.booleans()):
        size = (draw(_FRACTION) * px, draw(_FRACTION) * py)
        angle = draw(_SANE_ANGLE)
        pixels, lines = draw(_SANE_COUNT), draw(_SANE_COUNT)
        room = (px / 2 - size[0] / 2, py / 2 - size[1] / 2)
        centre = (draw(st.floats(-1.0, 1.0)) * room[0], draw(st.floats(-1.0, 1.0)) * room[1])
        if angle == 0.0 and draw(st.booleans()):
            hug = draw(_HUG_AXES)
            sign = draw(st.sampled_from([-1.0, 1.0]))
            if "x" in hug:
                centre = (sign * room[0] * draw(_HUG), centre[1])
            if "y" in hug:
                centre = (centre[0], sign * room[1] * draw(_HUG))
    else:
        size = (near(draw, px), near(draw, py))
        angle = draw(_ANGLE)
        pixels, lines = count(draw, 512), count(draw, 512)
        centre = (near(draw, px / 2), near(draw, py / 2))
    if draw(st.booleans()) and _finite(size[0]) and size[0] != 0:
        speed = near(draw, limits.max_scan_speed)
        line_time = size[0] / speed if speed != 0 else 0.0
    else:
        line_time = near(draw, px / limits.max_scan_speed)
    return Scan(ScanSettings(ScanArea(centre, size, pixels, lines, angle), line_time))


def action(draw: st.DrawFn, limits: SafetyLimits, state: EnvelopeState) -> Any:
    """One action of any type, numbers around the example's limits, and plain nonsense."""
    inst = state.limits
    px, py, _ = (r if _finite(r) and r > 0 else 1e-6 for r in inst.piezo_range)
    blo, bhi = inst.bias_range

    def position() -> tuple[float, float] | None:
        return None if draw(st.booleans()) else (near(draw, px / 2), near(draw, py / 2))

    kind = draw(_KIND)
    if kind >= 10:  # a pulse or dip a sane policy would send, to exercise the rate limit
        fraction = draw(_FRACTION)
        if kind == 10:
            return Pulse(fraction * limits.max_pulse, fraction * limits.max_pulse_width)
        return Dip(fraction * limits.max_dip_depth, sum(limits.dip_bias_range) / 2)
    if kind == 0:
        voltage = near_one(draw, limits.max_pulse, blo, bhi)
        return Pulse(voltage, near(draw, limits.max_pulse_width), position())
    if kind == 1:
        bias = near_one(draw, *limits.dip_bias_range, blo, bhi, 1e-3)
        return Dip(near(draw, limits.max_dip_depth), bias, position())
    if kind == 2:
        return Move(near(draw, px / 2), near(draw, py / 2))
    if kind == 3:
        steps = max(
            draw(st.sampled_from([limits.max_coarse_steps, limits.max_coarse_approach_steps])), 1
        )
        return CoarseStep(draw(_AXIS), count(draw, steps))
    if kind == 4:
        return scan_action(draw, limits, px, py)
    if kind == 5:
        speed = limits.max_drift_compensation + 1e-12
        return CompensateDrift(near(draw, speed), near(draw, speed), near(draw, speed))
    if kind == 6:
        return SetBias(near_one(draw, *limits.bias_range, blo, bhi, limits.min_bias_magnitude))
    if kind == 7:
        return SetSetpoint(
            near_one(draw, limits.max_setpoint, limits.min_setpoint, inst.max_setpoint)
        )
    return draw(_OTHER)


_LENGTH = st.integers(1, 8)
_DELAY = st.sampled_from([0.0, 1.0, 10.0, 59.999, 60.0]) | st.floats(0.0, 90.0)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SafetyLimits, EnvelopeState, list[tuple[float, Any]]]:
    """Limits, an instrument state, and a sequence of (delay before, action)."""
    limits = draw(safety_limits())
    state = make_state(draw, limits)
    steps = [(draw(_DELAY), action(draw, limits, state)) for _ in range(draw(_LENGTH))]
    return limits, state, steps


#: What the property test saw, checked by the test after it.
CHECKED = {"examples": 0, "accepted": 0, "clamped": 0, "rejected": 0, "rate limited": 0}


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.floats(0.0, 1e6))
def test_nothing_out_of_limits_ever_passes(
    scenario: tuple[SafetyLimits, EnvelopeState, list[tuple[float, Any]]], start: float
) -> None:
    limits, state, steps = scenario
    clock = FakeClock(start)
    env = SafetyEnvelope(limits, clock=clock)
    conditioning: list[float] = []  # times of accepted pulses and dips
    CHECKED["examples"] += 1
    with quiet_envelope_log():
        check_sequence(env, clock, limits, state, steps, conditioning)
    # Over the whole simulated sequence no 60 s window holds too many conditioning actions.
    for t in conditioning:
        window = [u for u in conditioning if t <= u < t + 60.0]
        assert len(window) <= limits.max_conditioning_per_minute


@contextlib.contextmanager
def quiet_envelope_log() -> Iterator[None]:
    """The envelope logs every rejection and clamp; 100,000 of them only slow the test down."""
    logger = logging.getLogger("probepilot.safety")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_sequence(
    env: SafetyEnvelope,
    clock: FakeClock,
    limits: SafetyLimits,
    state: EnvelopeState,
    steps: list[tuple[float, Any]],
    conditioning: list[float],
) -> None:
    for delay, action in steps:
        clock.now += delay
        verdict = env.check(action, state)
        in_window = sum(1 for t in conditioning if clock.now - t < 60.0)
        is_conditioning = isinstance(action, (Pulse, Dip))
        if verdict.accepted:
            # The heart of it: whatever passes is inside every limit...
            assert violations(verdict.action, limits, state) == [], verdict
            if is_conditioning:
                # ...and never beyond the conditioning rate.
                assert in_window < limits.max_conditioning_per_minute
                conditioning.append(clock.now)
            if verdict.clamped:
                # ...and a changed action is never changed silently.
                assert limits.on_violation == "clamp"
                assert verdict.reasons
                assert all("; clamped to " in reason for reason in verdict.reasons)
                assert verdict.requested is action
                CHECKED["clamped"] += 1
            else:
                assert verdict.action is action and verdict.reasons == ()
                CHECKED["accepted"] += 1
        else:
            assert verdict.action is action and verdict.reasons and not verdict.clamped
            CHECKED["rejected"] += 1
            if any(r.startswith("conditioning rate:") for r in verdict.reasons):
                CHECKED["rate limited"] += 1
        if limits.on_violation == "reject":
            # In reject mode the envelope is exact: it refuses precisely what the oracle refuses.
            allowed = violations(action, limits, state) == [] and (
                not is_conditioning or in_window < limits.max_conditioning_per_minute
            )
            assert verdict.accepted == allowed, (verdict, violations(action, limits, state))


def test_the_property_ran_and_saw_every_outcome() -> None:
    """Guards the property test itself: it ran its examples and hit all three outcomes."""
    if CHECKED["examples"] == 0:
        pytest.skip("the property test did not run in this session")
    assert CHECKED["examples"] >= 10_000
    assert min(CHECKED["accepted"], CHECKED["clamped"], CHECKED["rejected"]) > 1_000, CHECKED
    assert CHECKED["rate limited"] > 100, CHECKED


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, HARD_MAX_CONDITIONING_PER_MINUTE),
    st.lists(st.sampled_from([0.0, 0.5, 5.0, 30.0, 59.999, 60.0, 120.0]), max_size=120),
)
def test_rate_limit_holds_for_valid_conditioning(limit: int, delays: list[float]) -> None:
    clock = FakeClock(0.0)
    env = SafetyEnvelope(SafetyLimits(max_conditioning_per_minute=limit), clock=clock)
    times: list[float] = []
    for i, delay in enumerate(delays):
        clock.now += delay
        action = Pulse(3.0, 0.01) if i % 2 else Dip(1e-9)
        verdict = env.check(action, STATE)
        recent = sum(1 for t in times if clock.now - t < 60.0)
        assert verdict.accepted == (recent < limit)
        if verdict.accepted:
            times.append(clock.now)
    for t in times:
        assert sum(1 for u in times if t <= u < t + 60.0) <= limit
