"""Helpers for the simulator's tests: quiet microscopes, controlled surfaces, image measures."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from probepilot.model import FloatArray, ScanArea, ScanSettings, TipState
from probepilot_sim.acquisition import Result
from probepilot_sim.features import Blobs, FeatureField, FeatureMix
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions
from probepilot_sim.surfaces import Layer, Surface
from probepilot_sim.tip import Apex, MiniTip

QUIET: dict[str, Any] = {
    "noise_z": 0.0,
    "flicker_z": 0.0,
    "line_offset_z": 0.0,
    "noise_current": 0.0,
    "drift_velocity": (0.0, 0.0, 0.0),
    "drift_walk": 0.0,
    "creep": 0.0,
    "tip": "good",
}


def options(**overrides: Any) -> SimOptions:
    """Noise-free, drift-free options unless overridden."""
    return SimOptions(**{**QUIET, **overrides})


class FixedBlobs:
    """A layer of given blobs (world coordinates), for surfaces with known content."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    def render(self, grid: Any, blur: float) -> FloatArray:
        return self.blobs.render(grid, blur)


def surface(*layers: Layer, adsorbates: float = 0.0, seed: int = 0) -> Surface:
    """A flat surface with ``layers`` and optionally random adsorbates (per m^2)."""
    field = FeatureField(FeatureMix(adsorbates=adsorbates), seed) if adsorbates else None
    return Surface("test", list(layers), field)


def scope(surf: Surface | None = None, apex: Apex | None = None, **overrides: Any) -> Microscope:
    m = Microscope(options(**overrides), surf)
    if apex is not None:
        m.apex = apex
    return m


def single(width: float = 0.03e-9) -> Apex:
    return Apex(TipState.GOOD, (MiniTip(width=width),), change_rate=0.0)


def double(dx: float, dy: float, dz: float = 0.0, width: float = 0.03e-9) -> Apex:
    return Apex(
        TipState.DOUBLE, (MiniTip(width=width), MiniTip(dx, dy, dz, width)), change_rate=0.0
    )


def settings(
    size: float,
    pixels: int,
    line_time: float = 0.5,
    *,
    lines: int | None = None,
    centre: tuple[float, float] = (0.0, 0.0),
    direction: str = "down",
) -> ScanSettings:
    area = ScanArea(centre, (size, size), pixels, lines or pixels)
    return ScanSettings(area, line_time, direction)  # type: ignore[arg-type]


def acquire(m: Microscope, s: ScanSettings) -> Result:
    """Plan, render and commit a whole frame on microscope ``m``."""
    plan = m.plan_scan(s)
    result = m.render(plan)
    m.commit(plan, s.area.lines, result)
    return result


def level(image: FloatArray) -> FloatArray:
    """Image minus its best-fit plane."""
    ny, nx = image.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    design = np.column_stack([np.ones(image.size), xx.ravel(), yy.ravel()])
    coef, *_ = np.linalg.lstsq(design, image.ravel(), rcond=None)
    return np.asarray(image - (design @ coef).reshape(image.shape), dtype=np.float64)


def _subpixel(c: FloatArray, i: int, j: int) -> tuple[float, float]:
    """Parabolic refinement of a correlation peak at (i, j) (periodic indices)."""
    ny, nx = c.shape

    def fit(m1: float, m0: float, p1: float) -> float:
        # A Gaussian through the three points (a parabola in the logs) where possible: the
        # correlation peaks of Gaussian features are Gaussian, and a plain parabola biases them.
        if min(m1, m0, p1) > 0:
            m1, m0, p1 = math.log(m1), math.log(m0), math.log(p1)
        den = m1 - 2 * m0 + p1
        return 0.0 if den == 0 else 0.5 * (m1 - p1) / den

    di = fit(c[(i - 1) % ny, j], c[i, j], c[(i + 1) % ny, j])
    dj = fit(c[i, (j - 1) % nx], c[i, j], c[i, (j + 1) % nx])
    return di, dj


def _signed(i: int, n: int) -> int:
    return i - n if i > n // 2 else i


def autocorrelation_peak(image: FloatArray, exclude: float) -> tuple[float, float]:
    """(row, column) offset in pixels of the strongest autocorrelation peak farther than
    ``exclude`` pixels from the origin."""
    a = level(image)
    a -= a.mean()
    spec = np.fft.rfft2(a)
    c = np.fft.irfft2(spec * np.conj(spec), a.shape)
    ny, nx = c.shape
    rows = np.array([_signed(i, ny) for i in range(ny)])[:, None]
    cols = np.array([_signed(j, nx) for j in range(nx)])[None, :]
    masked = np.where(rows**2 + cols**2 > exclude**2, c, -np.inf)
    i, j = np.unravel_index(int(np.argmax(masked)), c.shape)
    di, dj = _subpixel(c, int(i), int(j))
    return _signed(int(i), ny) + di, _signed(int(j), nx) + dj


def shift_between(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """(row, column) shift in pixels that moves image ``a`` onto image ``b``."""
    fa = np.fft.rfft2(level(a) - level(a).mean())
    fb = np.fft.rfft2(level(b) - level(b).mean())
    c = np.fft.irfft2(fb * np.conj(fa), a.shape)
    i, j = np.unravel_index(int(np.argmax(c)), c.shape)
    di, dj = _subpixel(c, int(i), int(j))
    return _signed(int(i), a.shape[0]) + di, _signed(int(j), a.shape[1]) + dj


def replace_apex(apex: Apex, **changes: Any) -> Apex:
    return dataclasses.replace(apex, **changes)
