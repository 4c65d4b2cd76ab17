"""Double-tip detection from the ghost copy a second apex draws of every feature.

Physics. With two mini-tips the tunnelling currents add, so the constant-current image is
``z2(x) = (1/2k) ln(exp(2k z(x)) + w exp(2k z(x + d)))``: every feature appears twice, the
second time displaced by ``-d`` (``d`` the second apex's lateral offset from the main one) and
weaker by the current ratio ``w`` of the two apexes. Periodic lattices hide this (a lattice plus
a shifted copy of itself is the same lattice), so the evidence is in what is not periodic:
adsorbates, vacancies, molecules, debris, kinks.

Method (no training; a handful of constants calibrated on simulated frames):

1. **Without the lattice.** The levelled image's spectrum (of its periodic component, so the
   frame's borders leave no cross of spurious power) loses every Bragg peak: bins far above the
   average power at their spatial frequency.
2. **Blobs.** The determinant of the Hessian at the scale of atomic-size features, signed by the
   Laplacian so bright and dark features stay apart, responds to compact features and hardly at
   all to straight step edges and scan lines, which would otherwise dominate every correlation.
   Its local extrema well above those of the noise are the features.
3. **Candidate offsets** come from the autocorrelation of the blob map (energy-weighted) and from
   a histogram of the vectors between features of the same sign (count-weighted); offsets that
   are lattice translations are skipped.
4. **Feature votes.** Each candidate is checked feature by feature: how many features have a
   partner of the same sign at ``+-d``? A ghost gives nearly every feature a partner; a chance
   alignment of a few features does not. Where the partners are weaker fixes the sign of
   ``d``; the height ratio of the pairs, through the formula above, gives ``w``.
5. **Probability**: a logistic function of the vote fraction, the number of pairs and the
   autocorrelation peak, calibrated on simulated frames whose seeds the benchmark never uses.

Limits (``benchmarks/bench_analyzers_double_tip.py`` measures them): a frame needs a few compact
features of about ``feature_size`` for the vote; a featureless lattice, features much larger
than the apex separation, or ghosts only of step edges (not used) leave it blind, and it then
says P(double) is low rather than guessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import fft as sfft
from scipy import ndimage

from probepilot.model import Finding, FloatArray, Frame
from probepilot_analyzers._findings import finite, guarded, scanner_vector
from probepilot_analyzers._image import level, prepare
from probepilot_analyzers._spectral import blob_and_height_maps, bragg_mask, periodic_spectrum
from probepilot_analyzers.options import DoubleTipOptions

#: Decay constant of the tunnelling current for a 4.5 eV barrier (1/m): sqrt(2 m phi) / hbar.
KAPPA = 1.0867e10
#: Fraction of a feature's blob strength its partner may have and still count as its ghost.
PARTNER_FLOOR = 1 / 3
#: Logistic calibration of P(double): intercept, vote fraction, log(1 + pairs), log(1 +
#: features), autocorrelation peak. Fitted (and rounded) on 201 simulated frames with at least
#: three features in view (training seeds 0-479 of every surface preset and tip state; the
#: benchmark's held-out frames use other seeds, sizes and noise levels). Many pairs among few
#: features, with a clear autocorrelation peak, make a double tip.
CALIBRATION = (-2.9, -0.2, 3.7, -2.0, 4.2)


@dataclass(frozen=True, slots=True)
class DoubleTipResult:
    """What :func:`detect` found. Offsets are in pixels along x and along the rows."""

    probability: float
    offset: tuple[float, float]  # second apex relative to the main one (x, rows), pixels
    weight: float  # current ratio of the second apex to the main one, in (0, 1]; 0: unknown
    votes: float  # fraction of the features (that could show one) with a ghost partner
    pairs: int  # features with a partner at the offset
    features: int  # features strong enough to show a ghost, with the ghost inside the frame
    peak: float  # normalised autocorrelation of the blob map at the offset
    lattice_bins: int  # Fourier bins removed as lattice


@dataclass(frozen=True, slots=True)
class _Blobs:
    y: FloatArray
    x: FloatArray
    value: FloatArray  # signed blob strength
    height: FloatArray  # apparent height above the local background, m
    strong: npt.NDArray[np.bool_]  # strong enough that its ghost would be found


def find_blobs(
    f: FloatArray, heights: FloatArray, sigma: float, *, factor: float = 20.0, top: int = 150
) -> _Blobs | None:
    """Local extrema of the blob map: ``strong`` ones exceed ``factor`` times the median
    extremum (noise makes most extrema, so that is the noise's level); partners may be down to
    a third of that. Positions are refined to a fraction of a pixel."""
    af = np.abs(f)
    size = max(3, 2 * round(sigma) + 1)
    peaks = (af == ndimage.maximum_filter(af, size=size, mode="wrap")) & (af > 0)
    peaks[:2] = peaks[-2:] = False
    peaks[:, :2] = peaks[:, -2:] = False
    if not peaks.any():
        return None
    threshold = factor * float(np.median(af[peaks]))
    ys, xs = np.nonzero(peaks & (af > threshold * PARTNER_FLOOR))
    order = np.argsort(-af[ys, xs])[:top]
    ys, xs = ys[order], xs[order]
    dy = _vertex(af[ys - 1, xs], af[ys, xs], af[ys + 1, xs])
    dx = _vertex(af[ys, xs - 1], af[ys, xs], af[ys, xs + 1])
    value = f[ys, xs]
    return _Blobs(ys + dy, xs + dx, value, heights[ys, xs], np.abs(value) > threshold)


def _vertex(minus: FloatArray, centre: FloatArray, plus: FloatArray) -> FloatArray:
    """Sub-pixel position of a parabola's vertex through three samples, within +-0.5."""
    curvature = minus - 2 * centre + plus
    safe = np.where(curvature != 0, curvature, 1.0)
    return np.clip(np.where(curvature != 0, 0.5 * (minus - plus) / safe, 0.0), -0.5, 0.5)


def weight_from_heights(main: FloatArray, ghost: FloatArray, kappa: float = KAPPA) -> FloatArray:
    """Current ratio ``w`` of the second apex from the apparent heights (m, above the local
    background) of a feature and its ghost, inverting the two-apex formula: with
    ``A = exp(2k h_main)``, ``B = exp(2k h_ghost)``, ``w`` is the positive root of
    ``(A - 1) w^2 + (A - B) w + (1 - B) = 0`` (``w = h_ghost / h_main`` for shallow features)."""
    a_ = np.exp(np.clip(2 * kappa * main, -30, 30))
    b_ = np.exp(np.clip(2 * kappa * ghost, -30, 30))
    qa, qb, qc = a_ - 1, a_ - b_, 1 - b_
    with np.errstate(all="ignore"):
        root = np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))
        quadratic = (-qb + np.sign(qa) * root) / (2 * np.where(qa != 0, qa, 1.0))
        linear = ghost / np.where(main != 0, main, 1.0)
        w = np.where(np.abs(qa) > 1e-9, quadratic, linear)
    return np.asarray(w)


