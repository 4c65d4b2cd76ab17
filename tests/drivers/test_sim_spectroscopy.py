"""Point spectroscopy: the Shockley surface-state step and what a bad tip does to it."""

from __future__ import annotations

import numpy as np
import pytest

from probepilot.errors import LimitError, NotSupportedError
from probepilot.model import SpectrumRequest, TipState
from probepilot_sim import tip as tips
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions

SWEEP = SpectrumRequest(-1.0, 0.5, 301, channels=("Current", "dIdV"))


def _didv(state: TipState, surface: str = "au111", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    m = Microscope(SimOptions(seed=seed, surface=surface, tip="good"))
    m.apex = tips.make_apex(state, np.random.default_rng(seed))
    out = m.spectrum(SWEEP)
    return np.linspace(SWEEP.start, SWEEP.stop, SWEEP.points), out["dIdV"]


def _step(v: np.ndarray, g: np.ndarray, at: float, half: float) -> float:
    """Relative rise of dI/dV across ``at +- half`` (V)."""
    hi = np.mean(g[(v > at + half - 0.02) & (v < at + half + 0.02)])
    lo = np.mean(g[(v > at - half - 0.02) & (v < at - half + 0.02)])
    return float(hi / lo - 1)


def test_au111_shows_the_shockley_step_with_a_good_tip() -> None:
    v, g = _didv(TipState.GOOD)
    assert _step(v, g, -0.48, 0.15) > 0.3
    # The onset is sharp and where it belongs.
    smooth = np.convolve(g, np.ones(5) / 5, mode="same")
    slope = np.gradient(smooth, v)
    window = (v > -0.8) & (v < -0.2)
    assert v[window][np.argmax(slope[window])] == pytest.approx(-0.48, abs=0.03)


def _rise(v: np.ndarray, g: np.ndarray, at: float = -0.48, half: float = 0.035) -> float:
    """Rise of dI/dV across ``at +- half`` V relative to the whole step (``at +- 0.3`` V)."""

    def mean(x: float) -> float:
        return float(np.mean(g[np.abs(v - x) <= 0.011]))

    return (mean(at + half) - mean(at - half)) / (mean(at + 0.3) - mean(at - 0.3))


def test_a_blunt_tip_smears_the_step() -> None:
    m = Microscope(SimOptions(seed=0, tip="good"))
    v = np.linspace(SWEEP.start, SWEEP.stop, SWEEP.points)
    sharp = m.spectrum(SWEEP)["dIdV"]
    # The same microscope with a blunt apex whose only effect on spectra is its broadening.
    m.apex = tips.Apex(TipState.BLUNT, (tips.MiniTip(width=0.8e-9),), smear=0.2)
    smeared = m.spectrum(SWEEP)["dIdV"]
    assert _rise(v, sharp) > 0.7  # the onset is within a few tens of mV
    assert _rise(v, smeared) < 0.35
    # Far from the onset the blunt tip still sees the surface state.
    assert _step(v, smeared, -0.48, 0.3) > 0.1


@pytest.mark.parametrize("state", [TipState.BLUNT, TipState.UNSTABLE])
def test_bad_tips_change_the_spectrum(state: TipState) -> None:
    _, good = _didv(TipState.GOOD)
    _, bad = _didv(state)
    good, bad = good / np.mean(good), bad / np.mean(bad)
    assert np.sqrt(np.mean((good - bad) ** 2)) > 0.05


def test_spectra_are_scaled_to_the_setpoint_and_follow_the_bias_sign() -> None:
    m = Microscope(SimOptions(seed=1, tip="good"))
    out = m.spectrum(SpectrumRequest(-1.0, 1.0, 201))
    current = out["Current"]
    assert current[-1] == pytest.approx(m.setpoint, rel=0.03)  # at the imaging bias, +1 V
    assert current[0] < 0 < current[-1]
    assert abs(current[100]) < 0.02 * m.setpoint  # no current at zero bias


def test_semiconductor_and_semimetal_spectra_differ_from_metals() -> None:
    v, au = _didv(TipState.GOOD, "au111")
    v, si = _didv(TipState.GOOD, "si111_7x7")
    v, c = _didv(TipState.GOOD, "hopg")
    zero = np.argmin(np.abs(v))
    # Graphite's DOS vanishes at the Fermi level (V shape); gold's does not.
    assert c[zero] / c[-1] < 0.5 * au[zero] / au[-1]
    assert not np.allclose(si / si.max(), au / au.max(), atol=0.1)


def test_no_spectrum_without_tunnelling_and_bad_requests_are_refused() -> None:
    m = Microscope(SimOptions(seed=1))
    m.withdraw()
    assert np.abs(m.spectrum(SpectrumRequest(-1.0, 1.0, 21))["Current"]).max() < 1e-12
    for bad in (
        SpectrumRequest(-20.0, 1.0, 21),
        SpectrumRequest(0.5, 0.5, 21),
        SpectrumRequest(-1.0, 1.0, 1),
        SpectrumRequest(-1.0, 1.0, 21, settle_time=-1.0),
    ):
        with pytest.raises(LimitError):
            m.spectrum(bad)
    with pytest.raises(NotSupportedError):
        m.spectrum(SpectrumRequest(-1.0, 1.0, 21, channels=("Frequency shift",)))
