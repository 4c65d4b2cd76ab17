"""Double-tip detection from the ghost copy a second apex draws of everything it images.

Physics. With two mini-tips the tunnelling currents add, so the constant-current image is
``z2(x) = (1/2k) ln(exp(2k z(x)) + w exp(2k z(x + d)))``: every feature appears twice, the
second time displaced by ``g = -d`` (``d`` the second apex's lateral offset from the main one)
and weaker by the current ratio ``w`` of the two apexes. Periodic lattices hide this (a lattice
plus a shifted copy of itself is the same lattice), so the evidence is in what is not periodic.

Method (no training; a few constants calibrated on simulated frames, see below):

1. **Without the lattice.** The levelled image's spectrum (of its periodic component, so the
   frame's borders leave no cross of spurious power) loses every Bragg peak.
2. **The cepstrum** (:func:`~probepilot_analyzers._ghosts.power_cepstra`): a ghost multiplies
   the spectrum by ``|1 + w exp(-i k.g)|^2``, fringes whose logarithm transforms back into a
   peak at ``+-g``, whatever the surface. The smooth fall of the spectrum and what scanning adds
   along the axes are fitted and removed first; peaks are measured against the scatter of the
   search area (compact peaks only: ridges from step edges do not count). Strong on any surface
   with structure (molecular islands, steps, noise recorded with the image), blind to where
   the ghost falls on a lattice translation.
3. **Feature pairs** (:func:`~probepilot_analyzers._ghosts.judge`): compact features (local
   extrema of the Hessian's determinant, signed, lattice removed) are checked one by one for a
   weaker copy of the same sign at ``+g`` (or a stronger one at ``-g``), beyond their own tail
   (the same distance in other directions), and not at ``+-2g`` as well (lattices and edges
   repeat, ghosts do not). A log-likelihood ratio, profiled over the ghost's weight, compares
   "every feature whose ghost would stand out of the noise has one" with the chance of a
   partner at an arbitrary offset, measured on the same frame. Strong on sparse adsorbates.
4. **Candidates** ``g`` come from both: the cepstrum's strongest compact peaks and the most
   common feature-to-weaker-feature vectors; the one with the most combined evidence wins. The
   weight follows from the feature / ghost heights through the two-apex formula.
5. **Probability**: a logistic function of the feature evidence, the cepstrum peak at ``g``,
   the strongest cepstrum peak anywhere and the weight, calibrated so that 0.5 separates single
   from double on simulated frames and on simulated single-tip frames turned double by the
   two-apex formula (training seeds; the benchmark's held-out frames use other seeds, sizes,
   noise levels, scan directions and rotations).

Limits (``benchmarks/bench_analyzers_double_tip.py`` measures them): a perfect lattice with no
defect, step or adsorbate in view shows no ghost, and the detector then says P(double) is low
rather than guessing; ghosts closer than ``min_offset`` merge with their features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from probepilot.model import Finding, FloatArray, Frame
from probepilot_analyzers import _ghosts as gh
from probepilot_analyzers._findings import finite, guarded, scanner_vector
from probepilot_analyzers._image import level, prepare
from probepilot_analyzers._spectral import blob_and_height_maps, bragg_mask, periodic_spectrum
from probepilot_analyzers.options import DoubleTipOptions

#: Decay constant of the tunnelling current for a 4.5 eV barrier (1/m): sqrt(2 m phi) / hbar.
KAPPA = 1.0867e10
#: Logistic calibration of P(double): intercept, then the coefficients of sqrt(feature
#: log-likelihood ratio), the cepstrum's z-score at the offset, the strongest cepstrum z-score
#: anywhere, and the weight. See :func:`probability`.
CALIBRATION = (-2.982, 0.518, 0.304, 0.25, -0.487)
#: Features that must agree on an offset before their evidence counts.
MIN_PAIRS = 3
#: The cepstrum is trusted from this many pixels out (closer, the feature's own shape dominates).
CEPSTRUM_MIN_LAG = 3.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the frame says about a ghost: the best displacement ``g`` (rows, x, pixels: where a
    feature's ghost lies relative to it) and the numbers :func:`probability` weighs."""

    g: tuple[float, float]
    llr: float  # feature log-likelihood ratio at g (0: no feature evidence)
    explained: int  # features with a partner at g
    expected: int  # features whose partner should be visible
    weight: float  # current ratio of the second apex, 0 when unknown
    cepstrum: float  # cepstrum z-score at g
    cepstrum_best: float  # strongest cepstrum z-score anywhere
    features: int
    lattice_bins: int

    @property
    def found(self) -> bool:
        return self.g != (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class DoubleTipResult:
    """What :func:`detect` found. Offsets are in pixels along x and along the rows."""

    probability: float
    offset: tuple[float, float]  # second apex relative to the main one (x, rows), pixels
    weight: float  # current ratio of the second apex to the main one, in (0, 1]; 0: unknown
    votes: float  # fraction of the features expected to show a ghost that do
    pairs: int  # features with a partner at the offset
    features: int  # compact features in the frame
    peak: float  # cepstrum z-score at the offset
    lattice_bins: int  # Fourier bins removed as lattice
    llr: float = 0.0  # feature log-likelihood ratio


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


def _feature_term(llr: float, explained: int) -> float:
    """The feature evidence the logit uses: ``sqrt(llr)``, once at least :data:`MIN_PAIRS`
    features agree (one or two pairs are as often two neighbouring adsorbates)."""
    return math.sqrt(max(llr, 0.0)) if explained >= MIN_PAIRS else 0.0


def _candidate_score(llr: float, explained: int, cepstrum: float) -> float:
    """The offset-dependent part of the logit: how candidates compete."""
    return CALIBRATION[1] * _feature_term(llr, explained) + CALIBRATION[2] * max(cepstrum, 0.0)


def _pixel_weight(heights: FloatArray, g: tuple[float, float], noise: float) -> float:
    """The ghost's height ratio from the pixels that stand out: the slope of ``h(x + g)``
    against ``h(x)`` where ``|h(x)|`` is large and larger than ``|h(x + g)|``."""
    gy, gx = round(g[0]), round(g[1])
    ny, nx = heights.shape
    if abs(gy) >= ny or abs(gx) >= nx:
        return 0.0
    a = heights[max(0, -gy) : ny - max(0, gy), max(0, -gx) : nx - max(0, gx)]
    b = heights[max(0, gy) : ny - max(0, -gy), max(0, gx) : nx - max(0, -gx)]
    strong = (np.abs(a) > 5 * noise) & (np.abs(a) > np.abs(b))
    if strong.sum() < 4:
        return 0.0
    den = float(np.sum(a[strong] ** 2))
    return float(np.clip(np.sum(a[strong] * b[strong]) / den, 0.0, 1.0)) if den > 0 else 0.0


def _orientation(heights: FloatArray, g: tuple[float, float]) -> float:
    """Positive when the copy at ``+g`` is the weaker one: ``sum h(x) h(x+g) (|h(x)| -
    |h(x+g)|)`` (the feature is stronger than its ghost)."""
    shifted = np.roll(heights, (-round(g[0]), -round(g[1])), axis=(0, 1))
    return float(np.sum(heights * shifted * (np.abs(heights) - np.abs(shifted))))


def evidence(
    z: FloatArray,
    pixel: tuple[float, float],
    *,
    feature_size: float = 0.3e-9,
    max_offset: float = 5e-9,
    min_offset: float = 0.4e-9,
    kappa: float = KAPPA,
) -> Evidence:
    """Look for a ghost copy in the levelled image ``z`` (m; pixel sizes in m).

    :param feature_size: Gaussian width (m) of the features to look at (atomic adsorbates:
        0.3 nm); clipped to 1-8 pixels.
    :param max_offset: largest apex separation considered (m); at most a quarter of the frame.
    :param min_offset: smallest apex separation considered (m); at least two pixels.
    :param kappa: decay constant of the tunnelling current (1/m), for the weight.
    """
    ny, nx = z.shape
    px = math.sqrt(pixel[0] * pixel[1])
    sigma = float(np.clip(feature_size / px, 1.0, 8.0))
    spectrum = periodic_spectrum(z)
    power = spectrum.real**2 + spectrum.imag**2
    mask = bragg_mask(spectrum, ny)
    spectrum[mask] = 0.0
    lattice_bins = int(mask.sum())
    r_min = max(2.0, min_offset / px)
    r_max = min(max_offset / px, min(ny, nx) / 4)
    nothing = Evidence((0.0, 0.0), 0.0, 0, 0, 0.0, 0.0, 0.0, 0, lattice_bins)
    if r_max < r_min:
        return nothing
    blobs, heights = blob_and_height_maps(spectrum, (ny, nx), sigma)
    uniform, weighted = gh.power_cepstra(power, mask, (ny, nx))
    c_min = max(r_min, CEPSTRUM_MIN_LAG)
    reach = gh.lag_reach(uniform.values.shape, r_max)
    veto = gh.lattice_translations(power, mask, (ny, nx), reach)
    lag_sets = [
        gh.cepstrum_lags(c, c_min, r_max, count=4, veto=veto) for c in (uniform, weighted)
    ]
    cepstrum_best = max((lags.zscores[0] for lags in lag_sets if lags.zscores), default=0.0)
    feats = gh.find_features(blobs, heights, sigma)

    def cepstrum_at(g: tuple[float, float]) -> float:
        return max(gh.lag_score(lags, g) for lags in lag_sets) if r_min <= c_min else 0.0

    chance = np.zeros(len(gh.WEIGHTS))
    if feats.y.size:
        radius = 0.5 * (r_min + r_max)
        null = []
        for k in range(3):
            angle = 0.37 + k * math.pi / 3
            null.extend(gh.partners(feats, heights, (radius * math.sin(angle),
                                                      radius * math.cos(angle))))
        chance = gh.chance_rates(null, feats)
    candidates = [lag for lags in lag_sets for lag in lags.lags]
    candidates += gh.pair_lags(feats, r_min, r_max, count=4)
    best: tuple[float, gh.Partners | None, gh.Verdict | None, tuple[float, float]] | None = None
    seen: set[tuple[int, int]] = set()
    for g in candidates:
        key = (round(g[0] * 2), round(g[1] * 2))
        if key in seen or (-key[0], -key[1]) in seen:
            continue
        seen.add(key)
        if not r_min - 0.5 <= math.hypot(*g) <= r_max + 1.0:
            continue
        cz = cepstrum_at(g)
        if not feats.y.size:
            score = _candidate_score(0.0, 0, cz)
            if best is None or score > best[0]:
                best = (score, None, None, g)
            continue
        for p in gh.partners(feats, heights, g):
            v = gh.judge(p, feats, chance)
            score = _candidate_score(v.llr, v.explained, cz)
            if best is None or score > best[0]:
                best = (score, p, v, p.g)
    if best is None:
        return replace(nothing, cepstrum_best=cepstrum_best, features=int(feats.y.size))
    _, p, v, g = best
    if p is None or v is None or v.explained == 0:
        # Cepstrum only: the sign from which copy is the weaker one.
        if _orientation(heights, g) < 0:
            g = (-g[0], -g[1])
        weight = _pixel_weight(heights, g, feats.noise)
        return Evidence(g, 0.0, 0, 0, weight, cepstrum_at(g), cepstrum_best, int(feats.y.size),
                        lattice_bins)
    refined = gh.refine(feats, heights, p, v.mains)
    if refined != p.g:
        p2 = gh.partners(feats, heights, refined)[0]
        v2 = gh.judge(p2, feats, chance)
        if v2.llr >= v.llr - 1.0:
            p, v = p2, v2
    mains = feats.height[v.mains]
    ghosts = p.ghost[v.mains]
    weight = 0.0
    if mains.size:
        polarity = np.sign(mains)
        ratios = weight_from_heights(polarity * mains, polarity * ghosts, kappa)
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        weight = float(np.clip(np.median(ratios), 0.0, 1.0)) if ratios.size else 0.0
    return Evidence(p.g, max(v.llr, 0.0), v.explained, v.expected, weight, cepstrum_at(p.g),
                    cepstrum_best, int(feats.y.size), lattice_bins)


def probability(ev: Evidence) -> float:
    """P(double) from the evidence: a logistic function calibrated so that 0.5 is the
    decision threshold."""
    b0, b_llr, b_cep, b_best, b_weight = CALIBRATION
    logit = (
        b0
        + _candidate_score(ev.llr, ev.explained, ev.cepstrum)
        + b_best * max(ev.cepstrum_best, 0.0)
        + b_weight * ev.weight
    )
    return 1.0 / (1.0 + math.exp(-min(max(logit, -50.0), 50.0)))


def detect(
    z: FloatArray,
    pixel: tuple[float, float],
    *,
    feature_size: float = 0.3e-9,
    max_offset: float = 5e-9,
    min_offset: float = 0.4e-9,
    kappa: float = KAPPA,
) -> DoubleTipResult:
    """P(double), the second apex's offset and weight in the levelled image ``z`` (m; pixel
    sizes in m); see :func:`evidence` for the parameters."""
    ev = evidence(
        z, pixel, feature_size=feature_size, max_offset=max_offset, min_offset=min_offset,
        kappa=kappa,
    )
    p = probability(ev) if ev.found else 0.0
    return DoubleTipResult(
        p,
        (-ev.g[1], -ev.g[0]),  # the ghost sits at -d: the second apex is at -g
        ev.weight,
        ev.explained / ev.expected if ev.expected else 0.0,
        ev.explained,
        ev.features,
        ev.cepstrum,
        ev.lattice_bins,
        ev.llr,
    )


# --------------------------------------------------------------------------------------------
# The analyzer


class DoubleTipAnalyzer:
    """``double_tip``: P(double), the second apex's offset (m) and its weight, per frame.

    The finding's ``confidence`` is P(double). ``values``: ``p_double``; ``offset_x``,
    ``offset_y`` (m, scanner frame: where the second apex sits relative to the main one, so
    ghosts appear displaced by minus this); ``separation`` (m); ``weight`` (current ratio of the
    second apex to the main one, 0 when unknown); ``pairs`` (features with a ghost at the
    offset) and ``features`` (compact features in the frame); ``status`` (``"ok"``).
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
            min_offset=opts.min_offset,
            kappa=kappa,
        )
        p = finite(result.probability)
        dx, dy = scanner_vector(frame, *result.offset)
        separation = math.hypot(dx, dy)
        if result.offset == (0.0, 0.0):
            message = f"no ghost copy found (P(double) {p:.2f})"
        else:
            verdict = "double tip" if p >= opts.threshold else "probably single"
            pairs = (
                f"{result.pairs} of {result.features} features have a ghost"
                if result.pairs
                else "no feature pairs"
            )
            message = (
                f"{verdict}: P(double) {p:.2f}; second apex {separation * 1e9:.2f} nm away at "
                f"({dx * 1e9:+.2f}, {dy * 1e9:+.2f}) nm, weight {result.weight:.2f}; {pairs}, "
                f"cepstrum peak {result.peak:.1f} sigma"
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
