"""The drift estimator: a known drift comes back within its reported uncertainty."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analyzer_helpers import microscope, scan

from probepilot.model import Frame
from probepilot_analyzers.drift import DriftAnalyzer
from probepilot_analyzers.registration import estimate_shift


def _frames(surface: str, velocity: tuple[float, float], n: int, **kw: object) -> list[Frame]:
    scope = microscope(surface, seed=2, drift_velocity=(*velocity, 0.0), drift_walk=0.0, creep=0.0)
    return [scan(scope, 20e-9, 128, **kw) for _ in range(n)]  # type: ignore[arg-type]


def _run(frames: list[Frame], analyzer: DriftAnalyzer | None = None) -> list[list]:
    analyzer = analyzer or DriftAnalyzer()
    return [analyzer.analyze(f, frames[:i]) for i, f in enumerate(frames)]


@pytest.mark.parametrize(
    ("surface", "velocity", "kw"),
    [
        ("si111_7x7", (35e-12, -20e-12), {}),
        ("au111", (-25e-12, 40e-12), {"direction": "up"}),
        ("si111_7x7", (10e-12, 30e-12), {"angle": 0.4, "line_time": 0.08}),
    ],
)
def test_known_drift_within_reported_uncertainty(
    surface: str, velocity: tuple[float, float], kw: dict[str, object]
) -> None:
    results = _run(_frames(surface, velocity, 4, **kw))
    assert results[0][0].confidence == 0.0
    assert results[0][0].values["status"] == "no_reference"
    for findings in results[1:]:
        drift = findings[0]
        assert drift.kind == "drift"
        assert drift.values["status"] == "ok"
        assert drift.confidence > 0.2
        for axis, truth in zip(("vx", "vy"), velocity, strict=True):
            sigma = drift.values[f"sigma_{axis}"]
            assert 0 < sigma < 5e-12  # type: ignore[operator]
            assert abs(drift.values[axis] - truth) <= 3 * sigma, (axis, drift.message)  # type: ignore[operator]
    last = results[-1][0].values
    assert last["measurements"] == 3


def test_filter_state_is_rebuilt_from_history() -> None:
    frames = _frames("si111_7x7", (35e-12, -20e-12), 4)
    first = _run(frames)[-1][0]
    fresh = DriftAnalyzer().analyze(frames[-1], frames[:-1])[0]  # a replay: no state yet
    assert fresh.values["vx"] == pytest.approx(first.values["vx"])
    assert fresh.values["measurements"] == first.values["measurements"]


def test_creep_after_a_move_is_flagged() -> None:
    scope = microscope(
        "si111_7x7", seed=2, drift_velocity=(20e-12, 0.0, 0.0), drift_walk=0.0, creep=0.1
    )
    frames = [scan(scope, 20e-9, 128) for _ in range(3)]
    scope.move_tip(0.0, 0.0)
    # A move of 150 nm away and back: the piezo creeps for tens of seconds.
    scope.move_tip(150e-9, 0.0)
    scope.move_tip(0.0, 0.0)
    frames.append(scan(scope, 20e-9, 128))
    results = _run(frames)
    kinds = [[f.kind for f in r] for r in results]
    assert "creep" in kinds[-1], [r[0].message for r in results]
    creep = next(f for f in results[-1] if f.kind == "creep")
    assert creep.confidence > 0.9


def test_registration_recovers_subpixel_shifts() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(192, 192))
    image = np.real(np.fft.ifft2(np.fft.fft2(base) * np.exp(-0.002 * _k2(192))))
    for sy, sx in [(0.3, -1.7), (4.25, 2.5), (-6.6, 0.1)]:
        shifted = _fourier_shift(image, sy, sx)
        a, b = image[32:-32, 32:-32], shifted[32:-32, 32:-32]
        got = estimate_shift(a, b)
        assert got.rows == pytest.approx(sy, abs=0.02)
        assert got.columns == pytest.approx(sx, abs=0.02)
        assert got.sigma_rows < 0.05


def _k2(n: int) -> np.ndarray:
    k = np.fft.fftfreq(n) * n
    return k[:, None] ** 2 + k[None, :] ** 2


def _fourier_shift(image: np.ndarray, sy: float, sx: float) -> np.ndarray:
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1])[None, :]
    return np.real(np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * math.pi * (ky * sy + kx * sx))))
