"""The double-tip detector on simulated frames whose apex is known."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from analyzer_helpers import double_apex, microscope, scan, with_z

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


def _sparse_frame(
    seed: int, ghost: tuple[float, float] | None, weight: float = 0.6, count: int = 1
) -> Frame:
    """A 10 nm, 64-pixel frame with ``count`` adsorbates and, if ``ghost`` is given (x, y m),
    their ghosts there, by the two-apex formula: a frame in which one pair proves little."""
    rng = np.random.default_rng(seed)
    pixels, size = 64, 10e-9
    y, x = np.mgrid[0:pixels, 0:pixels] * (size / pixels)
    spots = [(*rng.uniform(2e-9, 8e-9, 2), rng.uniform(0.08e-9, 0.15e-9)) for _ in range(count)]

    def bump(sx: float, sy: float) -> np.ndarray:
        return sum(
            (h * np.exp(-((y - cy - sy) ** 2 + (x - cx - sx) ** 2) / (2 * 0.3e-9**2)))
            for cy, cx, h in spots
        )

    z = bump(0.0, 0.0)
    if ghost is not None:
        z = np.logaddexp(2 * KAPPA * z, math.log(weight) + 2 * KAPPA * bump(*ghost)) / (2 * KAPPA)
    z = (z + rng.normal(0.0, 2e-12, z.shape))[::-1].copy()  # row 0 at the top: a downward scan
    base = scan(microscope("hopg", seed=seed, feature_density=0.0), size, pixels)
    area = dataclasses.replace(base.area, centre=(seed * 20e-9, 0.0))
    return dataclasses.replace(
        with_z(base, z), area=area, started_at=10.0 * seed, finished_at=10.0 * seed + 6.4
    )


def test_a_ghost_at_the_same_offset_in_earlier_frames_adds_their_evidence() -> None:
    ghost = (1.4e-9, 0.6e-9)
    frames = [_sparse_frame(100 + k, ghost) for k in range(4)]
    analyzer = DoubleTipAnalyzer()
    findings = [analyzer.analyze(f, frames[:k])[0] for k, f in enumerate(frames)]
    [alone] = DoubleTipAnalyzer().analyze(frames[3], [])
    last = findings[3]
    # One adsorbate and its ghost: by itself, the last frame is no proof ...
    assert alone.confidence < 0.5
    assert alone.values["earlier_frames"] == 0
    # ... but the first frame showed the same pair offset: now it is.
    assert last.values["earlier_frames"] == 1
    assert last.confidence > 0.7
    assert "as in 1 earlier frame" in last.message
    got = (last.values["offset_x"], last.values["offset_y"])
    assert math.hypot(got[0] + ghost[0], got[1] + ghost[1]) < 0.2e-9  # type: ignore[operator]
    # A frame of the same area repeats the same neighbours: it adds nothing either.
    fresh = DoubleTipAnalyzer()
    fresh.analyze(frames[0], [])
    again = dataclasses.replace(frames[3], area=frames[0].area)
    assert fresh.analyze(again, [frames[0]])[0].values["earlier_frames"] == 0
    # Frames the analyzer never saw, or of a tip whose ghost lay elsewhere, add nothing.
    assert DoubleTipAnalyzer().analyze(frames[3], frames[:3])[0].confidence == alone.confidence
    other = DoubleTipAnalyzer()
    moved = _sparse_frame(100, (-0.5e-9, 1.5e-9))
    other.analyze(moved, [])
    [unrelated] = other.analyze(frames[3], [moved])
    assert unrelated.values["earlier_frames"] == 0
    assert unrelated.confidence == alone.confidence


def test_single_tip_frames_gain_nothing_from_history() -> None:
    analyzer = DoubleTipAnalyzer()
    frames = [_sparse_frame(200 + k, None, count=3) for k in range(8)]
    for k, frame in enumerate(frames):
        [finding] = analyzer.analyze(frame, frames[:k])
        assert finding.values["earlier_frames"] == 0
        assert finding.confidence < 0.5, finding.message
