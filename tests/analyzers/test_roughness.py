"""Roughness and the largest clean square, on crafted and simulated frames."""

from __future__ import annotations

import numpy as np
import pytest
from analyzer_helpers import microscope, scan, with_z

from probepilot_analyzers.roughness import RoughnessAnalyzer, block_extremes, largest_clean_square


def test_largest_clean_square_on_blocks() -> None:
    heights = np.zeros((40, 40))
    heights[:, 25:] = 1.0  # a step: the left 25 columns are flat
    heights[10, 5] = 1.0  # and a speck on them
    high, low = block_extremes(heights, 1)
    square = largest_clean_square(high, low, 0.5)
    # Right of the speck's column, left of the step: 19 columns of 40 rows; above or below the
    # speck: 25 columns by 29 rows (rows 11-39) -> 25.
    assert square.side == 25
    assert square.row == 11 and square.column == 0


def test_flat_frame_is_clean_and_a_step_halves_it() -> None:
    frame = scan(microscope("au111", seed=1, feature_density=0.0), 20e-9, 128)
    rng = np.random.default_rng(0)
    flat = rng.normal(0, 5e-12, (128, 128))
    [finding] = RoughnessAnalyzer().analyze(with_z(frame, flat), [])
    values = finding.values
    assert values["clean_fraction"] == 1.0
    assert values["clean_square"] == pytest.approx(20e-9, rel=0.05)
    assert values["fit_to_image"] == 1.0 and values["fit_to_condition"] == 1.0
    stepped = flat.copy()
    stepped[:, 64:] += 0.3e-9
    [finding] = RoughnessAnalyzer().analyze(with_z(frame, stepped), [])
    assert finding.values["clean_square"] == pytest.approx(10e-9, rel=0.1)
    # The square fills one half: its centre is 5 nm left or right of the frame's, in the
    # scanner frame.
    assert abs(finding.values["clean_x"]) == pytest.approx(5e-9, rel=0.1)  # type: ignore[arg-type]


def test_debris_makes_a_frame_unfit() -> None:
    clean = scan(microscope("au111", seed=1, feature_density=0.2), 30e-9, 128)
    dirty = scan(microscope("au111", seed=1, feature_density=200.0), 30e-9, 128)
    [c] = RoughnessAnalyzer().analyze(clean, [])
    [d] = RoughnessAnalyzer().analyze(dirty, [])
    assert c.values["clean_fraction"] > d.values["clean_fraction"]  # type: ignore[operator]
    assert c.values["clean_square"] > d.values["clean_square"]  # type: ignore[operator]
    assert c.values["fit_to_image"] == 1.0 and c.values["fit_to_condition"] == 1.0
    assert d.values["fit_to_image"] == 0.0 and d.values["fit_to_condition"] == 0.0
