"""The double-tip detector's building blocks and its answers on synthetic two-apex images
(made with the two-apex current formula, no simulator), and on real topographs turned double."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analyzer_helpers import real_images

from probepilot.store import read_any
from probepilot_analyzers import _ghosts as gh
from probepilot_analyzers._image import level
from probepilot_analyzers._spectral import bragg_mask, peak_mask, periodic_spectrum, streaks
from probepilot_analyzers.double_tip import KAPPA, detect, evidence, probability

PIXEL = 0.1e-9


def two_apex(z: np.ndarray, g: tuple[int, int], w: float) -> np.ndarray:
    """The image of two apexes: currents add, ``exp(2k z2) = exp(2k z) + w exp(2k z(x - g))``
    (a feature at p shows again at p + g)."""
    shifted = np.roll(z, g, axis=(0, 1))
    return np.logaddexp(2 * KAPPA * z, math.log(w) + 2 * KAPPA * shifted) / (2 * KAPPA)


def adsorbates(seed: int, n: int = 40, size: int = 160, noise: float = 2e-12) -> np.ndarray:
    """Gaussian adsorbates (60-180 pm high, 0.3 nm wide) and a few vacancies on a flat,
    noisy terrace."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    z = rng.normal(0, noise, (size, size))
    for k in range(n):
        y, x = rng.uniform(0, size, 2)
        height = rng.uniform(60e-12, 180e-12) if k % 4 else -rng.uniform(30e-12, 50e-12)
        z += height * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 3.0**2))
    return z


def with_noise(z: np.ndarray, seed: int, noise: float = 2e-12) -> np.ndarray:
    """Instrument noise, added after the image formed (not copied by a second apex)."""
    return z + np.random.default_rng(seed + 1000).normal(0, noise, z.shape)


@pytest.mark.parametrize(
    ("g", "w", "seed"), [((7, 12), 0.6, 0), ((-10, 4), 0.35, 1), ((3, -9), 1.0, 2)]
)
def test_ghost_of_adsorbates_gives_its_offset(g: tuple[int, int], w: float, seed: int) -> None:
    clean = adsorbates(seed)
    double = with_noise(two_apex(clean, g, w), seed)
    result = detect(level(double), (PIXEL, PIXEL))
    assert result.probability > 0.5
    # The second apex sits at minus the ghost's displacement, as (x, rows); with two equal
    # apexes either could be called the second.
    error = math.hypot(result.offset[0] + g[1], result.offset[1] + g[0])
    if w == 1.0:
        error = min(error, math.hypot(result.offset[0] - g[1], result.offset[1] - g[0]))
    assert error < 1.0, result
    assert result.pairs >= 3
    single = detect(level(with_noise(clean, seed)), (PIXEL, PIXEL))
    assert single.probability < 0.5


def test_weight_follows_the_second_apex() -> None:
    clean = adsorbates(3)
    weights = []
    for w in (0.3, 0.9):
        result = detect(level(with_noise(two_apex(clean, (6, 11), w), 3)), (PIXEL, PIXEL))
        weights.append(result.weight)
    assert 0.1 < weights[0] < 0.6 < weights[1] <= 1.0, weights


def test_cepstrum_peaks_at_the_ghost_lag() -> None:
    """A ghost of everything (noise included) multiplies the spectrum by |1 + w e^(-ik.g)|^2:
    the cepstrum peaks at +-g whatever the surface."""
    rng = np.random.default_rng(5)
    rough = np.cumsum(np.cumsum(rng.normal(size=(128, 128)), axis=0), axis=1) * 1e-13
    rough += rng.normal(0, 3e-12, rough.shape)
    double = level(two_apex(level(rough), (5, -9), 0.5))
    spectrum = periodic_spectrum(double)
    power = spectrum.real**2 + spectrum.imag**2
    uniform, _ = gh.power_cepstra(power, np.zeros(power.shape, dtype=bool), double.shape)
    lags = gh.cepstrum_lags(uniform, 3.0, 32.0)
    best = lags.lags[0]
    assert min(math.hypot(best[0] - 5, best[1] + 9), math.hypot(best[0] + 5, best[1] - 9)) < 1
    assert lags.zscores[0] > 6


