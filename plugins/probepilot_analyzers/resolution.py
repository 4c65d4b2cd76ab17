"""Does this frame resolve atoms? A blunt tip's first symptom, with no training.

A sharp apex images the surface's atomic lattice; a blunt one (a wide apex, or several lobes
that average over a nanometre) smears it away, and what is left at atomic spatial frequencies is
noise. The check looks at the spectrum of the levelled frame (its periodic part, so the frame's
borders add no cross of power) at periods between ``min_period`` (nearest neighbours are never
much closer than 0.2 nm: finer periodic contrast is electronic noise) and ``max_period``: a
lattice shows as a few bins far above their neighbourhood (Bragg peaks), noise does not.

How far above is judged against noise itself. Each bin's log power is compared with the mean
log power of the 7 x 7 bins around it (a local background that follows any 1/f slope), and the
strongest bin is expressed in robust standard deviations of all those log ratios (median and
MAD, which a handful of peaks do not move). For white noise the power of a bin is exponentially
distributed, so the distribution of the log ratio is known in closed form, and so is the
strongest of ``n`` noise bins (:func:`noise_peak`): the frame is atomically resolved when its
strongest bin stands more than ``margin`` above that. The decision is thus the same for a
64-pixel and a 512-pixel frame, and for any noise level or gain.

The check says nothing (confidence 0) when the pixels are coarser than ``max_pixel``: such a
frame cannot show atoms whatever the tip. It cannot tell a blunt tip from a surface that has no
lattice to resolve (amorphous films, a dense disordered adsorbate layer): leave it out of
``analyzers`` for such samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage
from scipy.optimize import brentq

from probepilot.model import Finding, Frame
from probepilot_analyzers._findings import finite, guarded, invalid
from probepilot_analyzers._image import level, prepare
from probepilot_analyzers._spectral import periodic_spectrum
from probepilot_analyzers.options import ResolutionOptions

#: Side (bins) of the neighbourhood that sets each bin's background.
BACKGROUND = 7
#: Fewest spectral bins the check needs at atomic periods (a frame of ~10 x 10 pixels).
MIN_BINS = 16
#: Width (robust standard deviations) over which the verdict goes from unsure to sure.
SOFTNESS = 0.25


def _log_exponential_cdf(x: float) -> float:
    """P(ln E <= x) for E exponentially distributed with mean 1."""
    return 1.0 - math.exp(-math.exp(x))


@lru_cache(maxsize=1)
def _log_exponential_spread() -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 MAD) of ln E, E ~ Exp(1)."""
    median = math.log(math.log(2.0))

    def excess(m: float) -> float:
        cdf = _log_exponential_cdf
        return cdf(median + m) - cdf(median - m) - 0.5

    mad = brentq(excess, 1e-6, 10.0)
    return median, 1.4826 * mad


def noise_peak(bins: int) -> float:
    """The strongest of ``bins`` white-noise bins, in robust standard deviations above their
    median (the median of that maximum: pure noise exceeds it half the time)."""
    median, spread = _log_exponential_spread()
    quantile = 0.5 ** (1.0 / max(bins, 1))  # P(max <= x) = F(x)^n = 1/2
    return (math.log(-math.log1p(-quantile)) - median) / spread


class ResolutionAnalyzer:
    """``resolution``: is the atomic lattice resolved (no: the tip is blunt)?

    One finding of kind ``resolution``: ``values``: ``atomic`` (1 resolved, 0 not), ``peak``
    (the strongest bin at atomic periods, robust standard deviations above the median),
    ``noise`` (what the strongest of as many white-noise bins would reach), ``excess``
    (``peak - noise``), ``period`` (m, the period of the strongest bin), ``bins``, ``status``.
    ``confidence`` is how clearly ``excess`` lies on one side of ``margin`` (0 at the margin,
    1 from about a standard deviation away), times the fraction of the frame's lines scanned.
    """

    name = "resolution"

    def __init__(self, options: ResolutionOptions | None = None) -> None:
        self.options = options or ResolutionOptions()

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "resolution", lambda: self._analyze(frame))

    def _analyze(self, frame: Frame) -> list[Finding]:
        opts = self.options
        image = prepare(frame, opts.channel)
        pixel = max(image.pixel)
        if pixel > opts.max_pixel:
            return [
                invalid(
                    self.name,
                    "resolution",
                    f"pixels of {pixel * 1e9:.3g} nm are coarser than max_pixel "
                    f"({opts.max_pixel * 1e9:.3g} nm): atoms cannot show",
                )
            ]
        z = level(image.data)
        ny, nx = z.shape
        power = np.abs(periodic_spectrum(z)) ** 2
        logp = np.log(power + float(power.max()) * 1e-30 + 1e-300)
        # rfft2 layout: rows wrap around (negative ky follow positive), columns do not.
        background = ndimage.uniform_filter(logp, BACKGROUND, mode=("wrap", "reflect"))
        ratio = logp - background
        ky = sfft.fftfreq(ny)[:, None]
        kx = sfft.rfftfreq(nx)[None, :]
        px, py = image.pixel
        k = np.hypot(ky / py, kx / px)  # cycles per metre
        # Off the kx = 0 column (and its neighbour), where line offsets and streaks put power.
        usable = (k >= 1.0 / opts.max_period) & (k <= 1.0 / opts.min_period) & (kx * nx >= 2)
        bins = int(usable.sum())
        if bins < MIN_BINS:
            return [
                invalid(
                    self.name,
                    "resolution",
                    f"only {bins} spectral bins between min_period and "
                    f"max_period ({opts.min_period * 1e9:.3g}-{opts.max_period * 1e9:.3g} nm): "
                    "the frame is too small",
                )
            ]
        values = ratio[usable]
        centre = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - centre)))
        if not spread > 0:
            return [invalid(self.name, "resolution", "the spectrum is flat: no noise, no lattice")]
        strongest = int(np.argmax(np.where(usable, ratio, -np.inf)))
        peak = (float(ratio.flat[strongest]) - centre) / spread
        noise = noise_peak(bins)
        excess = peak - noise
        atomic = excess > opts.margin
        sureness = 1.0 - math.exp(-abs(excess - opts.margin) / SOFTNESS)
        confidence = sureness * min(1.0, ny / max(frame.area.lines, 1))
        period = 1.0 / float(k.flat[strongest])
        verdict = "atomic resolution" if atomic else "no atomic resolution (blunt tip?)"
        message = (
            f"{verdict}: strongest peak {peak:.1f} sd at {period * 1e9:.3g} nm, "
            f"noise would reach {noise:.1f} sd"
        )
        return [
            Finding(
                self.name,
                "resolution",
                finite(confidence),
                {
                    "status": "ok",
                    "atomic": 1.0 if atomic else 0.0,
                    "peak": finite(peak),
                    "noise": finite(noise),
                    "excess": finite(excess),
                    "period": finite(period),
                    "bins": float(bins),
                },
                message=message,
            )
        ]
