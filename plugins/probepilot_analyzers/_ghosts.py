"""The two kinds of evidence a ghost copy leaves, for :mod:`probepilot_analyzers.double_tip`.

**The power cepstrum** (dense content). Two apexes ``d`` apart image ``u(x) + w u(x - g)``
(linearised, ``g = -d``), whose power spectrum is the single apex's times
``|1 + w exp(-i k.g)|^2``: fringes across the whole spectrum. In the logarithm they add
``2 w cos(k.g) - w^2 cos(2 k.g) + ...``, so the inverse Fourier transform of the log spectrum
(the cepstrum) has a peak of height ``w`` at ``+-g``, whatever the surface looks like. What is
not a ghost is removed first: the lattice's Bragg peaks (masked), the smooth fall of the
spectrum with ``|k|`` (a ring average), and what scanning adds along the axes (1/f noise and the
feedback's lag along the fast axis, line noise along the slow one: monotone functions of
``|k_x|`` and of ``|k_y|``, fitted together with the ring average). Bins where the noise floor
dominates carry no fringes and are down-weighted.

**Feature pairs** (sparse content). Each compact feature (adsorbate, vacancy, molecule lobe)
has a weaker copy at ``+g``; a random pair of features does not repeat across the frame. For a
candidate ``g`` every feature is checked: is there, at ``p + g``, more signal than at the same
distance in other directions (which removes the feature's own tail, so ghosts that overlap
their feature count too), of the same sign and a plausible ratio?
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import fft as sfft
from scipy import ndimage
from scipy.optimize import isotonic_regression

from probepilot.model import FloatArray

#: Variance of the logarithm of an exponentially distributed periodogram bin.
LOG_PERIODOGRAM_VARIANCE = math.pi**2 / 6


@dataclass(frozen=True, slots=True)
class Cepstrum:
    """A whitened power cepstrum, centred: lag (0, 0) at ``[ny // 2, nx // 2]``.

    ``values`` estimates the ghost weight at each lag; ``noise`` is its standard deviation from
    the periodogram's own scatter (the floor below which nothing is a ghost).
    """

    values: FloatArray
    noise: float


def power_cepstra(
    power: FloatArray, mask: npt.NDArray[np.bool_], shape: tuple[int, int]
) -> tuple[Cepstrum, Cepstrum]:
    """Two cepstra of an ``rfft2`` power spectrum (``mask``: Bragg bins, left out): every bin
    weighted alike, and bins weighted by the fraction of their power above the noise floor.

    Noise recorded before the second apex formed (or copied along with the image) carries the
    fringes too, so it helps the first; noise added by the instrument afterwards does not, and
    only dilutes it, which the second avoids.
    """
    ny, nx = shape
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    size = max(ny, nx)
    kr = np.hypot(ky, kx) * size
    rings = np.minimum(kr.astype(np.intp), size)
    top = float(power.max())
    if not top > 0:
        empty = Cepstrum(np.zeros(shape), 1.0)
        return empty, empty
    logp = np.log(power + top * 1e-15)
    use = ~mask & (rings >= 2) & (kr <= size / 2)
    weight = use.astype(np.float64)
    columns = np.broadcast_to(np.arange(power.shape[1])[None, :], power.shape)
    rows = np.broadcast_to(np.minimum(np.arange(ny), ny - np.arange(ny))[:, None], power.shape)

    def mean_by(index: np.ndarray, values: np.ndarray, n: int) -> FloatArray:
        total = np.bincount(index.ravel(), (values * weight).ravel(), minlength=n)
        count = np.bincount(index.ravel(), weight.ravel(), minlength=n)
        return np.where(count > 0, total / np.maximum(count, 1e-12), 0.0)

    ring = np.zeros(size + 1)
    along_x = np.zeros(power.shape[1])
    along_y = np.zeros(ny // 2 + 1)
    for _ in range(3):
        ring = mean_by(rings, logp - along_x[columns] - along_y[rows], size + 1)
        along_x = mean_by(columns, logp - ring[rings] - along_y[rows], power.shape[1])
        along_x = isotonic_regression(along_x, increasing=False).x
        along_y = mean_by(rows, logp - ring[rings] - along_x[columns], ny // 2 + 1)
        along_y = isotonic_regression(along_y, increasing=False).x
    residual = np.clip(logp - ring[rings] - along_x[columns] - along_y[rows], -6.0, 6.0)
    # The ring average over the outer rings is the noise floor; the rest is signal.
    outer = ring[int(0.375 * size) : size // 2 + 1]
    noise_floor = float(np.median(outer)) if outer.size else float(ring.min())
    snr = np.expm1(np.clip(ring - noise_floor, 0.0, 50.0))
    multiplicity = np.full(power.shape[1], 2.0)
    multiplicity[0] = 1.0
    if nx % 2 == 0:
        multiplicity[-1] = 1.0
    out = []
    for floor in (1.0, SIGNAL_FLOOR):
        w = np.clip(snr / (1.0 + snr), floor, 1.0)[rings] * use
        norm = float((w * w * multiplicity[None, :]).sum())
        if not norm > 0:
            out.append(Cepstrum(np.zeros(shape), 1.0))
            continue
        values = sfft.irfft2(w * residual, s=shape) * (ny * nx / norm)
        noise = math.sqrt(LOG_PERIODOGRAM_VARIANCE / norm)
        out.append(Cepstrum(np.asarray(sfft.fftshift(values)), noise))
    return out[0], out[1]


#: Smallest weight of a noise-dominated bin in the signal-weighted cepstrum.
SIGNAL_FLOOR = 0.3


#: Integer steps in eight directions, about two pixels long, for :func:`ridge_suppressed`.
_RIDGE_STEPS = ((0, 2), (2, 0), (1, 2), (2, 1), (2, 2), (2, -2), (1, -2), (2, -1))


def ridge_suppressed(values: FloatArray) -> FloatArray:
    """``values`` minus the largest mean of the two neighbours two pixels away on either side:
    a compact peak keeps its height, a ridge (a step edge's streak, the slope towards the
    origin) loses it."""
    base = np.full(values.shape, -np.inf)
    for dy, dx in _RIDGE_STEPS:
        pair = np.roll(values, (dy, dx), axis=(0, 1)) + np.roll(values, (-dy, -dx), axis=(0, 1))
        np.maximum(base, 0.5 * pair, out=base)
    return np.asarray(values - np.maximum(base, 0.0))


@dataclass(frozen=True, slots=True)
class Lags:
    """Ghost candidates from the cepstrum, as (rows, x) lags with their scores."""

    lags: list[tuple[float, float]]
    zscores: list[float]  # peak height over the scatter of the peaks of the search area
    heights: list[float]  # the cepstrum there (an estimate of the ghost weight)
    score: FloatArray  # ridge-suppressed z-score map of the search area (centre at [reach, reach])
    reach: int


def lag_reach(shape: tuple[int, ...], r_max: float) -> int:
    """Half-size of the square of lags searched for lags up to ``r_max``."""
    return max(1, min(math.ceil(r_max) + 3, shape[0] // 2 - 1, shape[1] // 2 - 1))


def lattice_translations(
    power: FloatArray, mask: npt.NDArray[np.bool_], shape: tuple[int, int], reach: int,
    strongest: int = 6, tolerance: float = 0.2,
) -> npt.NDArray[np.bool_]:
    """Lags (a ``2 reach + 1`` square, centred) that are translations of the lattice: every
    one of its ``strongest`` Bragg peaks is back in phase there (within ``tolerance`` of a
    cycle). The Bragg peaks are masked, but what leaks past the mask repeats at these lags, and
    a ghost there would copy the lattice onto itself anyway."""
    ny, nx = shape
    out = np.zeros((2 * reach + 1, 2 * reach + 1), dtype=bool)
    if not mask.any():
        return out
    iy, ix = np.nonzero(mask)
    ky = sfft.fftfreq(ny)[iy]
    kx = sfft.rfftfreq(nx)[ix]
    keep = np.hypot(ky, kx) * max(ny, nx) >= 3
    iy, ix, ky, kx = iy[keep], ix[keep], ky[keep], kx[keep]
    # The strongest bins, one per peak (a bin next to a stronger one belongs to its peak).
    chosen: list[int] = []
    for k in np.argsort(-power[iy, ix]):
        near = [abs(iy[k] - iy[j]) % ny <= 2 or ny - abs(iy[k] - iy[j]) <= 2 for j in chosen]
        if any(n and abs(ix[k] - ix[j]) <= 2 for n, j in zip(near, chosen, strict=True)):
            continue
        chosen.append(int(k))
        if len(chosen) == strongest:
            break
    if len(chosen) < 2:
        return out
    ky, kx = ky[chosen], kx[chosen]
    norm = np.hypot(ky, kx)
    cross = np.abs(np.outer(ky, kx) - np.outer(kx, ky)) / np.outer(norm, norm)
    if not (cross > 0.5).any():
        return out  # a one-dimensional modulation: its translations are whole lines
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    out[:] = True
    for a, b in zip(ky, kx, strict=True):
        cycles = a * yy + b * xx
        out &= np.abs(cycles - np.round(cycles)) < tolerance
    return out


def cepstrum_lags(
    cepstrum: Cepstrum,
    r_min: float,
    r_max: float,
    count: int = 6,
    veto: npt.NDArray[np.bool_] | None = None,
) -> Lags:
    """The strongest compact cepstrum peaks at lags between ``r_min`` and ``r_max`` pixels
    (and not in ``veto``, a centred square of the same reach).

    Their scale is the scatter of the search area, measured separately along the axes (where
    scan lines leave most of what is not a ghost) and off them, and never below the noise.
    """
    c = cepstrum.values
    ny, nx = c.shape
    reach = lag_reach(c.shape, r_max)
    crop = c[ny // 2 - reach : ny // 2 + reach + 1, nx // 2 - reach : nx // 2 + reach + 1]
    s = ridge_suppressed(crop)
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    rr = np.hypot(yy, xx)
    area = (rr >= r_min) & (rr <= r_max + 0.75)
    if veto is not None and veto.shape == area.shape:
        area &= ~veto
    axis = (np.abs(yy) <= 1) | (np.abs(xx) <= 1)
    scale = np.full(s.shape, cepstrum.noise)
    for part in (area & axis, area & ~axis):
        if part.sum() >= 8:
            v = s[part]
            spread = 1.4826 * float(np.median(np.abs(v - np.median(v))))
            scale[part] = max(spread, cepstrum.noise)
    z = np.where(area, s / scale, -np.inf)
    peaks = (z == ndimage.maximum_filter(z, size=3, mode="constant", cval=-np.inf)) & area
    # One of each +-lag pair (the cepstrum is symmetric).
    peaks &= (yy > 0) | ((yy == 0) & (xx > 0))
    iy, ix = np.nonzero(peaks)
    order = np.argsort(-z[iy, ix])[:count]
    lags = []
    for k in order:
        y, x = iy[k], ix[k]
        dy = dx = 0.0
        if 0 < y < 2 * reach and 0 < x < 2 * reach:
            dy = float(_vertex(crop[y - 1, x], crop[y, x], crop[y + 1, x]))
            dx = float(_vertex(crop[y, x - 1], crop[y, x], crop[y, x + 1]))
        lags.append((float(y - reach) + dy, float(x - reach) + dx))
    return Lags(
        lags,
        [float(z[iy[k], ix[k]]) for k in order],
        [float(crop[iy[k], ix[k]]) for k in order],
        np.where(area, s / scale, 0.0),
        reach,
    )


def lag_score(lags: Lags, g: tuple[float, float]) -> float:
    """The best z-score within a pixel of the lag ``g`` (rows, x) or of ``-g``; 0 outside the
    search area."""
    r = lags.reach
    best = 0.0
    for sign in (1.0, -1.0):
        cy, cx = r + sign * g[0], r + sign * g[1]
        y0, y1 = max(0, math.floor(cy - 1)), min(2 * r + 1, math.ceil(cy + 1) + 1)
        x0, x1 = max(0, math.floor(cx - 1)), min(2 * r + 1, math.ceil(cx + 1) + 1)
        if y1 > y0 and x1 > x0:
            best = max(best, float(lags.score[y0:y1, x0:x1].max()))
    return best


# --------------------------------------------------------------------------------------------
# Features and their partners


@dataclass(frozen=True, slots=True)
class Features:
    """Compact features: sub-pixel position (rows, x) and band-passed height (m, signed)."""

    y: FloatArray
    x: FloatArray
    height: FloatArray
    noise: float  # robust scatter of the band-passed image (m)
    coverage: float  # fraction of the frame where it stands out of the noise
    margin: int  # pixels along the borders where nothing is looked at


#: A feature's height two blob widths away, on both sides of it, stays below this fraction.
COMPACT = 0.6


def find_features(
    blobs: FloatArray, heights: FloatArray, sigma: float, *, threshold: float = 5.0, top: int = 80
) -> Features:
    """Local extrema of the blob map (compact, not edges) whose band-passed height stands
    ``threshold`` times above the band-passed image's robust scatter, strongest first."""
    ny, nx = heights.shape
    sample = heights[::2, ::2]  # as robust, four times cheaper
    centre = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - centre)))
    noise = max(noise, 1e-3 * float(np.max(np.abs(heights))), 1e-300)
    coverage = float(np.mean(np.abs(sample) > 3 * noise))
    # Spectral filtering leaves the frame's borders unreliable.
    margin = max(3, math.ceil(2 * sigma), round(0.04 * min(ny, nx)))
    # Strong pixels that are the largest blob response within a blob width.
    strong = np.abs(heights) > threshold * noise
    strong &= np.sign(heights) == np.sign(blobs)
    strong[:margin] = strong[-margin:] = False
    strong[:, :margin] = strong[:, -margin:] = False
    ys, xs = np.nonzero(strong)
    ab = np.abs(blobs)
    half = max(1, round(sigma))
    if ys.size > 4000:
        peaks = ab[ys, xs] == ndimage.maximum_filter(ab, size=2 * half + 1)[ys, xs]
    else:
        padded = np.pad(ab, half, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * half + 1, 2 * half + 1))
        peaks = ab[ys, xs] >= windows[ys, xs].max(axis=(1, 2))
    peaks &= ab[ys, xs] > 0
    ys, xs = ys[peaks], xs[peaks]
    h = heights[ys, xs]
    # Compact: the height falls off along every line through the feature. Along a step edge,
    # or the rim a band-pass draws around a large object, it stays up on both sides.
    reach = 2.0 * sigma
    ridge = np.zeros(h.size)
    for angle in (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4):
        dy_, dx_ = reach * math.sin(angle), reach * math.cos(angle)
        both = ndimage.map_coordinates(
            heights,
            [np.concatenate([ys + dy_, ys - dy_]), np.concatenate([xs + dx_, xs - dx_])],
            order=1,
            mode="nearest",
        ).reshape(2, -1)
        ridge = np.maximum(ridge, np.minimum(both[0] * np.sign(h), both[1] * np.sign(h)))
    keep = ridge < COMPACT * np.abs(h)
    ys, xs, h = ys[keep], xs[keep], h[keep]
    order = np.argsort(-np.abs(h))[:top]
    ys, xs, h = ys[order], xs[order], h[order]
    a = np.abs(heights)
    dy = _vertex(a[ys - 1, xs], a[ys, xs], a[ys + 1, xs])
    dx = _vertex(a[ys, xs - 1], a[ys, xs], a[ys, xs + 1])
    return Features(ys + dy, xs + dx, h, noise, coverage, margin)