def test_lattice_translations_are_not_ghosts() -> None:
    """A lattice is the same lattice shifted by one of its translations: those lags are
    vetoed, others are not."""
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    a1, a2 = np.array([8.0, 0.0]), np.array([4.0, 8.0 * math.sqrt(3) / 2])
    b = np.linalg.inv(np.array([a1, a2]).T) * 2 * np.pi  # rows: reciprocal vectors (x, y)
    z = sum(np.cos(k[0] * xx + k[1] * yy) for k in (b[0], b[1], b[0] - b[1])) * 20e-12
    z += np.random.default_rng(0).normal(0, 1e-12, z.shape)
    spectrum = periodic_spectrum(z)
    power = spectrum.real**2 + spectrum.imag**2
    mask = bragg_mask(spectrum, 128)
    reach = 20
    veto = gh.lattice_translations(power, mask, (128, 128), reach)
    for dy, dx in ((0, 8), (7, 4), (7, -4), (14, 0)):  # translations (rows, x)
        assert veto[reach + round(dy), reach + dx], (dy, dx)
    for dy, dx in ((3, 5), (0, 4), (10, 10)):
        assert not veto[reach + dy, reach + dx], (dy, dx)


def test_long_periods_do_not_veto_bands_of_lags() -> None:
    """Islands a quarter of the frame apart put peaks at 4 bins: fewer repeats than a lattice
    makes, and their half-frame-wide wavefronts must not veto the lags a ghost could be at."""
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    z = 60e-12 * (np.cos(2 * np.pi * 4 * xx / 128) + np.cos(2 * np.pi * (3 * xx + 4 * yy) / 128))
    z += np.random.default_rng(1).normal(0, 1e-12, z.shape)
    spectrum = periodic_spectrum(z)
    power = spectrum.real**2 + spectrum.imag**2
    mask = bragg_mask(spectrum, 128)
    assert mask.any()
    veto = gh.lattice_translations(power, mask, (128, 128), 20)
    assert not veto.any()
    # The same pattern ten times finer is a lattice, and keeps its translations.
    fine = 6e-12 * np.cos(2 * np.pi * 16 * xx / 128) * np.cos(2 * np.pi * 16 * yy / 128)
    spectrum = periodic_spectrum(fine + np.random.default_rng(2).normal(0, 1e-13, z.shape))
    power = spectrum.real**2 + spectrum.imag**2
    veto = gh.lattice_translations(power, bragg_mask(spectrum, 128), (128, 128), 20)
    assert veto[20, 20 + 8] and veto[20 + 8, 20]
    assert not veto[20 + 3, 20 + 5]


def test_the_cepstrum_keeps_texture_and_loses_peaks_and_streaks() -> None:
    """``peak_mask`` takes sharp peaks and leaves broad anisotropic power; ``streaks`` takes
    what a ring mask draws out of the origin (a step edge) and leaves islands (a lattice)."""
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    rng = np.random.default_rng(3)
    step = 200e-12 * (xx + 0.3 * yy > 70)  # a straight step edge: a streak through the origin
    lattice = 10e-12 * np.cos(2 * np.pi * 20 * xx / 128) * np.cos(2 * np.pi * 20 * yy / 128)
    # Texture along x only: broad power in a band of ky, no peak.
    texture = np.cumsum(rng.normal(0, 3e-12, (128, 128)), axis=0)
    texture -= texture.mean(axis=0)
    z = step + lattice + 0.2 * texture + rng.normal(0, 1e-12, (128, 128))
    spectrum = periodic_spectrum(z)
    ring = bragg_mask(spectrum, 128)
    peaks = peak_mask(spectrum, 128)
    streak = streaks(ring, 128)
    lattice_bins = [(20, 20), (128 - 20, 20)]  # (ky rows, kx), the rfft layout
    for iy, ix in lattice_bins:
        assert peaks[iy, ix] and ring[iy, ix] and not streak[iy, ix]
    assert streak.sum() > 10 and not (streak & ~ring).any()
    assert not peaks[streak].all()  # the streak is broad: most of it is no sharp peak
    assert peaks.sum() < ring.sum()


