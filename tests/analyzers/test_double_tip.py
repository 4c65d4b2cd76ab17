"""The double-tip detector on simulated frames whose apex is known."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from analyzer_helpers import double_apex, microscope, scan

from probepilot.model import Frame
from probepilot_analyzers.double_tip import KAPPA, DoubleTipAnalyzer, weight_from_heights


def _double_frame(surface: str, dx: float, dy: float, dz: float, seed: int, **kw: object) -> Frame:
    scope = microscope(surface, seed=seed, feature_density=3.0)
    scope.apex = double_apex(dx, dy, dz)
    return scan(scope, 20e-9, 128, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("surface", "dx", "dy", "seed"),
    [
        ("au111", 1.2e-9, -0.7e-9, 0),
        ("cu111", -0.8e-9, 1.5e-9, 1),
        ("au111", 2.0e-9, 0.4e-9, 2),
    ],
)
def test_known_offset_within_a_pixel(surface: str, dx: float, dy: float, seed: int) -> None:
    frame = _double_frame(surface, dx, dy, 0.03e-9, seed)
    [finding] = DoubleTipAnalyzer().analyze(frame, [])
    values = finding.values
    pixel = frame.area.pixel_size[0]
    assert finding.kind == "double_tip"
    assert finding.confidence > 0.5
    assert values["status"] == "ok"
    assert math.hypot(values["offset_x"] - dx, values["offset_y"] - dy) < pixel  # type: ignore[operator]
    assert values["separation"] == pytest.approx(math.hypot(dx, dy), abs=pixel)
    truth = math.exp(-2 * KAPPA * 0.03e-9)  # current ratio of the second apex: 0.52
    assert 0.3 < values["weight"] < 0.8, truth  # type: ignore[operator]


def test_offset_is_in_scanner_coordinates_whatever_the_scan() -> None:
    """Upward scans flip the rows and rotated frames the axes; the offset stays put."""
    dx, dy = 1.3e-9, 0.6e-9
    for kw in ({"direction": "up"}, {"angle": 0.5}):
        frame = _double_frame("au111", dx, dy, 0.02e-9, 6, **kw)
        [finding] = DoubleTipAnalyzer().analyze(frame, [])
        pixel = frame.area.pixel_size[0]
        got = (finding.values["offset_x"], finding.values["offset_y"])
        assert math.hypot(got[0] - dx, got[1] - dy) < pixel, (kw, got)  # type: ignore[operator]


def test_single_tip_is_not_double() -> None:
    for seed, surface in enumerate(("au111", "cu111", "si111_7x7", "hopg")):
        scope = microscope(surface, seed=seed, feature_density=3.0)
        [finding] = DoubleTipAnalyzer().analyze(scan(scope, 20e-9, 128), [])
        assert finding.confidence < 0.5, (surface, finding.message)


def test_weight_inverts_the_two_apex_formula() -> None:
    """Heights of a feature and its ghost seen through z2 = ln(e^{2kz} + w e^{2kz'}) / 2k."""
    for w in (0.3, 0.6, 1.0):
        for height in (20e-12, 100e-12, 300e-12):

            def z2(main: float, ghost: float, w: float = w) -> float:
                return math.log(math.exp(2 * KAPPA * main) + w * math.exp(2 * KAPPA * ghost)) / (
                    2 * KAPPA
                )

            background = z2(0.0, 0.0)
            h_main = z2(height, 0.0) - background
            h_ghost = z2(0.0, height) - background
            got = weight_from_heights(np.array([h_main]), np.array([h_ghost]))
            assert got[0] == pytest.approx(w, rel=1e-6)


def test_featureless_frame_says_so() -> None:
    scope = microscope("hopg", seed=0, feature_density=0.0)
    scope.apex = double_apex(1e-9, 0.5e-9, 0.0)
    frame = scan(scope, 10e-9, 64)
    [finding] = DoubleTipAnalyzer().analyze(frame, [])
    # A perfect lattice hides a double tip: no evidence, a low probability, no crash.
    assert finding.confidence < 0.5
    assert finding.values["status"] == "ok"


def test_message_and_values_are_plain(frame: Frame | None = None) -> None:
    frame = frame or _double_frame("au111", 1.0e-9, 1.0e-9, 0.0, 5)
    [finding] = DoubleTipAnalyzer().analyze(frame, [])
    assert all(isinstance(v, float | str) for v in finding.values.values())
    assert "double tip" in finding.message
    clone = dataclasses.replace(finding)
    assert clone == finding