def _vertex(minus: FloatArray, centre: FloatArray, plus: FloatArray) -> FloatArray:
    """Sub-pixel position of a parabola's vertex through three samples, within +-0.5."""
    curvature = minus - 2 * centre + plus
    safe = np.where(curvature != 0, curvature, 1.0)
    return np.clip(np.where(curvature != 0, 0.5 * (minus - plus) / safe, 0.0), -0.5, 0.5)


#: Directions (radians, from the candidate) whose mean is a feature's own tail at that distance.
_AROUND = tuple(math.radians(a) for a in (60, 90, 120, 240, 270, 300))
_AROUND_CS = tuple((math.cos(a), math.sin(a)) for a in _AROUND)


def excess(heights: FloatArray, y: FloatArray, x: FloatArray, g: tuple[float, float]) -> FloatArray:
    """Band-passed height at ``(y, x) + g`` minus its mean at the same distance in six other
    directions: what is there beyond the feature's own tail."""
    gy, gx = g
    coords_y = [y + gy]
    coords_x = [x + gx]
    for angle in _AROUND:
        c, s = math.cos(angle), math.sin(angle)
        coords_y.append(y + s * gx + c * gy)
        coords_x.append(x + c * gx - s * gy)
    values = ndimage.map_coordinates(
        heights, [np.concatenate(coords_y), np.concatenate(coords_x)], order=1, mode="nearest"
    ).reshape(len(coords_y), -1)
    return np.asarray(values[0] - values[1:].mean(axis=0))


