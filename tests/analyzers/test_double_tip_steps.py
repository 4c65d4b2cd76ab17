"""The ghost edge a second apex draws at a step (``_steps``) and what the double-tip detector
makes of it, on synthetic terraces seen through one or two apexes by the current formula
(noise added afterwards: the instrument's, which no apex copies)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analyzer_helpers import microscope, scan, with_z

from probepilot_analyzers._image import level
from probepilot_analyzers._steps import step_ghost
from probepilot_analyzers.double_tip import KAPPA, DoubleTipAnalyzer, detect

PIXEL = 0.1e-9
SIZE = 160
HEIGHT = 0.24e-9  # a monatomic Au(111) step


def terraces(
    offset: tuple[float, float] = (0.0, 0.0), edges: tuple[float, ...] = (70.0,)
) -> np.ndarray:
    """Heights (m) of terraces rising one step at each of ``edges`` (pixels along a gently
    curved line across the frame), seen from ``offset`` (rows, x pixels) away: ``z(x + d)``."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    yy, xx = yy + offset[0], xx + offset[1]
    across = 0.94 * xx + 0.34 * yy + 0.002 * (yy - 80) ** 2  # the distance across the steps
    z = np.zeros((SIZE, SIZE))
    for edge in edges:
        # An apex 0.07 nm wide rounds the edge off.
        z += HEIGHT * 0.5 * (1 + np.tanh((across - edge) / 0.7))
    return z


def seen(
    second: tuple[float, float] | None, w: float = 0.5, edges: tuple[float, ...] = (70.0,), seed=0
) -> np.ndarray:
    """The terraces through one apex, or two (the second at ``second``, rows and x pixels,
    carrying ``w`` of the first's current), plus 2 pm of noise."""
    z = terraces(edges=edges)
    if second is not None:
        z = np.logaddexp(2 * KAPPA * z, math.log(w) + 2 * KAPPA * terraces(second, edges)) / (
            2 * KAPPA
        )
    return level(z + np.random.default_rng(seed).normal(0, 2e-12, z.shape))


NORMAL = np.array([0.34, 0.94]) / math.hypot(0.34, 0.94)  # (rows, x), uphill


@pytest.mark.parametrize(
    ("second", "w"), [((3.0, 9.0), 0.5), ((-4.0, -7.0), 0.3), ((2.0, 6.0), 1.0)]
)
def test_a_second_apex_draws_a_small_edge_uphill_at_its_distance_across(
    second: tuple[float, float], w: float
) -> None:
    found = step_ghost(seen(second, w), 2.5, 30.0)
    across = abs(float(np.dot(second, NORMAL)))
    assert found.zscore > 8, found
    assert found.shift == pytest.approx(across, abs=1.0), found
    assert 0.02 < found.ratio < 0.45, found
    assert float(np.dot(found.normal, NORMAL)) > 0.9  # uphill


def test_a_single_apex_and_a_staircase_draw_no_ghost_edge() -> None:
    single = step_ghost(seen(None), 2.5, 30.0)
    assert single.edges > 100 and single.zscore < 5, single
    # Two real steps 10 pixels apart: the second is as high as the first, so it is no ghost.
    stairs = step_ghost(seen(None, edges=(60.0, 70.0)), 2.5, 30.0)
    assert stairs.edges > 100 and stairs.zscore < 5, stairs


def test_a_second_apex_along_the_step_leaves_no_trace() -> None:
    along = (-0.94 * 8, 0.34 * 8)  # (rows, x), parallel to the edge where it is straightest
    found = step_ghost(seen(along, 0.6), 2.5, 30.0)
    assert found.zscore < 5, found


def test_no_steps_no_verdict() -> None:
    rng = np.random.default_rng(1)
    flat = level(rng.normal(0, 2e-12, (SIZE, SIZE)))
    assert step_ghost(flat, 2.5, 30.0).edges == 0
    assert step_ghost(flat[:8, :8], 2.5, 30.0).zscore == 0.0  # too small to look at


def test_the_detector_calls_a_doubled_step_double_and_a_plain_one_single() -> None:
    """A frame with a step and nothing else: the cepstrum and the features have nothing to
    copy, the step edge decides."""
    double = detect(seen((3.0, 9.0), 0.5), (PIXEL, PIXEL))
    assert double.probability > 0.5, double
    assert double.steps.zscore > 8
    across = math.hypot(*double.offset)  # the component across the step, sign unknown
    assert across == pytest.approx(abs(float(np.dot((3.0, 9.0), NORMAL))), abs=1.5)
    single = detect(seen(None), (PIXEL, PIXEL))
    assert single.probability < 0.5, single


def test_the_finding_names_the_ghost_edge() -> None:
    """Through the analyzer, on a frame of the simulator's shape with the doubled step as its Z:
    the message says what the steps show and ``step_ghost`` carries its z-score."""
    frame = scan(microscope("au111", seed=0), SIZE * PIXEL, SIZE)
    [finding] = DoubleTipAnalyzer().analyze(with_z(frame, seen((3.0, 9.0), 0.5)), [])
    assert finding.confidence > 0.5
    assert finding.values["step_ghost"] > 8  # type: ignore[operator]
    assert "steps show a ghost edge" in finding.message, finding.message
    [plain] = DoubleTipAnalyzer().analyze(with_z(frame, seen(None)), [])
    assert plain.values["step_ghost"] < 5  # type: ignore[operator]
    assert "steps show" not in plain.message
