"""Is this area flat and clean enough to image, or to condition the tip on?

DeepSPM (Krull et al. 2020) masks areas whose corrugation exceeds a threshold and conditions the
tip only on what is left. Here the levelled frame is cut into blocks of a few pixels; a square
of blocks is *clean* when its whole peak-to-peak height (after a light smoothing that takes the
noise out) stays under ``max_height_range``: no step, no adsorbate cluster, no debris. The
largest clean square is found by bisection on its side with sliding maxima and minima over the
block extremes (separable, so it costs a few passes over a small array). A frame is fit for
imaging when its rms roughness is moderate and enough of it is clean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from probepilot.model import Finding, FloatArray, Frame
from probepilot_analyzers._findings import guarded
from probepilot_analyzers._image import level, prepare
from probepilot_analyzers.options import RoughnessOptions


@dataclass(frozen=True, slots=True)
class CleanSquare:
    """The largest clean square: its side in blocks and its first block (row, column)."""

    side: int
    row: int
    column: int


def block_extremes(z: FloatArray, block: int) -> tuple[FloatArray, FloatArray]:
    """Maximum and minimum of each ``block`` x ``block`` tile (the frame cropped to whole
    tiles)."""
    ny, nx = (z.shape[0] // block) * block, (z.shape[1] // block) * block
    tiles = z[:ny, :nx].reshape(ny // block, block, nx // block, block)
    return tiles.max(axis=(1, 3)), tiles.min(axis=(1, 3))


def _ranges(high: FloatArray, low: FloatArray, side: int) -> FloatArray:
    """Peak-to-peak height of every ``side`` x ``side`` square of blocks, indexed by its first
    block (windows that fit entirely)."""
    top = ndimage.maximum_filter1d(ndimage.maximum_filter1d(high, side, axis=0), side, axis=1)
    bottom = ndimage.minimum_filter1d(ndimage.minimum_filter1d(low, side, axis=0), side, axis=1)
    half = side // 2
    rows, cols = high.shape[0] - side + 1, high.shape[1] - side + 1
    return np.asarray((top - bottom)[half : half + rows, half : half + cols])


def largest_clean_square(high: FloatArray, low: FloatArray, limit: float) -> CleanSquare:
    """The largest square of blocks whose peak-to-peak height is at most ``limit`` (side 0
    when not even one block is)."""
    lo, hi = 0, min(high.shape)
    where = (0, 0)
    while lo < hi:
        side = (lo + hi + 1) // 2
        ranges = _ranges(high, low, side)
        ok = ranges <= limit
        if ok.any():
            lo = side
            # Among equally large squares, the flattest one.
            flat = int(np.argmin(np.where(ok, ranges, np.inf)))
            where = divmod(flat, ranges.shape[1])
        else:
            hi = side - 1
    return CleanSquare(lo, int(where[0]), int(where[1]))


class RoughnessAnalyzer:
    """``roughness``: roughness, clean fraction and the largest clean square.

    One finding of kind ``roughness``: ``confidence`` is the fraction of the frame's lines that
    were scanned (a partial frame says less); ``values``: ``rms`` (m), ``height_range`` (m,
    1st to 99th percentile), ``clean_fraction``, ``clean_square`` (side, m), ``clean_x``,
    ``clean_y`` (its centre, m, scanner frame), ``fit_to_image`` and ``fit_to_condition``
    (1 or 0), ``status``.
    """

    name = "roughness"

    def __init__(self, options: RoughnessOptions | None = None) -> None:
        self.options = options or RoughnessOptions()

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "roughness", lambda: self._analyze(frame))

    def _analyze(self, frame: Frame) -> list[Finding]:
        opts = self.options
        image = prepare(frame, opts.channel)
        z = ndimage.gaussian_filter(level(image.data), 1.0, mode="nearest")
        px, py = image.pixel
        pixel = max(px, py)
        ny, nx = z.shape
        # Blocks of about a quarter nanometre (an atom) and at most 64 of them along the frame
        # (a 1.5 % resolution on the square's side keeps the search cheap), at most 1/16 of it.
        block = max(2, round(0.25e-9 / pixel), math.ceil(max(ny, nx) / 64))
        block = int(min(block, max(1, min(ny, nx) // 16)))
        high, low = block_extremes(z, block)
        square = largest_clean_square(high, low, opts.max_height_range)
        side = square.side * block * pixel
        # Clean fraction: blocks whose 3 x 3 neighbourhood is within the limit.
        ranges = ndimage.maximum_filter(high, 3, mode="nearest") - ndimage.minimum_filter(
            low, 3, mode="nearest"
        )
        clean_fraction = float(np.mean(ranges <= opts.max_height_range))
        rms = float(np.std(z))
        p1, p99 = np.percentile(z, [1, 99])
        # Centre of the square in the scanner frame.
        row = image.first_line + (square.row + square.side / 2) * block
        col = (square.column + square.side / 2) * block
        cx, cy = _scanner_point(frame, row, col)
        fit_image = rms <= opts.max_rms and clean_fraction >= opts.min_clean_fraction
        fit_condition = square.side > 0 and side >= opts.min_clean_square
        values: dict[str, float | str] = {
            "status": "ok",
            "rms": rms,
            "height_range": float(p99 - p1),
            "clean_fraction": clean_fraction,
            "clean_square": side,
            "clean_x": cx,
            "clean_y": cy,
            "fit_to_image": 1.0 if fit_image else 0.0,
            "fit_to_condition": 1.0 if fit_condition else 0.0,
        }
        verdict = "fit to image" if fit_image else "too rough or dirty to image"
        message = (
            f"{verdict}: rms {rms * 1e12:.0f} pm, {clean_fraction:.0%} clean; largest clean "
            f"square {side * 1e9:.1f} nm at ({cx * 1e9:+.1f}, {cy * 1e9:+.1f}) nm"
            + ("" if fit_condition else " (too small to condition on)")
        )
        confidence = min(1.0, ny / max(frame.area.lines, 1))
        return [Finding(self.name, "roughness", confidence, values, message=message)]


def _scanner_point(frame: Frame, row: float, column: float) -> tuple[float, float]:
    """Scanner (x, y) in metres of a point at fractional ``row``, ``column`` of the frame."""
    area = frame.area
    w, h = area.size
    u = -w / 2 + column * (w / area.pixels)
    v = (
        h / 2 - row * (h / area.lines)
        if frame.direction == "down"
        else -h / 2 + row * (h / area.lines)
    )
    c, s = math.cos(area.angle), math.sin(area.angle)
    return (area.centre[0] + c * u - s * v, area.centre[1] + s * u + c * v)
