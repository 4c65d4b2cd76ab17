"""The tip-change detector finds the lines where the simulated apex changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from analyzer_helpers import microscope, scan, with_z

from probepilot_analyzers.tip_changes import TipChangeAnalyzer
from probepilot_sim import tip as tips


@pytest.mark.parametrize(("surface", "seed"), [("cu111", 1), ("hopg", 3), ("au111", 5)])
def test_changes_found_at_their_lines(surface: str, seed: int) -> None:
    scope = microscope(surface, seed=seed)
    apex = tips.make_apex("unstable", np.random.default_rng(seed))
    scope.apex = dataclasses.replace(apex, change_rate=0.02)
    frame = scan(scope, 30e-9, 128)
    truth = [int(x) for x in str(frame.metadata["sim_tip_changes"]).split(",") if x]
    assert truth, "the simulator should have changed the tip"
    [finding] = TipChangeAnalyzer().analyze(frame, [])
    assert finding.kind == "tip_change"
    assert finding.confidence > 0.8
    for line in truth:
        assert any(abs(line - found) <= 1 for found in finding.lines), (truth, finding.lines)
    false = [f for f in finding.lines if not any(abs(f - t) <= 1 for t in truth)]
    assert len(false) <= 1, (truth, finding.lines)
    assert finding.values["count"] == len(finding.lines)


def test_stable_tip_shows_no_change() -> None:
    for seed, surface in enumerate(("au111", "cu111", "si111_7x7", "hopg")):
        frame = scan(microscope(surface, seed=seed), 30e-9, 128)
        [finding] = TipChangeAnalyzer().analyze(frame, [])
        assert finding.lines == (), (surface, finding.message)
        assert finding.confidence <= 0.5


def test_an_added_jump_is_found_on_its_line() -> None:
    frame = scan(microscope("si111_7x7", seed=2), 20e-9, 96)
    z = frame.topography.copy()
    z[40:] += 80e-12  # the apex got 80 pm longer after line 40
    [finding] = TipChangeAnalyzer().analyze(with_z(frame, z), [])
    assert finding.lines == (40,)
    assert finding.values["largest"] == pytest.approx(80e-12, rel=0.15)
    assert "jump" in str(finding.values["events"])
