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
candidate ``g`` every feature is looked at: what stands out at ``p + g`` beyond the feature's
own tail (its height at the same distance in other directions, so ghosts that overlap their
feature count too), whether it has the feature's shape, and whether the same is found at
``+-2g`` (a lattice or an edge, not a ghost). A log-likelihood ratio per feature, profiled over
the ghost's weight, compares "it has its ghost, or is one" with "whatever lies there, lies
there by chance", the chance measured on the same frame at offsets where there is no ghost.
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

    flat_weight = weight.ravel()

    def mean_by(index: np.ndarray, values: np.ndarray, n: int) -> FloatArray:
        flat_index = index.ravel()
        total = np.bincount(flat_index, values.ravel() * flat_weight, minlength=n)
        count = np.bincount(flat_index, flat_weight, minlength=n)
        return np.where(count > 0, total / np.maximum(count, 1e-12), 0.0)

    ring = np.zeros(size + 1)
    along_x = np.zeros(power.shape[1])
    along_y = np.zeros(ny // 2 + 1)
    for _ in range(2):
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


#: The fewest periods across the frame for a spectral peak to count as a lattice.
MIN_REPEATS = 5
#: The farthest (pixels) a vetoed lag lies from a lattice translation.
MAX_VETO_PIXELS = 2.0


def lattice_translations(
    power: FloatArray,
    mask: npt.NDArray[np.bool_],
    shape: tuple[int, int],
    reach: int,
    strongest: int = 6,
    tolerance: float = 0.2,
) -> npt.NDArray[np.bool_]:
    """Lags (a ``2 reach + 1`` square, centred) that are translations of the lattice: every
    one of its ``strongest`` Bragg peaks is back in phase there (within ``tolerance`` of a
    cycle and :data:`MAX_VETO_PIXELS`). The Bragg peaks are masked, but what leaks past the
    mask repeats at these lags, and a ghost there would copy the lattice onto itself anyway."""
    ny, nx = shape
    out = np.zeros((2 * reach + 1, 2 * reach + 1), dtype=bool)
    if not mask.any():
        return out
    iy, ix = np.nonzero(mask)
    ky = sfft.fftfreq(ny)[iy]
    kx = sfft.rfftfreq(nx)[ix]
    # A lattice repeats: fewer than :data:`MIN_REPEATS` periods across the frame is the
    # low-frequency content of what is in view (terraces, islands), whose wavefronts would veto
    # whole bands of lags.
    keep = np.hypot(ky, kx) * max(ny, nx) >= MIN_REPEATS
    iy, ix, ky, kx = iy[keep], ix[keep], ky[keep], kx[keep]
    # The strongest bins, one per peak (a bin next to a stronger one belongs to its peak).
    chosen: list[int] = []
    order = np.argsort(-power[iy, ix])
    floor = 0.1 * float(power[iy[order[0]], ix[order[0]]]) if order.size else 0.0
    for k in order:
        if power[iy[k], ix[k]] < floor:
            break  # leakage around the peaks, not the lattice
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
        # Within a fraction of a cycle, and within a few pixels however long the period.
        k = math.hypot(a, b)
        out &= np.abs(cycles - np.round(cycles)) < min(tolerance, MAX_VETO_PIXELS * k)
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
    margin: int  # pixels along the borders where nothing is looked at
    shape: FloatArray  # (features, 8): the height a blob width away around it, over its own
    scale: float  # that blob width (pixels)


#: A feature's height two blob widths away, on both sides of it, stays below this fraction.
COMPACT = 0.6
#: Where a feature's shape is sampled (blob widths from its centre).
_SHAPE = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
#: A ghost is a copy: the cosine similarity of its shape and its feature's is at least this.
SIMILAR = 0.8


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
    fy, fx = ys + dy, xs + dx
    ring = ndimage.map_coordinates(
        heights,
        [
            np.concatenate([fy + sigma * oy for oy, _ in _SHAPE]),
            np.concatenate([fx + sigma * ox for _, ox in _SHAPE]),
        ],
        order=1,
        mode="nearest",
    ).reshape(len(_SHAPE), -1)
    with np.errstate(all="ignore"):
        shape = (ring / np.where(h != 0, h, 1.0)).T
    return Features(fy, fx, h, noise, margin, shape, sigma)


def _vertex(minus: FloatArray, centre: FloatArray, plus: FloatArray) -> FloatArray:
    """Sub-pixel position of a parabola's vertex through three samples, within +-0.5."""
    curvature = minus - 2 * centre + plus
    safe = np.where(curvature != 0, curvature, 1.0)
    return np.clip(np.where(curvature != 0, 0.5 * (minus - plus) / safe, 0.0), -0.5, 0.5)


#: Directions (radians, from the candidate) whose mean is a feature's own tail at that distance.
_AROUND = tuple(math.radians(a) for a in (60, 90, 120, 240, 270, 300))
_AROUND_CS = tuple((math.cos(a), math.sin(a)) for a in _AROUND)


#: Ghost weights (as ratios of band-passed heights) the feature test profiles over.
WEIGHTS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0)
#: Largest height ratio of a ghost to its feature (a second apex as strong as the first, plus
#: noise), and the smallest the feature-pair search considers.
RATIO_MAX = 1.15
RATIO_MIN = 0.06
#: A ghost (or its feature) counts as seen when it stands this many noise scatters out.
SIGNIFICANCE = 3.0


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
    unlike_ahead: npt.NDArray[np.bool_]  # something stands out at +g, but not a copy
    unlike_behind: npt.NDArray[np.bool_]


