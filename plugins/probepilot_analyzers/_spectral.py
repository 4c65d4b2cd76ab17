"""Spectral building blocks the analyzers share: the periodic part of a frame's spectrum,
the Bragg peaks of a lattice, and the blob map that sees compact features but not edges.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from probepilot.model import FloatArray


def periodic_spectrum(z: FloatArray) -> np.ndarray:
    """``rfft2`` of the periodic component of ``z`` (Moisan's periodic-plus-smooth
    decomposition): the spectrum without the cross of power a non-periodic frame's borders
    create, at the cost of one more FFT."""
    ny, nx = z.shape
    v = np.zeros_like(z)
    v[0, :] += z[-1, :] - z[0, :]
    v[-1, :] += z[0, :] - z[-1, :]
    v[:, 0] += z[:, -1] - z[:, 0]
    v[:, -1] += z[:, 0] - z[:, -1]
    cy = np.cos(2 * np.pi * sfft.fftfreq(ny))[:, None]
    cx = np.cos(2 * np.pi * sfft.rfftfreq(nx))[None, :]
    denominator = 2 * cx + 2 * cy - 4
    denominator[0, 0] = 1.0
    smooth = sfft.rfft2(v) / denominator
    smooth[0, 0] = 0.0
    return np.asarray(sfft.rfft2(z) - smooth)


def bragg_mask(spectrum: np.ndarray, ny: int, threshold: float = 20.0) -> np.ndarray:
    """Bins of an ``rfft2`` spectrum that belong to a periodic lattice: power above
    ``threshold`` times the geometric mean at the same spatial frequency (dilated by a bin, as
    drift smears the peaks a little). The lowest frequencies (terraces, tilt) never count."""
    nx = (spectrum.shape[1] - 1) * 2
    power = spectrum.real**2 + spectrum.imag**2
    top = float(power.max())
    if not top > 0:
        return np.zeros(spectrum.shape, dtype=bool)
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    size = max(ny, nx)
    bins = np.minimum((np.sqrt(ky * ky + kx * kx) * size).astype(np.intp), size)
    logp = np.log(power + top * 1e-12)
    count = np.bincount(bins.ravel(), minlength=size + 1)
    mean = np.bincount(bins.ravel(), logp.ravel(), minlength=size + 1) / np.maximum(count, 1)
    mask = ((logp - mean[bins]) > math.log(threshold)) & (bins >= 3)
    if mask.any():
        mask = ndimage.binary_dilation(mask, iterations=1)
    return np.asarray(mask, dtype=bool)


def peak_mask(spectrum: np.ndarray, ny: int, threshold: float = 20.0) -> np.ndarray:
    """Bins of an ``rfft2`` spectrum that are sharp peaks: power above ``threshold`` times the
    geometric mean of the ring of bins around them (3 to 4 bins away along either axis),
    dilated by a bin. Unlike :func:`bragg_mask` it leaves broad anisotropic power alone (the
    streak of a step edge, scan-line noise along an axis), which a ghost's fringes run across
    as much as anywhere. The lowest frequencies never count."""
    power = spectrum.real**2 + spectrum.imag**2
    top = float(power.max())
    if not top > 0:
        return np.zeros(spectrum.shape, dtype=bool)
    nx = (spectrum.shape[1] - 1) * 2
    # The rows in frequency order, so that the neighbourhood of a bin is the bins around it.
    logp = np.fft.fftshift(np.log(power + top * 1e-12), axes=0)
    outer = ndimage.uniform_filter(logp, 7, mode="reflect") * 49
    inner = ndimage.uniform_filter(logp, 5, mode="reflect") * 25
    peaks = np.fft.ifftshift(logp - (outer - inner) / 24 > math.log(threshold), axes=0)
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    peaks &= np.sqrt(ky * ky + kx * kx) * max(ny, nx) >= 3
    if peaks.any():
        peaks = ndimage.binary_dilation(peaks, iterations=1)
    return np.asarray(peaks, dtype=bool)


def streaks(mask: np.ndarray, ny: int, reach: float = 4.0) -> np.ndarray:
    """The parts of a spectral ``mask`` (an ``rfft2`` layout, such as :func:`bragg_mask`'s)
    connected to the lowest frequencies (within ``reach`` bins of zero): the streaks a step
    edge or scan-line noise draws out of the origin, not the islands of a lattice."""
    nx = (mask.shape[1] - 1) * 2
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    low = np.sqrt(ky * ky + kx * kx) * max(ny, nx) < reach
    # The rows in frequency order, so that a streak through zero is one connected piece.
    labels, _ = ndimage.label(np.fft.fftshift(mask | low, axes=0))
    labels = np.fft.ifftshift(labels, axes=0)
    touching = np.unique(labels[low])
    return np.asarray(mask & np.isin(labels, touching[touching > 0]), dtype=bool)


def blob_map(z: FloatArray, sigma: float) -> FloatArray:
    """The signed blob map (see :func:`blob_and_height_maps`) of a levelled image, lattice
    removed: what registration falls back on when steps dominate a frame."""
    spectrum = periodic_spectrum(z)
    spectrum[bragg_mask(spectrum, z.shape[0])] = 0.0
    blobs, _ = blob_and_height_maps(
        spectrum, (int(z.shape[0]), int(z.shape[1])), sigma, heights=False
    )
    return blobs


def blob_and_height_maps(
    spectrum: np.ndarray, shape: tuple[int, int], sigma: float, *, heights: bool = True
) -> tuple[FloatArray, FloatArray]:
    """The signed, scale-normalised determinant of the Hessian at ``sigma`` pixels, and the
    apparent height above the local background (band-pass between ``sigma / 2`` and
    ``4 sigma``), both from the same spectrum."""
    ny, nx = shape
    ky = 2 * np.pi * sfft.fftfreq(ny)[:, None]
    kx = 2 * np.pi * sfft.rfftfreq(nx)[None, :]
    k2 = kx * kx + ky * ky
    smoothed = np.exp(-0.5 * k2 * sigma * sigma) * spectrum
    hxx = sfft.irfft2(-kx * kx * smoothed, s=shape)
    hyy = sfft.irfft2(-ky * ky * smoothed, s=shape)
    hxy = sfft.irfft2(-kx * ky * smoothed, s=shape)
    det = hxx * hyy - hxy * hxy
    trace = hxx + hyy
    # Straight and slightly rough step edges respond too, with one principal curvature much
    # larger than the other; as SIFT does, keep only blobs whose curvatures are within a factor
    # of 5 (4 det / trace^2 > 20/36), the rest are edges.
    isotropic = 4 * det > (20 / 36) * trace * trace
    blobs = np.where((det > 0) & isotropic, det * sigma**4, 0.0) * -np.sign(trace)
    if not heights:
        return blobs, np.zeros(0)
    band = np.exp(-0.5 * k2 * (0.5 * sigma) ** 2) - np.exp(-0.5 * k2 * (4 * sigma) ** 2)
    return blobs, sfft.irfft2(band * spectrum, s=shape)
