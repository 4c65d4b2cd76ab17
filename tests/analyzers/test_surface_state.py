"""The spectrum-based tip check: the Shockley step on the simulator's Au(111) and Cu(111)."""

from __future__ import annotations

import numpy as np
import pytest

from probepilot.contracts import SpectrumAnalyzer
from probepilot.model import Spectrum, SpectrumRequest, TipState
from probepilot_analyzers.options import SurfaceStateOptions
from probepilot_analyzers.surface_state import SurfaceStateAnalyzer
from probepilot_sim import tip as tips
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions

SWEEP = SpectrumRequest(-1.0, 0.5, 301, channels=("Current", "dIdV"))


def spectrum(
    state: TipState, seed: int, surface: str = "au111", channels: tuple[str, ...] = ("dIdV",)
) -> Spectrum:
    m = Microscope(SimOptions(seed=seed, surface=surface, tip="good"))  # type: ignore[arg-type]
    m.apex = tips.make_apex(state, np.random.default_rng(seed))
    out = m.spectrum(SWEEP)
    v = np.linspace(SWEEP.start, SWEEP.stop, SWEEP.points)
    units = {"Current": "A", "dIdV": "A/V"}
    return Spectrum("Bias", "V", v, {c: out[c] for c in channels}, units, (0.0, 0.0))


def judge(s: Spectrum, **options: object) -> tuple[str, float, dict[str, object]]:
    analyzer = SurfaceStateAnalyzer(SurfaceStateOptions(**options))  # type: ignore[arg-type]
    [finding] = analyzer.analyze_spectrum(s)
    assert finding.kind == "surface_state" and finding.analyzer == "surface_state"
    return str(finding.values.get("state", "")), finding.confidence, dict(finding.values)


def test_it_is_a_spectrum_analyzer_that_leaves_frames_alone() -> None:
    analyzer = SurfaceStateAnalyzer()
    assert isinstance(analyzer, SpectrumAnalyzer)
    assert analyzer.analyze(None, []) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_a_good_tip_shows_a_sharp_step_where_it_belongs(seed: int) -> None:
    state, confidence, values = judge(spectrum(TipState.GOOD, seed))
    assert state == "good" and confidence > 0.9
    assert values["onset"] == pytest.approx(-0.48, abs=0.02)
    assert 0.02 < float(values["width"]) < 0.08  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_a_blunt_tip_smears_it(seed: int) -> None:
    state, confidence, _ = judge(spectrum(TipState.BLUNT, seed))
    assert state in ("smeared", "absent") and confidence > 0.5


def test_cu111_has_its_own_onset_and_a_wrong_expectation_says_shifted() -> None:
    s = spectrum(TipState.GOOD, 0, surface="cu111")
    state, _, values = judge(s, surface="cu111")
    assert state == "good" and values["onset"] == pytest.approx(-0.44, abs=0.02)
    state, _, _ = judge(spectrum(TipState.GOOD, 0), onset=-0.3, window=0.4)
    assert state == "shifted"


def test_without_a_didv_channel_it_differentiates_the_current() -> None:
    state, confidence, _ = judge(spectrum(TipState.GOOD, 1, channels=("Current",)))
    assert state == "good" and confidence > 0.3


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.metadata.update(target="adsorbate"), "taken on an adsorbate"),
        (lambda s: s.channels.clear(), "no channels"),
        (lambda s: s.channels.update(dIdV=np.full(301, np.nan)), "finite points"),
        (lambda s: s.channels.update(dIdV=np.zeros(301)), "dI/dV is zero"),
        (lambda s: setattr(s, "sweep", s.sweep * 0.1), "finite points within"),
        (lambda s: s.channels.update(dIdV=np.ones(7)), "differ in length"),
    ],
)
def test_spectra_it_cannot_judge_get_a_zero_confidence_finding(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    s = spectrum(TipState.GOOD, 0)
    change(s)
    [finding] = SurfaceStateAnalyzer().analyze_spectrum(s)
    assert finding.confidence == 0.0 and finding.values["status"] == "invalid"
    assert reason in finding.message