def test_ridges_lose_their_height_peaks_keep_it() -> None:
    c = np.zeros((41, 41))
    c[20, :] = 1.0  # a ridge along x
    c[5, 30] = 1.0  # a compact peak
    s = gh.ridge_suppressed(c)
    assert s[20, 10] == pytest.approx(0.0)
    assert s[5, 30] == pytest.approx(1.0)


def test_molecules_alone_do_not_make_a_double_tip() -> None:
    """Dimers (two equal lobes 0.7 nm apart), all along one direction, pair up like a ghost
    would; several separate objects must agree, and a lone ghost-like pair is not enough."""
    size = 160
    yy, xx = np.mgrid[0:size, 0:size]
    z = np.random.default_rng(4).normal(0, 2e-12, (size, size))
    for y, x in ((40, 40), (110, 60)):
        for dx in (0, 7):
            z += 120e-12 * np.exp(-((yy - y) ** 2 + (xx - x - dx) ** 2) / (2 * 2.8**2))
    result = detect(level(z), (PIXEL, PIXEL))
    assert result.probability < 0.5, result


def test_probability_is_monotone_in_the_evidence() -> None:
    ev = evidence(level(adsorbates(7)), (PIXEL, PIXEL))
    stronger = type(ev)(**{**{f: getattr(ev, f) for f in ev.__slots__}, "cepstrum_best": 20.0})
    assert probability(stronger) >= probability(ev)


@pytest.mark.parametrize(
    "z",
    [
        np.zeros((16, 16)),
        np.ones((8, 300)),
        np.random.default_rng(0).normal(size=(12, 12)) * 1e-10,
        np.full((64, 64), 1e-9) + np.eye(64) * 1e-12,
    ],
)
def test_degenerate_images_give_low_probability_not_errors(z: np.ndarray) -> None:
    result = detect(z, (PIXEL, PIXEL))
    assert 0.0 <= result.probability <= 1.0
    assert all(math.isfinite(v) for v in (*result.offset, result.weight))


def _real_topography() -> tuple[np.ndarray, float] | None:
    for path in real_images():
        data = read_any(path)
        for frame in data if isinstance(data, list) else [data]:
            z = frame.channels["Z"].forward
            z = z[np.isfinite(z).all(axis=1)]
            pixel = frame.area.pixel_size[0]
            if "FFT" in path.name and min(z.shape) >= 200:
                return level(z), pixel
    return None


def test_real_topograph_turned_double_gives_its_offset() -> None:
    """A real molecular island (example_FFT.sxm, 0.2 nm per pixel) seen through two apexes,
    by the current formula, 1.6 nm apart; the crop as recorded is single."""
    found = _real_topography()
    if found is None:
        pytest.skip("../shared/stm-data is not there")
    z, pixel = found
    crop = z[60:188, 60:188]
    shifted = z[60 - 5 : 188 - 5, 60 - 6 : 188 - 6]  # z(x - d), d = (5, 6) pixels
    double = np.logaddexp(2 * KAPPA * crop, math.log(0.5) + 2 * KAPPA * shifted) / (2 * KAPPA)
    result = detect(level(double), (pixel, pixel))
    assert result.probability > 0.5
    assert math.hypot(result.offset[0] + 6, result.offset[1] + 5) < 1.0, result
    assert detect(level(np.ascontiguousarray(crop)), (pixel, pixel)).probability < 0.5
