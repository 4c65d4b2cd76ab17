"""The safety envelope on spectroscopy actions: sweep range, points, times, places, grids."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepilot.model import (
    GridSpectrum,
    InstrumentLimits,
    PointSpectrum,
    ScanArea,
    SpectrumRequest,
    TipPosition,
)
from probepilot.safety import (
    HARD_MAX_GRID_SIDE,
    HARD_MAX_SPECTRUM_POINTS,
    HARD_MAX_SPECTRUM_TIME,
    EnvelopeState,
    SafetyEnvelope,
    SafetyLimits,
)

INSTRUMENT = InstrumentLimits(piezo_range=(1e-6, 1e-6, 1e-6), bias_range=(-5.0, 5.0))
STATE = EnvelopeState(INSTRUMENT, TipPosition(0.0, 0.0, 0.0))
SWEEP = SpectrumRequest(-1.0, 0.5, 301)


def envelope(**limits: object) -> SafetyEnvelope:
    return SafetyEnvelope(SafetyLimits(**limits))  # type: ignore[arg-type]


def reasons(action: object, **limits: object) -> tuple[str, ...]:
    verdict = envelope(**limits).check(action, STATE)  # type: ignore[arg-type]
    assert not verdict.accepted
    return verdict.reasons


def test_a_sweep_inside_every_limit_passes_untouched() -> None:
    for action in (
        PointSpectrum(SWEEP, (1e-7, -2e-7), "lockin", "terrace"),
        PointSpectrum(SpectrumRequest(0.5, -0.5, 2, 0.0, 0.0)),  # downwards, across 0 V
        GridSpectrum(ScanArea((0.0, 0.0), (3e-9, 3e-9), 8, 8), SWEEP),
    ):
        verdict = envelope().check(action, STATE)
        assert verdict.accepted and verdict.action is action and not verdict.reasons


def test_the_sweep_must_stay_inside_the_configured_and_the_instruments_bias_range() -> None:
    assert reasons(PointSpectrum(SpectrumRequest(-4.0, 0.5, 11))) == (
        "sweep start -4 V is outside bias_range -3 V to 3 V",
    )
    wide = SafetyLimits(bias_range=(-8.0, 8.0))
    verdict = SafetyEnvelope(wide).check(PointSpectrum(SpectrumRequest(-1.0, 6.0, 11)), STATE)
    assert verdict.reasons == ("sweep end 6 V is outside the instrument bias range -5 V to 5 V",)
    # Clamp mode moves the ends into range and says so.
    clamped = envelope(on_violation="clamp").check(
        PointSpectrum(SpectrumRequest(-4.0, 0.5, 11)), STATE
    )
    assert clamped.accepted and clamped.clamped
    assert isinstance(clamped.action, PointSpectrum) and clamped.action.request.start == -3.0
    assert clamped.reasons == (
        "sweep start -4 V is outside bias_range -3 V to 3 V; clamped to -3 V",
    )


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (SpectrumRequest(0.2, 0.2, 11), "the sweep starts and ends at 200 mV: nothing to sweep"),
        (SpectrumRequest(-1.0, 1.0, 1), "sweep points 1 must be at least 2"),
        (SpectrumRequest(-1.0, math.nan, 11), "sweep end is not a finite number (nan)"),
        (SpectrumRequest(-1.0, 1.0, 11, settle_time=-1e-3), "sweep settle_time -1 ms must not"),
        (SpectrumRequest(-1.0, 1.0, 11.5), "sweep points must be an integer"),  # type: ignore[arg-type]
        (SpectrumRequest(-1.0, 1.0, 11, channels="Current"), "sweep channels must be a tuple"),  # type: ignore[arg-type]
    ],
)
def test_malformed_sweeps_are_rejected_even_in_clamp_mode(
    request_: SpectrumRequest, reason: str
) -> None:
    for mode in ("reject", "clamp"):
        got = reasons(PointSpectrum(request_), on_violation=mode)
        assert any(r.startswith(reason) for r in got), got


def test_too_many_points_and_too_long_per_point_are_clamped_or_rejected() -> None:
    long = PointSpectrum(
        SpectrumRequest(-1.0, 1.0, HARD_MAX_SPECTRUM_POINTS + 1, integration_time=2.0)
    )
    got = reasons(long)
    assert got == (
        f"sweep points {HARD_MAX_SPECTRUM_POINTS + 1} exceed the limit of "
        f"{HARD_MAX_SPECTRUM_POINTS}",
        "sweep integration_time 2 s exceeds the limit of 1 s",
    )
    verdict = envelope(on_violation="clamp").check(long, STATE)
    assert verdict.accepted and isinstance(verdict.action, PointSpectrum)
    request = verdict.action.request
    assert request.points == HARD_MAX_SPECTRUM_POINTS
    assert request.integration_time == HARD_MAX_SPECTRUM_TIME


def test_spectrum_and_grid_places_must_lie_in_the_piezo_range() -> None:
    assert reasons(PointSpectrum(SWEEP, (6e-7, 0.0))) == (
        "spectrum position x 600 nm is outside the piezo x range ±500 nm",
    )
    grid = GridSpectrum(ScanArea((4.99e-7, 0.0), (10e-9, 10e-9), 4, 4), SWEEP)
    got = reasons(grid)
    assert len(got) == 1 and "outside the piezo range" in got[0]
    moved = envelope(on_violation="clamp").check(grid, STATE)
    assert moved.accepted and isinstance(moved.action, GridSpectrum)
    assert moved.action.area.centre[0] == pytest.approx(4.95e-7)


def test_grid_shapes() -> None:
    big = GridSpectrum(ScanArea((0.0, 0.0), (5e-9, 5e-9), HARD_MAX_GRID_SIDE + 1, 2), SWEEP)
    assert reasons(big) == (
        f"grid points per row {HARD_MAX_GRID_SIDE + 1} exceed the limit of {HARD_MAX_GRID_SIDE}",
    )
    assert "grid rows 0 must be at least 1" in reasons(
        GridSpectrum(ScanArea((0.0, 0.0), (5e-9, 5e-9), 4, 0), SWEEP)
    )
    assert reasons(GridSpectrum(ScanArea((0.0, 0.0), (0.0, 5e-9), 4, 4), SWEEP)) == (
        "grid size 0 m x 5 nm must be positive",
    )
    bad_didv = PointSpectrum(SWEEP, None, "telepathy")  # type: ignore[arg-type]
    assert reasons(bad_didv) == (
        "dI/dV source 'telepathy' is not one of driver, lockin, numerical, none",
    )
    assert reasons(GridSpectrum("here", SWEEP)) == ("grid area must be ScanArea, got 'here'",)  # type: ignore[arg-type]


finite = st.floats(-20, 20, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    start=st.one_of(finite, st.just(math.nan)),
    stop=finite,
    points=st.integers(-5, 200_000),
    x=st.floats(-1e-6, 1e-6),
    mode=st.sampled_from(["reject", "clamp"]),
)
def test_whatever_passes_is_inside_every_limit(
    start: float, stop: float, points: int, x: float, mode: str
) -> None:
    limits = SafetyLimits(bias_range=(-2.0, 2.5), on_violation=mode)  # type: ignore[arg-type]
    action = PointSpectrum(SpectrumRequest(start, stop, points), (x, 0.0))
    verdict = SafetyEnvelope(limits).check(action, STATE)
    if not verdict.accepted:
        assert verdict.reasons
        return
    out = verdict.action
    assert isinstance(out, PointSpectrum) and out.position is not None
    r = out.request
    assert -2.0 <= r.start <= 2.5 and -2.0 <= r.stop <= 2.5 and r.start != r.stop
    assert 2 <= r.points <= HARD_MAX_SPECTRUM_POINTS
    assert abs(out.position[0]) <= 5e-7
    assert verdict.clamped == (out != action)