def _autocorrelation(f: FloatArray) -> FloatArray:
    """Normalised, centred autocorrelation of ``f`` (circular: ``f`` is zero near its border
    only where it has no features, which is enough for lags under a quarter of the frame)."""
    spectrum = sfft.rfft2(f - f.mean())
    acf = sfft.irfft2(spectrum.real**2 + spectrum.imag**2, s=f.shape)
    if not acf[0, 0] > 0:
        return np.zeros_like(f)
    return np.asarray(sfft.fftshift(acf / acf[0, 0]))


@dataclass(frozen=True, slots=True)
class _Vote:
    offset: tuple[float, float]  # (rows, x): ghost position relative to its feature
    pairs: int
    features: int
    mains: npt.NDArray[np.intp]  # indices of features with a weaker partner at +offset
    ghosts: npt.NDArray[np.intp]  # their partners


def _vote(blobs: _Blobs, g: tuple[float, float], tol: float, shape: tuple[int, int]) -> _Vote:
    """Count the strong features with a same-sign partner at ``g`` (weaker: it is their ghost)
    or at ``-g`` (stronger: they are its ghost)."""
    ny, nx = shape
    y, x, v = blobs.y, blobs.x, blobs.value
    a = np.abs(v)
    dy = y[None, :] - y[:, None]
    dx = x[None, :] - x[:, None]
    same = np.sign(v)[None, :] == np.sign(v)[:, None]
    forward = (np.hypot(dy - g[0], dx - g[1]) <= tol) & same & (a[None, :] <= a[:, None] * 1.05)
    backward = (np.hypot(dy + g[0], dx + g[1]) <= tol) & same & (a[None, :] >= a[:, None] * 0.95)
    np.fill_diagonal(forward, False)
    np.fill_diagonal(backward, False)
    explained = forward.any(axis=1) | backward.any(axis=1)

    def inside(sy: float, sx: float) -> np.ndarray:
        return (y + sy >= 2) & (y + sy < ny - 2) & (x + sx >= 2) & (x + sx < nx - 2)

    # A strong feature could show a ghost (or be one) when the other position is in the frame.
    eligible = blobs.strong & (inside(g[0], g[1]) | inside(-g[0], -g[1]))
    mains, ghosts = np.nonzero(forward & blobs.strong[:, None])
    return _Vote(g, int((explained & eligible).sum()), int(eligible.sum()), mains, ghosts)


