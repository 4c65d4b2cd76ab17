"""Where are the adsorbates? Spots for site-specific spectroscopy.

Adsorbed atoms and small molecules image as compact protrusions a few hundred picometres wide
and tens to hundreds of picometres high. Here the levelled frame is smoothed at the adsorbates'
size and a white top-hat (the frame minus its grey opening with a disc about three adsorbates
wide) removes what is wider than an adsorbate: terraces, step edges, the herringbone. Local
maxima of what is left that stand ``min_height`` above their surroundings and are at least one
adsorbate apart are adsorbates; the highest ``max_count`` are reported, away from the frame's
edges (a spectrum needs the tip to land on them).

One finding of kind ``adsorbate`` per adsorbate: ``x``, ``y`` (m, scanner frame), ``height``
(m above the terrace around it), ``status``; its confidence grows with the height over the
noise. A frame without any gives no finding; a frame that cannot be analysed gives one
zero-confidence finding saying why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from probepilot.model import Finding, Frame
from probepilot_analyzers._findings import guarded
from probepilot_analyzers._image import level, prepare, robust_std
from probepilot_analyzers.options import AdsorbateOptions

KIND = "adsorbate"


class AdsorbateAnalyzer:
    """``adsorbates``: compact protrusions, with their positions in metres."""

    name = "adsorbates"

    def __init__(self, options: AdsorbateOptions | None = None) -> None:
        self.options = options or AdsorbateOptions()

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, KIND, lambda: self._analyze(frame))

    def _analyze(self, frame: Frame) -> list[Finding]:
        opts = self.options
        image = prepare(frame, opts.channel)
        px, py = image.pixel
        pixel = math.sqrt(px * py)
        sigma = max(opts.feature_size / pixel / 2, 0.5)
        z = ndimage.gaussian_filter(level(image.data), sigma, mode="nearest")
        radius = max(2, round(3 * opts.feature_size / pixel))
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disc = xx**2 + yy**2 <= radius**2
        bumps = z - ndimage.grey_opening(z, footprint=disc, mode="nearest")
        noise = robust_std(z - ndimage.gaussian_filter(z, 2 * sigma, mode="nearest"))
        spacing = max(3, round(2 * opts.feature_size / pixel))
        peaks = (bumps == ndimage.maximum_filter(bumps, size=spacing, mode="nearest")) & (
            bumps >= opts.min_height
        )
        margin = max(1, round(opts.feature_size / pixel))
        peaks[:margin], peaks[-margin:] = False, False
        peaks[:, :margin], peaks[:, -margin:] = False, False
        rows, cols = np.nonzero(peaks)
        order = np.argsort(-bumps[rows, cols])[: opts.max_count]
        out = []
        for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
            height = float(bumps[r, c])
            x, y = _scanner_point(frame, image.first_line + r, c)
            confidence = float(np.clip(height / (height + 5 * max(noise, 1e-13)), 0.0, 1.0))
            values: dict[str, float | str] = {"status": "ok", "x": x, "y": y, "height": height}
            message = (
                f"adsorbate {height * 1e12:.0f} pm high at ({x * 1e9:+.2f}, {y * 1e9:+.2f}) nm"
            )
            out.append(Finding(self.name, KIND, confidence, values, message=message))
        return out


def _scanner_point(frame: Frame, row: float, column: float) -> tuple[float, float]:
    """Scanner (x, y) in metres of the centre of pixel (``row``, ``column``) of the frame."""
    area = frame.area
    w, h = area.size
    u = -w / 2 + (column + 0.5) * (w / area.pixels)
    v = (
        h / 2 - (row + 0.5) * (h / area.lines)
        if frame.direction == "down"
        else -h / 2 + (row + 0.5) * (h / area.lines)
    )
    c, s = math.cos(area.angle), math.sin(area.angle)
    return (area.centre[0] + c * u - s * v, area.centre[1] + s * u + c * v)
