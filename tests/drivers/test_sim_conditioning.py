"""Tip conditioning: the transition model, its calibration, surface damage."""

from __future__ import annotations

import numpy as np
import pytest

from probepilot.model import Dip, Pulse, TipState
from probepilot_sim import DEFAULT_ACTIONS, conditioning
from probepilot_sim import tip as tips
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions


def test_default_action_set_is_the_deepspm_like_one() -> None:
    pulses = sorted(a.voltage for a in DEFAULT_ACTIONS if isinstance(a, Pulse))
    dips = sorted(round(a.depth * 1e9, 3) for a in DEFAULT_ACTIONS if isinstance(a, Dip))
    assert pulses == [-8.0, -4.0, -2.5, 2.5, 4.0, 8.0]
    assert all(a.width == 0.2 for a in DEFAULT_ACTIONS if isinstance(a, Pulse))
    assert dips == [0.8, 1.0, 1.2, 1.8, 2.5, 5.0]


def test_random_policy_needs_a_median_of_10_to_15_actions() -> None:
    counts = [conditioning.random_policy_episode(seed) for seed in range(500)]
    assert 10 <= np.median(counts) <= 15
    # Geometric-like: some episodes are lucky, some take very long.
    assert min(counts) == 1
    assert np.percentile(counts, 90) > 25


def test_calibration_holds_on_the_whole_microscope() -> None:
    """The same random policy acting through the simulated instrument (contact checks, dips
    that must reach the surface, damage) needs the same median."""
    counts = []
    for seed in range(200):
        m = Microscope(SimOptions(seed=seed, tip="random"))
        rng = np.random.default_rng([seed, 7])
        n = 0
        while m.apex.state != TipState.GOOD and n < 500:
            action = DEFAULT_ACTIONS[int(rng.integers(len(DEFAULT_ACTIONS)))]
            if isinstance(action, Pulse):
                m.bias_pulse(action.voltage, action.width)
            else:
                m.dip(action.depth, action.bias)
            n += 1
        counts.append(n)
    assert 10 <= np.median(counts) <= 15


def _outcomes(state: TipState, action: Pulse | Dip, n: int = 3000) -> dict[str, float]:
    rng = np.random.default_rng(1)
    result = {s.value: 0.0 for s in (*tips.BAD_STATES, TipState.GOOD)}
    changed = 0
    for _ in range(n):
        apex = tips.make_apex(state, rng)
        outcome = conditioning.condition(apex, action, rng)
        result[outcome.apex.state.value] += 1 / n
        changed += outcome.changed
    result["changed"] = changed / n
    return result


def test_moderate_pulses_fix_unstable_tips_best() -> None:
    mild = _outcomes(TipState.UNSTABLE, Pulse(2.5, 0.2))
    moderate = _outcomes(TipState.UNSTABLE, Pulse(4.0, 0.2))
    assert moderate["good"] > 2 * mild["good"]
    assert mild["changed"] == pytest.approx(
        conditioning.change_probability(Pulse(2.5, 0.2)), abs=0.03
    )
    assert mild["changed"] < 0.4  # gentle pulses usually do nothing


def test_deep_dips_blunt_the_tip_and_shallow_ones_reshape_it() -> None:
    shallow = _outcomes(TipState.DOUBLE, Dip(0.8e-9))
    deep = _outcomes(TipState.DOUBLE, Dip(5e-9))
    assert deep["blunt"] > 0.5
    assert shallow["blunt"] < 0.25
    assert shallow["good"] > deep["good"]


def test_outcomes_depend_on_the_apex_geometry() -> None:
    rng = np.random.default_rng(0)
    near = tips.Apex(TipState.DOUBLE, (tips.MiniTip(), tips.MiniTip(1e-9, 0, 0)))
    far = tips.Apex(TipState.DOUBLE, (tips.MiniTip(), tips.MiniTip(6e-9, 0, 0)))
    action = Dip(1.0e-9)
    assert (
        conditioning.outcome_weights(action, near)[TipState.GOOD]
        > 2 * (conditioning.outcome_weights(action, far)[TipState.GOOD])
    )
    wide = tips.blunt(rng, scale=3.0)
    narrow = tips.Apex(TipState.BLUNT, (tips.MiniTip(width=0.4e-9),))
    assert (
        conditioning.outcome_weights(action, narrow)[TipState.GOOD]
        > (conditioning.outcome_weights(action, wide)[TipState.GOOD])
    )


def test_pulses_mark_the_surface_by_polarity_and_dips_leave_craters() -> None:
    rng = np.random.default_rng(3)
    assert conditioning.pulse_mark(rng, 4.0).height[0] > 0  # tip atoms deposited
    assert conditioning.pulse_mark(rng, -4.0).height[0] < 0  # a pit
    crater = conditioning.crater(rng, 2.5e-9)
    assert crater.height[0] < -0.3e-9
    assert (crater.height[1:7] > 0).all()  # the rim


def test_conditioning_needs_the_tip_near_the_surface() -> None:
    m = Microscope(SimOptions(seed=2, tip="double"))
    m.withdraw()
    apex = m.apex
    for _ in range(20):
        report = m.bias_pulse(8.0, 0.2)
        assert not report.changed
        m.dip(2.5e-9, 0.0)
    assert m.apex is apex
    assert len(m.surface.features.damage) == 0  # type: ignore[union-attr]
    m.approach()
    reports = [m.dip(1.8e-9, 0.0) for _ in range(5)]
    assert all(r.touched_surface for r in reports)
    assert len(m.surface.features.damage) > 0  # type: ignore[union-attr]
