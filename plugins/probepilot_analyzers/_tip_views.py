"""What the tip-state classifier looks at: six small views of one frame.

A single downsampled image cannot serve every tip state. A double tip shows as a ghost a few
tenths of a nm to a few nm from every feature, a blunt tip as lost detail at the scale of the
pixels, an unstable tip as lines where the apex (and with it the height) jumped. Downsampling a
256-pixel frame to the network's 64 x 64 loses the first two, and line levelling removes the
height jumps of the third. So the classifier sees six 64 x 64 views (the input channels of
its network), each normalised on its own:

``overview``
    the whole frame, plane- and line-levelled, area-averaged to 64 x 64 (steps, islands,
    streaks, the overall look);
``lines``
    the whole frame levelled by a plane only (line offsets kept), on the overview's height
    scale: the bands a tip change leaves, which line levelling would hide;
``detail``
    the central 64 x 64 pixels at full resolution (atomic resolution or its absence);
``cepstrum`` / ``acf_white`` / ``acf_coarse``
    the power cepstrum and the whitened autocorrelation of the full-resolution frame at lags of
    +-32 pixels, and the autocorrelation at +-64 pixels in 2-pixel steps: a ghost is a pair of
    side peaks at the apex offset wherever the features are, and a blunt tip widens the
    central peak (:func:`autocorrelations`).

Normalisation is robust: each view is a robust z-score (median and MAD) compressed by
``arcsinh`` (linear near 0, logarithmic beyond a few units), so a frame's absolute height, a
speck of debris or a few glitching pixels do not swamp what the network sees, while a strong
peak still stands above a weak one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from probepilot.model import FloatArray
from probepilot_analyzers._image import level, robust_std

#: Side of every view (pixels).
SIZE = 64
#: Names of the views, in the order of the network's input channels.
VIEWS = ("overview", "lines", "detail", "cepstrum", "acf_white", "acf_coarse")
#: Robust z-scores of the image are clipped here before its autocorrelations are taken.
CLIP = 6.0
#: Side (pixels) of the central part of a larger frame whose autocorrelations are taken: as
#: large as the training frames, and it keeps a 256 x 256 frame's transforms a quarter as big.
SPECTRAL = 160
#: Width (pixels) of the Gaussian high-pass before the autocorrelation: keeps features of a
#: few pixels and their ghosts, drops terraces and steps that would dominate it.
HIGH_PASS = 6.0


@lru_cache(maxsize=32)
def _bin_edges(n: int, m: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the ``m + 1`` edges of ``m`` equal bins fall among ``n`` pixels: the pixel index
    below each edge, the fraction past it, and each bin's width in pixels."""
    edges = np.arange(m + 1) * (n / m)
    index = np.minimum(edges.astype(np.intp), n - 1)
    return index, edges - index, np.full(m, n / m)


