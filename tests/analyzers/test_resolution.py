"""The atomic-resolution check: lattices resolved by sharp tips, smeared by blunt ones, noise
calibrated in closed form."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from analyzer_helpers import microscope, scan, with_z

from probepilot.model import Finding, TipState
from probepilot.observe import tip_state_from
from probepilot_analyzers.options import ResolutionOptions
from probepilot_analyzers.resolution import ResolutionAnalyzer, noise_peak
from probepilot_sim.tip import Apex, MiniTip

SURFACES = ["au111", "cu111", "si111_7x7", "hopg"]


def _blunt(width: float = 0.6e-9) -> Apex:
    return Apex(TipState.BLUNT, (MiniTip(width=width),), change_rate=0.0)


def test_noise_peak_matches_white_noise() -> None:
    # The closed form is the median of the strongest of n bins: on white-noise frames the
    # measured peak lies above it about half the time, and the excess stays near zero.
    rng = np.random.default_rng(0)
    frame = scan(microscope("au111", seed=0), 10e-9, 64)
    analyzer = ResolutionAnalyzer()
    excess = []
    for _ in range(40):
        [finding] = analyzer.analyze(with_z(frame, rng.normal(0, 1e-11, (64, 64))), [])
        excess.append(float(finding.values["excess"]))
        assert finding.values["atomic"] == 0.0, finding.message
    assert 0.2 <= np.mean(np.array(excess) > 0) <= 0.8
    assert abs(float(np.median(excess))) < 0.3
    assert noise_peak(100) < noise_peak(1000) < noise_peak(100_000)


@pytest.mark.parametrize("surface", SURFACES)
def test_sharp_tip_resolves_the_lattice_and_a_blunt_one_does_not(surface: str) -> None:
    analyzer = ResolutionAnalyzer()
    scope = microscope(surface, seed=4)
    [sharp] = analyzer.analyze(scan(scope, 10e-9, 64), [])
    assert sharp.values["atomic"] == 1.0 and sharp.confidence > 0.5, sharp.message
    scope.apex = _blunt()
    [smeared] = analyzer.analyze(scan(scope, 10e-9, 64, centre=(30e-9, 0.0)), [])
    assert smeared.values["atomic"] == 0.0 and smeared.confidence > 0.5, smeared.message
    assert "blunt" in smeared.message
    assert smeared.values["excess"] < sharp.values["excess"]  # type: ignore[operator]


def test_strongest_peak_is_at_the_lattice_period() -> None:
    # Au(111), a = 0.2884 nm: the strongest Fourier component of a hexagonal lattice is at the
    # row spacing a * sqrt(3) / 2 (fine pixels, so nothing aliases).
    scope = microscope("au111", seed=2, feature_density=0.0)
    [finding] = ResolutionAnalyzer().analyze(scan(scope, 8e-9, 128), [])
    assert finding.values["period"] == pytest.approx(0.2884e-9 * math.sqrt(3) / 2, rel=0.08)


def test_coarse_pixels_abstain_and_say_why() -> None:
    frame = scan(microscope("au111", seed=1), 60e-9, 64)  # 0.94 nm pixels
    [finding] = ResolutionAnalyzer().analyze(frame, [])
    assert finding.confidence == 0.0
    assert finding.values["status"] == "invalid"
    assert "max_pixel" in finding.message and "0.937 nm" in finding.message
    # The limit is an option: a user who knows the lattice is coarse can lift it.
    options = ResolutionOptions(max_pixel=1e-9, max_period=5e-9)
    [lifted] = ResolutionAnalyzer(options).analyze(frame, [])
    assert lifted.values["status"] == "ok"


def test_partial_frame_lowers_the_confidence() -> None:
    frame = scan(microscope("hopg", seed=3), 10e-9, 64)
    z = frame.topography.copy()
    z[32:] = np.nan
    [full] = ResolutionAnalyzer().analyze(frame, [])
    [half] = ResolutionAnalyzer().analyze(dataclasses.replace(with_z(frame, z), lines_done=32), [])
    assert half.values["status"] == "ok"
    assert half.confidence == pytest.approx(0.5 * full.confidence, abs=0.1)


def _resolution(atomic: bool, confidence: float = 0.9) -> Finding:
    values = {"status": "ok", "atomic": float(atomic)}
    return Finding("resolution", "resolution", confidence, values)


def _classifier(state: str) -> Finding:
    return Finding("tip_state", "tip_state", 0.9, {"status": "ok", "state": state})


def test_observation_calls_an_unresolved_frame_blunt() -> None:
    no_double = Finding("double_tip", "double_tip", 0.1, {"status": "ok"})
    assert tip_state_from([no_double]) == TipState.GOOD  # nothing else: good, as before
    assert tip_state_from([no_double, _resolution(False)]) == TipState.BLUNT
    assert tip_state_from([no_double, _resolution(True)]) == TipState.GOOD
    # Unsure either way: it neither says blunt nor counts.
    assert tip_state_from([no_double, _resolution(False, 0.2)]) == TipState.GOOD
    assert tip_state_from([_resolution(True)]) == TipState.GOOD
    assert tip_state_from([_resolution(False, 0.2)]) == TipState.UNKNOWN
    # Physics before the classifier: no lattice is blunt whatever the network says, and a
    # resolved lattice vetoes the network's blunt (the physics-based findings decide instead).
    assert tip_state_from([_classifier("good"), _resolution(False)]) == TipState.BLUNT
    assert tip_state_from([_classifier("double"), _resolution(True)]) == TipState.DOUBLE
    assert tip_state_from([_classifier("blunt"), _resolution(True)]) == TipState.GOOD
    assert tip_state_from([_classifier("blunt"), _resolution(True, 0.2)]) == TipState.BLUNT