#: Ghost weights (as ratios of band-passed heights) the feature test profiles over.
WEIGHTS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0)
#: A ghost's height ratio lies between this fraction of the weight (noise) and ``RATIO_MAX``
#: (tall features: the two currents add, so ghosts of tall features look taller than ``w``).
RATIO_SLACK = 0.6
RATIO_MAX = 1.15
#: A ghost (or its feature) counts as seen when it stands this many noise scatters out.
SIGNIFICANCE = 3.0
#: The chance of seeing an expected ghost when there is one (noise, neighbours, edges).
DETECT = 0.9


@dataclass(frozen=True, slots=True)
class Partners:
    """What lies at ``+g`` and ``-g`` from every feature: the excess there relative to the
    feature's height (``forward``, ``backward``), whether those positions are in the frame,
    whether it stands out of the noise, and ``periodic``: an equal partner at ``+-2g`` too (a
    lattice translation, not a ghost)."""

    g: tuple[float, float]
    forward: FloatArray
    backward: FloatArray
    ahead: npt.NDArray[np.bool_]
    behind: npt.NDArray[np.bool_]
    seen_ahead: npt.NDArray[np.bool_]
    seen_behind: npt.NDArray[np.bool_]
    periodic: npt.NDArray[np.bool_]
    ghost: FloatArray  # excess at +g (m)