def partners(
    features: Features, heights: FloatArray, g: tuple[float, float]
) -> tuple[Partners, Partners]:
    """Look at ``+-g`` and ``+-2g`` from every feature: the partners for ``g`` and for ``-g``
    (the same four looks, read the other way round)."""
    ny, nx = heights.shape
    y, x, h = features.y, features.x, features.height
    looks = [(g[0], g[1]), (-g[0], -g[1]), (2 * g[0], 2 * g[1]), (-2 * g[0], -2 * g[1])]
    # Every position looked at, as offsets from the features: each look, then the same
    # distance in the other directions (the feature's own tail there), then, for +-g, the
    # shape around it.
    offsets = []
    for gy, gx in looks:
        offsets.append((gy, gx))
        offsets.extend((s * gx + c * gy, c * gx - s * gy) for c, s in _AROUND_CS)
    sigma = features.scale
    for gy, gx in looks[:2]:
        offsets.extend((gy + sigma * oy, gx + sigma * ox) for oy, ox in _SHAPE)
    table = np.asarray(offsets)
    flat = ndimage.map_coordinates(
        heights,
        [(y[None, :] + table[:, :1]).ravel(), (x[None, :] + table[:, 1:]).ravel()],
        order=1,
        mode="nearest",
    ).reshape(len(offsets), -1)
    n_ring = len(_AROUND_CS) + 1
    values = flat[: len(looks) * n_ring].reshape(len(looks), n_ring, -1)
    tail = values[:, 1:].mean(axis=1)
    found = values[:, 0] - tail  # (4, features)
    around = flat[len(looks) * n_ring :].reshape(2, len(_SHAPE), -1)
    # Shapes compared where the ghost stands apart from its feature (closer, they overlap).
    similar = np.ones((2, y.size), dtype=bool)
    if math.hypot(*g) >= 2.5 * sigma:
        theirs = np.concatenate([found[:2, None, :], around - tail[:2, None, :]], axis=1)
        mine = np.concatenate([np.ones((1, y.size)), features.shape.T], axis=0)
        with np.errstate(all="ignore"):
            cos = np.einsum("kjn,jn->kn", theirs, mine) / (
                np.linalg.norm(theirs, axis=1) * np.linalg.norm(mine, axis=0)
            )
        similar = np.abs(cos) >= SIMILAR
    m = features.margin
    inside = [
        (y + gy >= m) & (y + gy <= ny - 1 - m) & (x + gx >= m) & (x + gx <= nx - 1 - m)
        for gy, gx in looks[:2]
    ]
    seen = np.abs(found) > SIGNIFICANCE * features.noise
    unlike = seen[:2] & ~similar
    seen[:2] &= similar
    with np.errstate(all="ignore"):
        ratio = found / h
    equal = (ratio > 0.5) & (ratio < 2.0) & seen
    periodic = equal[2] | equal[3]
    ahead = Partners(
        g,
        ratio[0],
        ratio[1],
        inside[0],
        inside[1],
        seen[0] & inside[0],
        seen[1] & inside[1],
        periodic,
        found[0],
        unlike[0],
        unlike[1],
    )
    behind = Partners(
        (-g[0], -g[1]),
        ratio[1],
        ratio[0],
        inside[1],
        inside[0],
        seen[1] & inside[1],
        seen[0] & inside[0],
        periodic,
        found[1],
        unlike[1],
        unlike[0],
    )
    return ahead, behind


@dataclass(frozen=True, slots=True)
class Verdict:
    """The best weight for a displacement and what the features say for it."""

    llr: float  # log P(features | ghost at g with this weight) / P(features | no ghost)
    weight: float  # the profiled ratio
    explained: int  # features that speak for the ghost (their own log-ratio above 1)
    expected: int  # features that could speak (partner positions in the frame, no lattice)
    mains: npt.NDArray[np.bool_]  # features with their ghost at +g
    objects: int = 0  # separate objects among the features that speak for it


def rotated_partners(
    features: Features, heights: FloatArray, g: tuple[float, float]
) -> list[Partners]:
    """Partners at ``g`` turned by +-60 and +-120 degrees: the chance of a partner at that
    distance where there is no ghost."""
    out: list[Partners] = []
    for angle in (math.pi / 3, 2 * math.pi / 3):
        c, s = math.cos(angle), math.sin(angle)
        out.extend(partners(features, heights, (s * g[1] + c * g[0], c * g[1] - s * g[0])))
    return out


#: Prior roles of a feature when there is a ghost: it has its ghost, it is one, neither (its
#: counterpart is outside the frame or below the noise).
ROLES = (0.45, 0.35, 0.2)
#: Spread of a ghost's height ratio around the weight (tall features' ghosts look taller).
RATIO_SPREAD = 0.3


