"""Sub-pixel shift between two images of the same area: phase correlation for the whole pixels,
then a weighted fit of the cross-spectrum's phase plane on the overlap, windowed alike.

``skimage.registration.phase_cross_correlation`` refines the correlation peak by evaluating an
upsampled DFT around it: its answer is quantised to ``1 / upsample_factor`` pixel and, as it
correlates the raw frames, biased by their borders (a non-periodic frame's edges correlate with
themselves at zero shift). Windowing both frames removes the border but adds a bias of its own
(the same window on both pulls the correlation towards zero shift). Here:

1. **Whole pixels**: phase correlation of the Hann-windowed images without the Bragg peaks of a
   lattice (it matches itself at every lattice translation). When that peak is not clear (a
   step edge matches itself all along its length), the blob maps of the images, which see
   compact features and not edges, propose a second candidate.
2. **Overlap**: both images are cropped to the area they share at the candidate shift, so the
   crops' content differs only by a fraction of a pixel.
3. **Phase plane**: the remaining shift is the weighted least-squares slope of the phase of the
   crops' cross-spectrum, ``arg(F1 conj F2) = 2 pi k . s``, weights ``|F1 F2|`` (the phase is
   reliable where both have power); low frequencies first, then all but the Bragg peaks (a
   lattice finer than two pixels is aliased, and an aliased component's phase moves with the
   true lattice frequency). The second crop's window is shifted by the estimate, so the
   windowed crops are exact shifts of each other and the window biases nothing; two rounds.
   Accuracy is limited by noise, not by a grid; the uncertainty follows from the residuals.
   Between candidates, the one whose residual phases agree best (coherence) wins.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from probepilot.model import FloatArray
from probepilot_analyzers._spectral import blob_map

#: Neighbouring Fourier bins of a windowed image are correlated, so the residuals' spread
#: understates the slope's uncertainty; this factor on the variance was measured on shifted
#: simulated and real topographs (the reported sigma then matches the rms error).
BIN_CORRELATION = 8.0
#: Smallest overlap (pixels along each axis) the fine step works on.
MIN_OVERLAP = 8
#: Below this whole-pixel match quality the blob maps are asked for a second opinion.
CLEAR_MATCH = 0.8


@dataclass(frozen=True, slots=True)
class Shift:
    """How far the content of the second image moved relative to the first, in pixels.

    A feature at ``(r, c)`` in the first image is at ``(r + rows, c + columns)`` in the second.
    ``sigma_*`` are one-standard-deviation uncertainties; ``quality`` in [0, 1] says how clearly
    the images match (phase-correlation peak against its background); ``coherence`` in [-1, 1]
    how well the phases agree once aligned.
    """

    rows: float
    columns: float
    sigma_rows: float
    sigma_columns: float
    quality: float
    coherence: float = 0.0


def _smooth_size(n: int) -> int:
    """The largest size <= ``n`` whose only prime factors are 2, 3 and 5 (FFTs of a prime size
    such as 251 cost several times those of 250)."""
    for m in range(n, 0, -1):
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
    return n


def _hann(n: int, offset: float = 0.0) -> FloatArray:
    """Hann window over ``n`` samples, shifted by ``offset`` samples (it is periodic, so a
    shifted window stays smooth and tiny at the ends)."""
    x = np.arange(n, dtype=np.float64) + 0.5 - offset
    return np.asarray(np.sin(np.pi * x / n) ** 2)


@functools.lru_cache(maxsize=16)
def _radial_bins(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, int]:
    """For an ``rfft2`` of an ``ny`` x ``nx`` image: each bin's ring (index of its spatial
    frequency), the bins per ring (at least 1) and the number of rings minus one. Read-only:
    a run registers frames of one size over and over."""
    size = max(ny, nx)
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    bins = np.minimum((np.hypot(ky, kx) * size).astype(np.intp), size).ravel()
    count = np.maximum(np.bincount(bins, minlength=size + 1), 1)
    bins.flags.writeable = False
    count.flags.writeable = False
    return bins, count, size


def lattice_bins(magnitude: FloatArray, threshold: float = 30.0) -> np.ndarray:
    """Bins of an ``rfft2``-shaped magnitude far above the geometric mean at their spatial
    frequency (a lattice's Bragg peaks); the lowest frequencies never count."""
    ny = magnitude.shape[0]
    nx = (magnitude.shape[1] - 1) * 2
    bins, count, size = _radial_bins(ny, nx)
    logm = np.log(magnitude + float(magnitude.max()) * 1e-12).ravel()
    mean = np.bincount(bins, logm, minlength=size + 1) / count
    peaks = ((logm - mean[bins]) > math.log(threshold)) & (bins >= 3)
    return np.asarray(peaks.reshape(magnitude.shape))


def whole_pixels(a: FloatArray, b: FloatArray) -> tuple[int, int, float, bool]:
    """Integer shift of ``b`` against ``a`` by phase correlation, and the match quality.

    (Not at reduced resolution: averaging pixels aliases fine lattices into patterns that
    move much faster than the sample does.)"""
    sy, sx = a.shape
    # Single precision: the peak's position needs no more, and the transforms take half the time.
    window = np.outer(_hann(sy), _hann(sx)).astype(np.float32)
    fa = sfft.rfft2((a - a.mean()).astype(np.float32) * window)
    fb = sfft.rfft2((b - b.mean()).astype(np.float32) * window)
    cross = fa * np.conj(fb)
    magnitude = np.abs(cross)
    top = float(magnitude.max())
    if not top > 0:
        return 0, 0, 0.0, False
    lattice = lattice_bins(magnitude)
    keep = (magnitude > 1e-4 * top) & ~lattice
    surface = sfft.irfft2(np.where(keep, cross / np.where(keep, magnitude, 1.0), 0.0), s=a.shape)
    flat = int(np.argmax(surface))
    iy, ix = divmod(flat, sx)
    # The correlation of `a` with `b` peaks at minus the shift.
    dy = -(iy if iy <= sy // 2 else iy - sy)
    dx = -(ix if ix <= sx // 2 else ix - sx)
    peak = float(surface.ravel()[flat])
    spread = float(np.std(surface))
    quality = 1.0 - math.exp(-max(peak / max(spread, 1e-300) - 4.0, 0.0) / 8.0)
    return dy, dx, quality, bool(lattice.any())


def _fine(
    a: FloatArray, b: FloatArray, iy: int, ix: int, quality: float, lattice: bool
) -> Shift | None:
    """The phase-plane refinement from the whole-pixel shift ``(iy, ix)`` (None: too little
    overlap or no usable spectrum); ``lattice``: leave Bragg peaks out."""
    ny, nx = a.shape
    # Overlap: a[y, x] matches b[y + iy, x + ix].
    ay0, ay1 = max(0, -iy), min(ny, ny - iy)
    ax0, ax1 = max(0, -ix), min(nx, nx - ix)
    if ay1 - ay0 < MIN_OVERLAP or ax1 - ax0 < MIN_OVERLAP:
        return None
    # Trim the overlap to FFT-friendly sizes (centred: the window ignores the edges anyway).
    my, mx = _smooth_size(ay1 - ay0), _smooth_size(ax1 - ax0)
    ay0 += (ay1 - ay0 - my) // 2
    ax0 += (ax1 - ax0 - mx) // 2
    ay1, ax1 = ay0 + my, ax0 + mx
    # Single precision halves the memory traffic; phases stay good to 1e-6 rad.
    ca = a[ay0:ay1, ax0:ax1].astype(np.float32)
    cb = b[ay0 + iy : ay1 + iy, ax0 + ix : ax1 + ix].astype(np.float32)
    ca -= ca.mean()
    cb -= cb.mean()
    my, mx = ca.shape
    ky = sfft.fftfreq(my)[:, None].astype(np.float32)
    kx = sfft.rfftfreq(mx)[None, :].astype(np.float32)
    low = np.hypot(ky, kx) <= 0.15
    fa = sfft.rfft2(ca * np.outer(_hann(my), _hann(mx)).astype(np.float32))
    usable = ~lattice_bins(np.abs(fa)) if lattice else np.ones(fa.shape, dtype=bool)
    dy = dx = 0.0
    # The normal equations' sums as row and column sums against the frequency vectors: no
    # full-size temporaries.
    kyv, kxv = ky[:, 0], kx[0]
    kyv2, kxv2 = kyv * kyv, kxv * kxv
    two_pi = 2 * np.pi
    w = residual = np.zeros(0)
    a11 = a12 = a22 = det = 0.0
    for rounds in range(2):
        if rounds and max(abs(dy), abs(dx)) < 0.02:
            break  # the window barely moves: a second round would change nothing
        fb = sfft.rfft2(cb * np.outer(_hann(my, dy), _hann(mx, dx)).astype(np.float32))
        cross = fa * np.conj(fb)
        weight = np.where(usable, np.abs(cross), 0.0)
        weight[0, 0] = 0.0
        phase0 = np.angle(cross)
        for w in (np.where(low, weight, 0.0), weight) if rounds == 0 else (weight,):
            # arg(cross) = 2 pi k . shift: fit the residual's slope.
            residual = phase0 - two_pi * (ky * dy + kx * dx)
            residual -= two_pi * np.round(residual / two_pi)
            a11, a22 = float(w.sum(axis=1) @ kyv2), float(w.sum(axis=0) @ kxv2)
            a12 = float(kyv @ w @ kxv)
            det = a11 * a22 - a12 * a12
            if not det > 0:
                return None
            wr = w * residual
            b1, b2 = float(wr.sum(axis=1) @ kyv), float(wr.sum(axis=0) @ kxv)
            step_y = (a22 * b1 - a12 * b2) / det / two_pi
            step_x = (a11 * b2 - a12 * b1) / det / two_pi
            dy += step_y
            dx += step_x
            residual -= two_pi * (ky * step_y + kx * step_x)
    # Sandwich (heteroscedasticity-consistent) covariance of the last fit's slope.
    wr2 = (w * residual) ** 2
    m12 = float(kyv @ wr2 @ kxv)
    meat = np.array([[float(wr2.sum(axis=1) @ kyv2), m12], [m12, float(wr2.sum(axis=0) @ kxv2)]])
    bread = np.array([[a22, -a12], [-a12, a11]]) / det
    cov = bread @ meat @ bread * (BIN_CORRELATION / two_pi**2)
    sigma_y = math.sqrt(max(float(cov[0, 0]), 0.0))
    sigma_x = math.sqrt(max(float(cov[1, 1]), 0.0))
    total = float(np.sum(w))
    coherence = float(np.sum(w * np.cos(residual))) / total if total > 0 else 0.0
    return Shift(iy + dy, ix + dx, sigma_y, sigma_x, quality, coherence)


def estimate_shift(first: FloatArray, second: FloatArray, *, features: bool = True) -> Shift:
    """The shift of ``second``'s content relative to ``first`` (both levelled, same shape).

    :param features: when the whole-pixel match is unclear, also try the blob maps' match.
    """
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"cannot register images of shapes {a.shape} and {b.shape}")
    iy, ix, quality, lattice = whole_pixels(a, b)
    candidates = [(iy, ix, quality)]
    if features and quality < CLEAR_MATCH:
        by, bx, bq, _ = whole_pixels(blob_map(a, 1.5), blob_map(b, 1.5))
        if bq > quality and (by, bx) != (iy, ix):
            candidates.append((by, bx, bq))
    best: Shift | None = None
    for cy, cx, q in candidates:
        shift = _fine(a, b, cy, cx, q, lattice)
        if shift is not None and (best is None or shift.coherence > best.coherence):
            best = shift
    if best is None:
        return Shift(float(iy), float(ix), math.inf, math.inf, 0.0)
    return best