def partners(
    features: Features, heights: FloatArray, g: tuple[float, float]
) -> tuple[Partners, Partners]:
    """Look at ``+-g`` and ``+-2g`` from every feature: the partners for ``g`` and for ``-g``
    (the same four looks, read the other way round)."""
    ny, nx = heights.shape
    y, x, h = features.y, features.x, features.height
    looks = [(g[0], g[1]), (-g[0], -g[1]), (2 * g[0], 2 * g[1]), (-2 * g[0], -2 * g[1])]
    coords_y, coords_x = [], []
    for gy, gx in looks:
        coords_y.append(y + gy)
        coords_x.append(x + gx)
        for c, s in _AROUND_CS:
            coords_y.append(y + s * gx + c * gy)
            coords_x.append(x + c * gx - s * gy)
    values = ndimage.map_coordinates(
        heights, [np.concatenate(coords_y), np.concatenate(coords_x)], order=1, mode="nearest"
    ).reshape(len(looks), len(_AROUND_CS) + 1, -1)
    found = values[:, 0] - values[:, 1:].mean(axis=1)  # (4, features)
    m = features.margin
    inside = [
        (y + gy >= m) & (y + gy <= ny - 1 - m) & (x + gx >= m) & (x + gx <= nx - 1 - m)
        for gy, gx in looks[:2]
    ]
    seen = np.abs(found) > SIGNIFICANCE * features.noise
    with np.errstate(all="ignore"):
        ratio = found / h
    equal = (ratio > 0.5) & (ratio < 2.0) & seen
    periodic = equal[2] | equal[3]
    ahead = Partners(
        g, ratio[0], ratio[1], inside[0], inside[1], seen[0] & inside[0], seen[1] & inside[1],
        periodic, found[0],
    )
    behind = Partners(
        (-g[0], -g[1]), ratio[1], ratio[0], inside[1], inside[0], seen[1] & inside[1],
        seen[0] & inside[0], periodic, found[1],
    )
    return ahead, behind