def stronger_ahead(p: Partners, features: Features) -> float:
    """How much the features outweigh what stands out at ``+g`` from them: the summed
    ``min(|h|, |partner|)`` (in noise units) of the pairs where the feature is the stronger,
    minus that of the pairs where it is the weaker. A ghost is weaker than its feature."""
    h = np.abs(features.height)
    partner = np.abs(p.ghost)
    pairs = p.seen_ahead & ~p.periodic
    weight = np.minimum(h, partner) / features.noise
    return float(np.sum(np.where(h > partner, weight, -weight)[pairs]))


def hit_rate(null: list[Partners]) -> float:
    """How often something stands out at a displacement with no ghost."""
    hits = total = 0
    for p in null:
        inside = p.ahead
        hits += int(((p.seen_ahead | p.unlike_ahead) & inside).sum())
        total += int(inside.sum())
    return (hits + 0.5) / (total + 1.0)


def judge(p: Partners, features: Features, chance: float) -> Verdict:
    """Profile over the weights the log-likelihood ratio of a ghost at ``p.g``, feature by
    feature: the ratio found at ``+g`` (``r``) and at ``-g`` (``r-``), each with its noise.

    No ghost: ``r`` and ``r-`` are noise around 0, except where, with probability ``chance``,
    something else happens to lie there (uniform over ratios -1 to 2). A ghost of weight ``w``:
    the feature has its ghost (``r`` about ``w``, nothing at ``-g``), is a ghost (``r-`` about
    ``1 / w``, nothing at ``+g``), or shows neither, with the prior :data:`ROLES`. Partners that
    stand out but are not a copy (:data:`SIMILAR`), and features with equal partners at
    ``+-2g`` (a lattice), count as no evidence.
    """
    h = np.abs(features.height)
    s = math.sqrt(1 + 1 / len(_AROUND)) * features.noise / np.maximum(h, 1e-300)
    c = min(max(chance, 1e-3), 0.5)

    def null_density(r: FloatArray) -> FloatArray:
        return (1 - c) * np.exp(-0.5 * (r / s) ** 2) / (s * math.sqrt(2 * math.pi)) + c / 3.0

    def ghost_density(r: FloatArray, mean: FloatArray | float, spread: FloatArray) -> FloatArray:
        return np.exp(-0.5 * ((r - mean) / spread) ** 2) / (spread * math.sqrt(2 * math.pi))

    r = np.nan_to_num(np.clip(p.forward, -1.0, 2.0))
    rb = np.nan_to_num(np.clip(p.backward, -1.0, 100.0))
    rb_clipped = np.clip(rb, -1.0, 2.0)
    q_r, q_rb = null_density(r), null_density(rb_clipped)
    usable = (p.ahead | p.behind) & ~p.periodic
    w = np.asarray(WEIGHTS)[:, None]  # (weights, 1): every weight at once
    main = np.where(
        p.ahead & ~p.unlike_ahead, ghost_density(r, w, np.hypot(s, RATIO_SPREAD * w)) / q_r, 0.0
    )
    # As a ghost, the feature's stronger original is 1/w times it at -g.
    ghost = np.where(
        p.behind & ~p.unlike_behind,
        ghost_density(rb, 1.0 / w, np.hypot(s, RATIO_SPREAD) / w) / q_rb,
        0.0,
    )
    # Either role also needs nothing at the other side.
    nothing = 1.0 / (s * math.sqrt(2 * math.pi))
    main *= np.where(p.behind, np.exp(-0.5 * (rb_clipped / s) ** 2) * nothing / q_rb, 1.0)
    ghost *= np.where(p.ahead, np.exp(-0.5 * (r / s) ** 2) * nothing / q_r, 1.0)
    terms = np.where(usable, np.log(ROLES[0] * main + ROLES[1] * ghost + ROLES[2]), 0.0)
    llr = terms.sum(axis=1)
    k = int(np.argmax(llr))
    support = terms[k] > 1.0
    return Verdict(
        float(llr[k]),
        float(WEIGHTS[k]),
        int(support.sum()),
        int(usable.sum()),
        support & (ROLES[0] * main[k] > ROLES[1] * ghost[k]),
        objects(features, support, 1.5 * math.hypot(*p.g)),
    )


def objects(features: Features, chosen: npt.NDArray[np.bool_], reach: float) -> int:
    """How many separate objects the ``chosen`` features belong to: groups of features closer
    than ``reach`` to one another (a feature and its ghost, the lobes of one molecule) count
    once, since they say nothing independent about a common offset."""
    idx = np.flatnonzero(chosen)
    if idx.size < 2:
        return int(idx.size)
    y, x = features.y[idx], features.x[idx]
    close = np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :]) <= reach
    group = np.arange(idx.size)
    for _ in range(idx.size):  # label propagation: each takes the smallest label it touches
        updated = np.where(close, group[None, :], idx.size).min(axis=1)
        if np.array_equal(updated, group):
            break
        group = updated
    return int(np.unique(group).size)


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
    low, high = RATIO_MIN, RATIO_MAX
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
