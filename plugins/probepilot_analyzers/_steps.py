"""The ghost a second apex leaves at a step edge, for :mod:`probepilot_analyzers.double_tip`.

Steps are where a double tip shows even when nothing else does: a clean terrace or an
unresolved lattice gives the ghost nothing to copy, a monatomic step (0.2-0.35 nm) does. The
two-apex current formula is far from linear there (``2 kappa h`` is about 5), and the image of
a step taken uphill is always the same: the edge the first apex to reach the upper terrace
draws (nearly the whole step height), then, ``|g . n|`` further uphill (``g`` the ghost
displacement, ``n`` the step's normal), a small second edge where the other apex reaches it:
``ln(1 + w) / 2 kappa`` (2-32 pm for ``w`` from 0.05 to 1) when the main apex led, or
``ln(1 + 1/w) / 2 kappa`` (32-140 pm) when the second one did. Either way the small edge lies
on the upper side, is parallel to the step, and is a fraction of its height, where a second
real step (a staircase) is as high as the first and lies on either side.

Method: step-edge pixels (non-maximum-suppressed gradient, long connected chains, so that
adsorbates do not count), the height profile across each along its own uphill normal, and the
median over all of them of the profile's slope (the median, so that another step or an
adsorbate crossing some profiles does not count). A second edge is a separate peak of that
median slope uphill of the main one, a dip between them, measured against the slope's scatter
over the profiles; its height ratio to the main edge must be that of a ghost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from probepilot.model import FloatArray

#: An edge pixel's gradient stands this many robust scatters of the gradient above its median.
EDGE_THRESHOLD = 12.0
#: An edge pixel's gradient is above this fraction of the strongest edges' (90th percentile):
#: an edge this much weaker than the steps could be a ghost edge.
MAIN_EDGE = 0.75
#: The fewest connected edge pixels that make a step (fewer: an adsorbate's rim).
MIN_EDGE_PIXELS = 25
#: The fewest profiles that must see a lag for the median there to count.
MIN_PROFILES = 15
#: Height ratios of a ghost edge to its step (140 pm of a 200 pm step at most): above the
#: upper bound it is a second real step.
RATIO_RANGE = (0.02, 0.75)
#: The most profiles taken across the edges.
MAX_PROFILES = 240
#: Sampling step of the profiles (pixels).
STEP = 0.5


@dataclass(frozen=True, slots=True)
class StepGhost:
    """What the step edges say: the z-score of the strongest ghost edge (0: none, or no step),
    its distance uphill of the main edge (pixels, along the normal), its height ratio, the
    number of edge pixels, and the edges' common uphill direction (rows, x; a unit vector, or
    zero when the edges face every way)."""

    zscore: float
    shift: float
    ratio: float
    edges: int
    normal: tuple[float, float]


NONE = StepGhost(0.0, 0.0, 0.0, 0, (0.0, 0.0))


def step_ghost(z: FloatArray, r_min: float, r_max: float) -> StepGhost:
    """Look for a ghost edge ``r_min`` to ``r_max`` pixels uphill of the step edges of the
    levelled image ``z``."""
    ny, nx = z.shape
    margin = max(3, round(0.04 * min(ny, nx)))
    if r_max < r_min or min(ny, nx) <= 2 * margin + 2:
        return NONE
    gy = ndimage.gaussian_filter(z, 1.0, order=(1, 0))
    gx = ndimage.gaussian_filter(z, 1.0, order=(0, 1))
    g = np.hypot(gy, gx)
    sample = g[::2, ::2]  # as robust, four times cheaper
    centre = float(np.median(sample))
    scatter = 1.4826 * float(np.median(np.abs(sample - centre)))
    strong = g > centre + EDGE_THRESHOLD * max(scatter, 1e-300)
    strong[:margin] = strong[-margin:] = False
    strong[:, :margin] = strong[:, -margin:] = False
    ys, xs = np.nonzero(strong)
    if ys.size < MIN_EDGE_PIXELS:
        return NONE
    uy, ux = gy[ys, xs] / g[ys, xs], gx[ys, xs] / g[ys, xs]
    # Non-maximum suppression along the gradient: the edge's crest, one pixel wide.
    around = ndimage.map_coordinates(
        g, [np.concatenate([ys + uy, ys - uy]), np.concatenate([xs + ux, xs - ux])], order=1
    ).reshape(2, -1)
    crest = (g[ys, xs] >= around[0]) & (g[ys, xs] >= around[1])
    # The steps themselves, not their ghost edges: a profile from a ghost edge would see its
    # step downhill and nothing uphill.
    if crest.any():
        crest &= g[ys, xs] > MAIN_EDGE * float(np.percentile(g[ys[crest], xs[crest]], 90))
    edge = np.zeros(z.shape, dtype=bool)
    edge[ys[crest], xs[crest]] = True
    labels, count = ndimage.label(edge, structure=np.ones((3, 3)))
    if count == 0:
        return NONE
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    chains = sizes >= MIN_EDGE_PIXELS
    chains[0] = False
    keep = chains[labels[ys, xs]] & crest
    ys, xs, uy, ux = ys[keep], xs[keep], uy[keep], ux[keep]
    if ys.size < MIN_EDGE_PIXELS:
        return NONE
    edges = int(ys.size)
    if edges > MAX_PROFILES:  # evenly spread over the edges: the median needs no more
        pick = np.linspace(0, edges - 1, MAX_PROFILES).round().astype(np.intp)
        ys, xs, uy, ux = ys[pick], xs[pick], uy[pick], ux[pick]
    reach = math.ceil(r_max) + 1
    t = np.arange(-reach, reach + STEP / 2, STEP)
    py = ys[:, None] + uy[:, None] * t[None, :]
    px = xs[:, None] + ux[:, None] * t[None, :]
    inside = (py >= 0) & (py <= ny - 1) & (px >= 0) & (px <= nx - 1)
    heights = ndimage.map_coordinates(z, [py.ravel(), px.ravel()], order=1, mode="nearest")
    profiles = np.where(inside, heights.reshape(py.shape), np.nan)
    slopes = np.diff(profiles, axis=1) / STEP  # per pixel, uphill positive
    lag = 0.5 * (t[1:] + t[:-1])
    seen = np.sum(np.isfinite(slopes), axis=0)
    usable = seen >= MIN_PROFILES
    if not usable[np.abs(lag) <= 1.0].any():
        return NONE
    median = np.zeros(lag.size)
    spread = np.full(lag.size, np.inf)
    median[usable] = _column_medians(slopes[:, usable], seen[usable])
    deviation = np.abs(slopes[:, usable] - median[usable])
    # Standard error of a median: 1.2533 sigma / sqrt(n), sigma from the MAD.
    mad = _column_medians(deviation, seen[usable])
    spread[usable] = 1.2533 * 1.4826 * mad / np.sqrt(seen[usable])
    centre_k = int(np.argmin(np.abs(lag)))
    main = float(median[np.abs(lag) <= 1.0].max())
    if not main > 0:
        return NONE
    # The main edge's lobe, then the first lag uphill where a separate peak could start.
    end = centre_k
    while end < lag.size - 1 and median[end + 1] > 0.3 * main:
        end += 1
    best = NONE
    # The steps' common uphill direction; none where they face every way (an island's rim).
    mean_y, mean_x = float(np.mean(uy)), float(np.mean(ux))
    length = math.hypot(mean_y, mean_x)
    normal = (mean_y / length, mean_x / length) if length >= 0.5 else (0.0, 0.0)
    for k in range(end + 1, lag.size - 1):
        if not (r_min <= lag[k] <= r_max and usable[k]):
            continue
        peak = median[k]
        if not (peak > 0 and peak >= median[k - 1] and peak >= median[k + 1]):
            continue
        if median[end : k + 1].min() >= 0.5 * peak:
            continue  # no dip: the main edge's own tail
        ratio = peak / main
        score = float(peak / spread[k])
        if RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1] and score > best.zscore:
            best = StepGhost(score, float(lag[k]), float(ratio), edges, normal)
    return best if best.edges else replace(NONE, edges=edges, normal=normal)


def _column_medians(values: FloatArray, counts: np.ndarray) -> FloatArray:
    """The median of each column's finite values (``counts`` of them, at least one): NaNs
    sort last, so one sort does what ``nanmedian`` does column by column."""
    ordered = np.sort(values, axis=0)
    columns = np.arange(values.shape[1])
    low = ordered[(counts - 1) // 2, columns]
    high = ordered[counts // 2, columns]
    return np.asarray(0.5 * (low + high))