@dataclass(frozen=True, slots=True)
class Verdict:
    """The best weight for a displacement and what the features say for it."""

    llr: float  # log P(features | ghost at g with this weight) / P(features | no ghost)
    weight: float  # the profiled ratio
    explained: int  # features with their partner
    expected: int  # features whose partner should be visible
    mains: npt.NDArray[np.bool_]  # features with their ghost at +g


def explained_at(p: Partners, w: float) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(features with a ghost of weight about ``w`` at +g, features that are such a ghost)."""
    low = RATIO_SLACK * w
    forward = p.seen_ahead & (p.forward >= low) & (p.forward <= RATIO_MAX) & ~p.periodic
    backward = (
        p.seen_behind
        & (p.backward >= 1 / RATIO_MAX)
        & (p.backward <= 1 / low)
        & ~p.periodic
    )
    return forward, backward


def chance_rates(null: list[Partners], features: Features) -> FloatArray:
    """Per weight, how often a feature has a partner at displacements with no ghost."""
    rates = []
    for w in WEIGHTS:
        hits = total = 0
        for p in null:
            f, b = explained_at(p, w)
            hits += int(((f ^ b) & (p.ahead | p.behind)).sum())
            total += int((p.ahead | p.behind).sum())
        rates.append((hits + 0.5) / (total + 1.0))
    return np.asarray(rates)


def judge(p: Partners, features: Features, chance: FloatArray) -> Verdict:
    """Profile the log-likelihood ratio of a ghost at ``p.g`` over the weights."""
    h = np.abs(features.height)
    floor = SIGNIFICANCE * features.noise
    w = np.asarray(WEIGHTS)[:, None]
    low = RATIO_SLACK * w
    usable = ~p.periodic
    forward = p.seen_ahead & (p.forward >= low) & (p.forward <= RATIO_MAX) & usable
    backward = p.seen_behind & (p.backward >= 1 / RATIO_MAX) & (p.backward <= 1 / low) & usable
    inside = p.ahead | p.behind
    # A feature has its ghost or is one, not both: features with equal partners on both sides
    # are on a lattice or along an edge.
    explained = (forward ^ backward) & inside
    # A feature's ghost should be seen where it would stand out of the noise at this weight;
    # a ghost's feature always should.
    expected = ((p.ahead & (h * w > 1.3 * floor)) | backward) & inside
    p0 = np.clip(chance, 1e-3, 0.9)[:, None]
    p1 = np.where(expected, np.maximum(DETECT, p0), p0)
    terms = np.where(explained, np.log(p1 / p0), np.log((1 - p1) / (1 - p0)))
    llr = np.where(inside, terms, 0.0).sum(axis=1)
    k = int(np.argmax(llr))
    return Verdict(
        float(llr[k]),
        float(WEIGHTS[k]),
        int(explained[k].sum()),
        int(expected[k].sum()),
        forward[k] & ~backward[k] & inside,
    )


def pair_lags(
    features: Features, r_min: float, r_max: float, count: int = 6
) -> list[tuple[float, float]]:
    """The most common vectors (rows, x) from features to weaker ones of the same sign."""
    y, x, h = features.y, features.x, features.height
    if y.size < 2:
        return []
    dy = y[None, :] - y[:, None]
    dx = x[None, :] - x[:, None]
    dist = np.hypot(dy, dx)
    with np.errstate(all="ignore"):
        ratio = h[None, :] / h[:, None]
    low, high = RATIO_SLACK * WEIGHTS[0], RATIO_MAX
    use = (dist >= r_min) & (dist <= r_max) & (ratio >= low) & (ratio <= high)
    i, j = np.nonzero(use)
    if not i.size:
        return []
    reach = math.ceil(r_max) + 1
    hist = np.zeros((2 * reach + 1, 2 * reach + 1))
    iy = np.clip(np.round(dy[i, j]).astype(int) + reach, 0, 2 * reach)
    ix = np.clip(np.round(dx[i, j]).astype(int) + reach, 0, 2 * reach)
    # Each pair votes with the weaker feature's strength (chance pairs of weak features count
    # little), spread over the neighbouring cells.
    np.add.at(hist, (iy, ix), np.minimum(np.abs(h[i]), np.abs(h[j])))
    hist = ndimage.gaussian_filter(hist, 0.8, mode="constant")
    peaks = (hist == ndimage.maximum_filter(hist, size=3)) & (hist > 0)
    py, px_ = np.nonzero(peaks)
    order = np.argsort(-hist[py, px_])[:count]
    out = []
    for k in order:
        cy, cx = py[k] - reach, px_[k] - reach
        near = np.hypot(dy[i, j] - cy, dx[i, j] - cx) <= 1.5
        if near.any():
            out.append((float(np.median(dy[i, j][near])), float(np.median(dx[i, j][near]))))
        else:
            out.append((float(cy), float(cx)))
    return out


def refine(
    features: Features, heights: FloatArray, p: Partners, mains: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """``p.g`` refined to a fraction of a pixel: the median vector from each feature with a
    ghost to the sub-pixel extremum of its ghost (within a pixel of ``+g``); ``p.g`` when no
    ghost is a distinct extremum."""
    ny, nx = heights.shape
    gy, gx = p.g
    found_y, found_x = [], []
    for i in np.flatnonzero(mains):
        sign = 1.0 if features.height[i] > 0 else -1.0
        cy, cx = features.y[i] + gy, features.x[i] + gx
        iy, ix = round(cy), round(cx)
        if not (2 <= iy < ny - 2 and 2 <= ix < nx - 2):
            continue
        patch = sign * heights[iy - 2 : iy + 3, ix - 2 : ix + 3]
        a, b = np.unravel_index(int(np.argmax(patch[1:4, 1:4])), (3, 3))
        a, b = a + 1, b + 1
        dy = float(_vertex(patch[a - 1, b], patch[a, b], patch[a + 1, b]))
        dx = float(_vertex(patch[a, b - 1], patch[a, b], patch[a, b + 1]))
        if patch[a, b] < max(patch[a - 1, b], patch[a + 1, b], patch[a, b - 1], patch[a, b + 1]):
            continue  # not an extremum: a ghost merged with its feature
        found_y.append(iy + a - 2 + dy - features.y[i])
        found_x.append(ix + b - 2 + dx - features.x[i])
    if len(found_y) < 2:
        return p.g
    return (float(np.median(found_y)), float(np.median(found_x)))