def _lattice_vectors_test(
    spectrum_mask: np.ndarray,
    power: np.ndarray,
    shape: tuple[int, int],
    r_max: float,
    sigma: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The strongest removed Bragg bins that the blob map can see, as (ky, kx, weight), for
    telling lattice translations apart from ghost offsets.

    Only periods between ``2.5 sigma`` (finer lattices are invisible at the blob scale, and
    being dense their translations would veto every offset) and ``r_max`` (longer ones are
    terraces and tilt) count.
    """
    ny, nx = shape
    ky_all = sfft.fftfreq(ny)[:, None]
    kx_all = sfft.rfftfreq(nx)[None, :]
    k = np.hypot(ky_all, kx_all)
    keep = spectrum_mask & (k >= 1.0 / max(r_max, 1.0)) & (k <= 1.0 / (2.5 * sigma))
    if not keep.any():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    iy, ix = np.nonzero(keep)
    weight = power[iy, ix]
    order = np.argsort(-weight)[:24]
    ky = sfft.fftfreq(ny)[iy[order]]
    kx = sfft.rfftfreq(nx)[ix[order]]
    weight = weight[order] / weight[order].sum()
    # A lattice needs two directions; a one-dimensional modulation (the Au(111) herringbone)
    # has translations along whole lines, which would veto far too many offsets.
    major = weight > 0.05
    norm = np.hypot(ky, kx)
    cross = np.abs(np.outer(ky, kx) - np.outer(kx, ky)) / np.outer(norm, norm)
    if not (cross[np.ix_(major, major)] > 0.5).any():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return ky, kx, weight


def detect(
    z: FloatArray,
    pixel: tuple[float, float],
    *,
    feature_size: float = 0.3e-9,
    max_offset: float = 5e-9,
    kappa: float = KAPPA,
) -> DoubleTipResult:
    """Look for a ghost copy in the levelled image ``z`` (m; pixel sizes in m).

    :param feature_size: Gaussian width (m) of the features to look at (atomic adsorbates:
        0.3 nm); clipped to 1-6 pixels.
    :param max_offset: largest apex separation considered (m); at most a quarter of the frame.
    :param kappa: decay constant of the tunnelling current (1/m), for the weight.
    """
    ny, nx = z.shape
    px = math.sqrt(pixel[0] * pixel[1])
    sigma = float(np.clip(feature_size / px, 1.0, 6.0))
    spectrum = periodic_spectrum(z)
    power = spectrum.real**2 + spectrum.imag**2
    mask = bragg_mask(spectrum, ny)
    spectrum[mask] = 0.0
    f, heights = blob_and_height_maps(spectrum, (ny, nx), sigma)
    blobs = find_blobs(f, heights, sigma)
    none = DoubleTipResult(0.0, (0.0, 0.0), 0.0, 0.0, 0, 0, 0.0, int(mask.sum()))
    if blobs is None or int(blobs.strong.sum()) < 2:
        return _with_probability(none)
    r_max = min(max_offset / px, min(ny, nx) / 4)
    r_min = max(2.0, 1.5 * sigma)
    bragg = _lattice_vectors_test(mask, power, (ny, nx), r_max, sigma)
    tol = max(1.2, 0.4 * sigma)
    if r_max <= r_min:
        return _with_probability(none)
    acf = _autocorrelation(f)
    candidates = _candidates(blobs, acf, r_min, r_max, tol)
    best: _Vote | None = None
    tried: set[tuple[int, int]] = set()
    for g in candidates:
        for sign in (1.0, -1.0):
            offset = _refine(blobs, (sign * g[0], sign * g[1]), tol)
            key = (round(offset[0] * 4), round(offset[1] * 4))  # quarter-pixel cells
            if key in tried:
                continue
            tried.add(key)
            vote = _vote(blobs, offset, tol, (ny, nx))
            if _is_lattice_translation(vote.offset, bragg):
                continue
            if best is None or (vote.pairs, -len(vote.mains)) > (best.pairs, -len(best.mains)):
                best = vote
    if best is None or best.pairs == 0:
        return _with_probability(none)
    gy, gx = best.offset
    cy, cx = ny // 2, nx // 2
    peak = float(ndimage.map_coordinates(acf, [[cy + gy], [cx + gx]], order=1)[0])
    weight = 0.0
    if len(best.mains):
        polarity = np.sign(blobs.value[best.mains])
        ratios = weight_from_heights(
            polarity * blobs.height[best.mains], polarity * blobs.height[best.ghosts], kappa
        )
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        weight = float(np.clip(np.median(ratios), 0.0, 1.0)) if ratios.size else 0.0
    # The ghost sits at -d from each feature: the second apex is at -g.
    result = DoubleTipResult(
        0.0,
        (-gx, -gy),
        weight,
        best.pairs / max(best.features, 1),
        best.pairs,
        best.features,
        peak,
        int(mask.sum()),
    )
    return _with_probability(result)


def _candidates(
    blobs: _Blobs, acf: FloatArray, r_min: float, r_max: float, tol: float
) -> list[tuple[float, float]]:
    """Offsets (rows, x) worth testing: the strongest off-centre autocorrelation maxima and the
    densest cells of the histogram of vectors from strong features to weaker ones."""
    ny, nx = acf.shape
    reach = math.ceil(r_max) + 1
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    rr = np.hypot(yy, xx)
    outside = (rr < r_min) | (rr > r_max)
    out: list[tuple[float, float]] = []
    crop = acf[ny // 2 - reach : ny // 2 + reach + 1, nx // 2 - reach : nx // 2 + reach + 1].copy()
    crop[outside] = -np.inf
    for flat in np.argsort(-crop.ravel())[:4]:
        iy, ix = np.unravel_index(flat, crop.shape)
        out.append((float(iy - reach), float(ix - reach)))
    y, x, a = blobs.y, blobs.x, np.abs(blobs.value)
    dy = y[None, :] - y[:, None]
    dx = x[None, :] - x[:, None]
    dist = np.hypot(dy, dx)
    same = np.sign(blobs.value)[None, :] == np.sign(blobs.value)[:, None]
    use = (dist >= r_min) & (dist <= r_max) & same & (a[:, None] >= a[None, :])
    use &= blobs.strong[:, None]
    i, j = np.nonzero(use)
    if i.size:
        hist = np.zeros(crop.shape)
        np.add.at(
            hist,
            (np.round(dy[i, j]).astype(int) + reach, np.round(dx[i, j]).astype(int) + reach),
            1.0,
        )
        hist = ndimage.gaussian_filter(hist + hist[::-1, ::-1], 0.7 * tol, mode="constant")
        hist[outside] = -np.inf
        for flat in np.argsort(-hist.ravel())[:5]:
            iy, ix = np.unravel_index(flat, hist.shape)
            out.append((float(iy - reach), float(ix - reach)))
    return out


def _refine(blobs: _Blobs, g: tuple[float, float], tol: float) -> tuple[float, float]:
    """The median of the feature-to-feature vectors within ``2 tol`` of ``g`` (or ``g``)."""
    dy = blobs.y[None, :] - blobs.y[:, None]
    dx = blobs.x[None, :] - blobs.x[:, None]
    same = np.sign(blobs.value)[None, :] == np.sign(blobs.value)[:, None]
    near = (np.hypot(dy - g[0], dx - g[1]) <= 2 * tol) & same & blobs.strong[:, None]
    np.fill_diagonal(near, False)
    if not near.any():
        return g
    return (float(np.median(dy[near])), float(np.median(dx[near])))


def _is_lattice_translation(
    g: tuple[float, float], bragg: tuple[FloatArray, FloatArray, FloatArray]
) -> bool:
    """True when shifting by ``g`` maps the lattice (its strongest Bragg components) onto
    itself: such offsets are explained by the periodicity, not by a second apex."""
    ky, kx, weight = bragg
    if ky.size < 2:
        return False
    major = weight >= 0.05
    # Only a lattice finer than the offset explains it (pairs of its own sites); a coarser
    # modulation (the herringbone, an aliased lattice's moire) is in phase with itself over any
    # short offset and would veto ghosts it has nothing to do with.
    if np.any(np.hypot(ky[major], kx[major]) * math.hypot(*g) < 0.8):
        return False
    cycles = (ky * g[0] + kx * g[1])[major]
    # A translation puts every strong Bragg component back in phase.
    return bool(np.all(np.abs(cycles - np.round(cycles)) < 0.2))


def _with_probability(result: DoubleTipResult) -> DoubleTipResult:
    b0, b_votes, b_pairs, b_features, b_peak = CALIBRATION
    logit = (
        b0
        + b_votes * result.votes
        + b_pairs * math.log1p(result.pairs)
        + b_features * math.log1p(result.features)
        + b_peak * result.peak
    )
    probability = 1.0 / (1.0 + math.exp(-min(max(logit, -50.0), 50.0)))
    if result.pairs == 0:
        probability = min(probability, 0.05)
    return DoubleTipResult(
        probability,
        result.offset,
        result.weight,
        result.votes,
        result.pairs,
        result.features,
        result.peak,
        result.lattice_bins,
    )


# --------------------------------------------------------------------------------------------
# The analyzer


class DoubleTipAnalyzer:
    """``double_tip``: P(double), the second apex's offset (m) and its weight, per frame.

    The finding's ``confidence`` is P(double). ``values``: ``p_double``; ``offset_x``,
    ``offset_y`` (m, scanner frame: where the second apex sits relative to the main one, so
    ghosts appear displaced by minus this); ``separation`` (m); ``weight`` (current ratio of the
    second apex to the main one, 0 when unknown); ``pairs`` and ``features`` (the vote);
    ``status`` (``"ok"``).
    """

    name = "double_tip"

    def __init__(self, options: DoubleTipOptions | None = None) -> None:
        self.options = options or DoubleTipOptions()

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "double_tip", lambda: self._analyze(frame))

    def _analyze(self, frame: Frame) -> list[Finding]:
        opts = self.options
        image = prepare(frame, opts.channel)
        z = level(image.data)
        kappa = KAPPA * math.sqrt(opts.work_function / 4.5)
        result = detect(
            z,
            image.pixel,
            feature_size=opts.feature_size,
            max_offset=opts.max_offset,
            kappa=kappa,
        )
        p = finite(result.probability)
        dx, dy = scanner_vector(frame, *result.offset)
        separation = math.hypot(dx, dy)
        if result.pairs == 0:
            message = f"no ghost features (P(double) {p:.2f})"
        else:
            verdict = "double tip" if p >= opts.threshold else "probably single"
            message = (
                f"{verdict}: P(double) {p:.2f}; second apex {separation * 1e9:.2f} nm away at "
                f"({dx * 1e9:+.2f}, {dy * 1e9:+.2f}) nm, weight {result.weight:.2f}; "
                f"{result.pairs} of {result.features} features have a ghost"
            )
        values: dict[str, float | str] = {
            "status": "ok",
            "p_double": p,
            "offset_x": finite(dx),
            "offset_y": finite(dy),
            "separation": finite(separation),
            "weight": finite(result.weight),
            "pairs": float(result.pairs),
            "features": float(result.features),
        }
        return [Finding(self.name, "double_tip", p, values, message=message)]