def _bin_axis(image: FloatArray, axis: int, m: int) -> FloatArray:
    """Area average of ``image`` into ``m`` equal bins along ``axis``, from the cumulative sum
    (exact for pixels as boxes; no BLAS call, which is slow when other threads compete)."""
    moved = np.moveaxis(image, axis, 0)
    n = moved.shape[0]
    if n % m == 0:  # whole pixels per bin (256 -> 64): a plain block mean
        return np.moveaxis(moved.reshape(m, n // m, *moved.shape[1:]).mean(axis=1), 0, axis)
    total = np.concatenate([np.zeros((1, *moved.shape[1:])), np.cumsum(moved, axis=0)])
    index, fraction, width = _bin_edges(n, m)
    at = total[index] + fraction[:, None] * (total[index + 1] - total[index])
    return np.moveaxis(np.diff(at, axis=0) / width[:, None], 0, axis)


def resize(image: FloatArray, m: int = SIZE) -> FloatArray:
    """``image`` area-resampled to ``m`` x ``m`` (for fewer than ``m`` pixels: repeated)."""
    return _bin_axis(_bin_axis(image, 0, m), 1, m)


def _stats(z: FloatArray) -> tuple[float, float]:
    """Median and robust standard deviation (MAD) of ``z``, from at most about 16k evenly
    spread pixels (a median of a 256 x 256 frame costs a millisecond; the estimate does not
    need them all); the standard deviation when most pixels are equal."""
    ny, nx = z.shape
    step = max(1, int(np.sqrt(ny * nx / 16384)))
    sample = z[::step, ::step]
    centre = float(np.median(sample))
    scale = robust_std(sample)
    if not scale > 0:
        scale = float(np.std(sample))
    return centre, (scale if scale > 0 else 1.0)


def clipped(z: FloatArray) -> FloatArray:
    """Robust z-score of ``z`` (median 0, MAD-based unit), clipped to +-``CLIP``."""
    centre, scale = _stats(z)
    return np.clip((z - centre) / scale, -CLIP, CLIP)


def normalised(z: FloatArray, scale: float | None = None) -> FloatArray:
    """Robust z-score of ``z`` (with ``scale`` as its unit if given), compressed by arcsinh."""
    centre, own = _stats(z)
    return np.arcsinh((z - centre) / (own if scale is None else scale))


@lru_cache(maxsize=16)
def _window(ny: int, nx: int) -> np.ndarray:
    return np.hanning(ny + 2)[1:-1, None] * np.hanning(nx + 2)[None, 1:-1]


@lru_cache(maxsize=16)
def _high_pass(shape: tuple[int, int]) -> np.ndarray:
    """Squared Gaussian high-pass (1 - exp(-k^2 sigma^2 / 2)) on an ``rfft2`` grid."""
    ky = sfft.fftfreq(shape[0])[:, None]
    kx = sfft.rfftfreq(shape[1])[None, :]
    keep = 1.0 - np.exp(-2 * (np.pi * HIGH_PASS) ** 2 * (ky * ky + kx * kx))
    return np.asarray(keep * keep)


def _centre(image: FloatArray, m: int = SIZE) -> FloatArray:
    """The central ``m`` x ``m`` pixels (fewer where the image is smaller)."""
    ny, nx = image.shape
    y0, x0 = max(0, (ny - m) // 2), max(0, (nx - m) // 2)
    return image[y0 : y0 + m, x0 : x0 + m]


@lru_cache(maxsize=16)
def _radius(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Radial bin of every ``rfft2`` frequency on ``shape`` and the number in each bin."""
    ky = sfft.fftfreq(shape[0])[:, None] * shape[0]
    kx = sfft.rfftfreq(shape[1])[None, :] * shape[0]
    radius = np.sqrt(ky * ky + kx * kx).astype(np.intp)
    return radius, np.bincount(radius.ravel())


def _lags(acf: np.ndarray, half: int) -> np.ndarray:
    """Lags -``half`` .. ``half`` - 1 of a full (uncentred) autocorrelation, centred."""
    rows = np.r_[acf.shape[0] - half : acf.shape[0], 0:half]
    cols = np.r_[acf.shape[1] - half : acf.shape[1], 0:half]
    return acf[np.ix_(rows, cols)]


def autocorrelations(z: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Three views of the clipped, Hann-windowed, zero-padded (no wrap-around) ``z`` in which
    a ghost shows as a pair of side peaks at +-the apex offset.

    ``cepstrum``: the inverse transform of the log power spectrum, lags +-32 pixels. A second
    apex multiplies the spectrum by ``1 + w^2 + 2 w cos(k d)`` (in the linear regime), which
    the logarithm turns into a separate, surface-independent term with peaks at +-``d``: the
    classic echo detector. ``white`` and ``coarse``: autocorrelations of
    the *whitened* frame (power divided by its mean at the same spatial frequency, capped at 10
    times it), so every spatial frequency counts alike and the cosine fringes a second apex
    draws across the spectrum stand out against a lattice's peaks; lags +-32 pixels, and +-64
    pixels 2 x 2 averaged. Each is a robust z-score compressed by arcsinh. A frame larger than
    :data:`SPECTRAL` pixels contributes its central :data:`SPECTRAL` x :data:`SPECTRAL`."""
    z = _centre(z, SPECTRAL)
    ny, nx = z.shape
    image = clipped(z)
    shape = (sfft.next_fast_len(ny + SIZE + 1, True), sfft.next_fast_len(nx + SIZE + 1, True))
    spectrum = sfft.rfft2((image - np.mean(image)) * _window(ny, nx), s=shape)
    raw = spectrum.real**2 + spectrum.imag**2
    # The median power keeps the noise-dominated bins from ruling the logarithm.
    log_power = np.log(raw + float(np.median(raw[:, :: max(1, shape[1] // 64)])) + 1e-300)
    power = raw * _high_pass(shape)
    radius, count = _radius(shape)
    mean = np.bincount(radius.ravel(), power.ravel(), minlength=len(count)) / np.maximum(count, 1)
    floor = 1e-12 * float(mean.max()) + 1e-300
    white = np.minimum(power / (mean[radius] + floor), 10.0)
    cepstrum = _lags(sfft.irfft2(log_power - log_power.mean(), s=shape), SIZE // 2)
    wide = _lags(sfft.irfft2(white, s=shape), SIZE)
    half = SIZE // 2
    return (
        normalised(cepstrum),
        normalised(wide[SIZE - half : SIZE + half, SIZE - half : SIZE + half]),
        normalised(wide.reshape(SIZE, 2, SIZE, 2).mean(axis=(1, 3))),
    )


def views(data: FloatArray) -> np.ndarray:
    """The classifier's input for one finite, non-constant image (lines, pixels): float32
    array (len(VIEWS), SIZE, SIZE)."""
    z = level(data)
    # The offsets line levelling took out (the first column of data - z holds them, plus the
    # plane's x slope times 0), less their own robust linear trend: z with its lines put back
    # is the frame levelled by a plane only, without a second levelling pass.
    offsets = data[:, 0] - z[:, 0]
    slope = float(np.median(np.diff(offsets))) if len(offsets) > 1 else 0.0
    offsets = offsets - slope * np.arange(len(offsets))
    plane = z + (offsets - np.median(offsets))[:, None]
    scale = _stats(z)[1]
    overview = normalised(resize(z))
    lines = normalised(resize(plane), scale)
    detail = _centre(z)
    detail = normalised(resize(detail) if detail.shape != (SIZE, SIZE) else detail)
    return np.stack([overview, lines, detail, *autocorrelations(z)]).astype(np.float32)
