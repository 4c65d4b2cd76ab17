"""Double-tip detection from the ghost copy a second apex draws of everything it images.

Physics. With two mini-tips the tunnelling currents add, so the constant-current image is
``z2(x) = (1/2k) ln(exp(2k z(x)) + w exp(2k z(x + d)))``: every feature appears twice, the
second time displaced by ``g = -d`` (``d`` the second apex's lateral offset from the main one)
and weaker by the current ratio ``w`` of the two apexes. Periodic lattices hide this (a lattice
plus a shifted copy of itself is the same lattice), so the evidence is in what is not periodic.

Method (no training; a few constants calibrated on simulated frames, see below):

1. **Without the lattice.** The levelled image's spectrum (of its periodic component, so the
   frame's borders leave no cross of spurious power) loses every Bragg peak. The features are
   looked for without anything that stands out of its ring of frequencies; the cepstrum loses
   only the sharp peaks and the streaks a step edge or line noise draws out of the origin, as a
   ghost's fringes cross all the rest (anisotropic texture included) too.
2. **The cepstrum** (:func:`~probepilot_analyzers._ghosts.power_cepstra`): a ghost multiplies
   the spectrum by ``|1 + w exp(-i k.g)|^2``, fringes whose logarithm transforms back into a
   peak at ``+-g``, whatever the surface. The smooth fall of the spectrum and what scanning adds
   along the axes are fitted and removed first; peaks are measured against the scatter of the
   search area (compact peaks only: ridges from step edges do not count). Strong on any surface
   with structure (molecular islands, steps, noise recorded with the image), blind to where
   the ghost falls on a lattice translation.
3. **Feature pairs** (:func:`~probepilot_analyzers._ghosts.judge`): compact features (local
   extrema of the Hessian's determinant, signed, lattice removed, not along edges) are checked
   one by one for a copy of their shape at ``+g`` (their ghost, weaker) or at ``-g`` (they are
   the ghost), beyond their own tail, and not at ``+-2g`` as well (lattices and edges repeat,
   ghosts do not). A log-likelihood ratio, profiled over the ghost's weight, weighs each
   feature's partner against the chance of one at an offset with no ghost (measured on the
   same frame, also at the candidate's distance in other directions). It counts only when
   features of at least two separate objects agree (the lobes of one molecule pair up too).
   Strong on sparse adsorbates.
4. **Step edges** (:func:`~probepilot_analyzers._steps.step_ghost`): where a frame shows
   nothing a ghost could copy but a step, the step shows it: the second apex to reach the
   upper terrace draws a small second edge parallel to the step, a fraction of its height,
   always uphill of it (the median slope across all the step's pixels finds it). It says how
   far apart the apexes are across the step, not along it.
5. **Candidates** ``g`` come from the cepstrum's strongest compact peaks and the most common
   feature-to-weaker-feature vectors; the one with the most combined evidence wins. The
   weight follows from the feature / ghost heights through the two-apex formula.
6. **Probability**: a logistic function of the feature evidence, the cepstrum peak at ``g``,
   the strongest cepstrum peak anywhere, the weight and the ghost edge at the steps,
   calibrated so that 0.5 separates single from double on simulated frames and on simulated
   single-tip frames turned double by the two-apex formula (the tuning sets of
   ``benchmarks/bench_analyzers_double_tip.py --calibrate``; the benchmark's held-out frames
   use other seeds, sizes, noise levels, scan directions and rotations). When too few
   features agree, which copy is the ghost (the weaker one) and its weight are read from the
   band-passed pixels themselves.
7. **Earlier frames.** A ghost lies at the same offset (in the scanner's metres) in every
   frame the same apex takes, while chance pairs of neighbouring adsorbates do not repeat. The
   analyzer remembers each frame's strongest feature evidence (its two best offsets), and where
   this frame's features speak for an offset that one of the last three frames of the history
   it is given spoke for too (log-likelihood ratios of at least 3 in both), their evidence
   adds up, and their objects count as separate ones. They are: only frames of other areas
   count, as a frame of the same area repeats the same neighbouring adsorbates. A sparse frame
   with one adsorbate and its ghost is no proof; three such frames in a row are. Only frames
   the analyzer itself saw count, and only where this frame agrees: after a conditioning
   changed the apex, the old offset finds no pairs in the new frames.

Limits (``benchmarks/bench_analyzers_double_tip.py`` measures them): a perfect lattice with no
defect, step or adsorbate in view shows no ghost (on a resolved hexagonal lattice the three
first-order Bragg peaks lose their equal strength, but drift and the feedback's lag do that
too, about as much: it is not used), and the detector then says P(double) is low
rather than guessing; ghosts weaker than about a fifth of the main apex's current are lost in
the image's own structure; one or two feature pairs are as often neighbouring adsorbates as a
ghost; ghosts closer than ``min_offset`` merge with their features. With two equal apexes
either may be called the second one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from probepilot.model import Finding, FloatArray, Frame, ScanArea
from probepilot_analyzers import _ghosts as gh
from probepilot_analyzers._findings import finite, frame_history, guarded, scanner_vector
from probepilot_analyzers._image import level, prepare
from probepilot_analyzers._spectral import (
    blob_and_height_maps,
    bragg_mask,
    peak_mask,
    periodic_spectrum,
    streaks,
)
from probepilot_analyzers._steps import NONE as NO_STEP
from probepilot_analyzers._steps import StepGhost, step_ghost
from probepilot_analyzers.options import DoubleTipOptions

#: Decay constant of the tunnelling current for a 4.5 eV barrier (1/m): sqrt(2 m phi) / hbar.
KAPPA = 1.0867e10
#: Logistic calibration of P(double): intercept, then the coefficients of sqrt(feature
#: log-likelihood ratio), the cepstrum's z-score at the offset, the strongest cepstrum z-score
#: anywhere, the weight, and the z-score of a ghost edge at the steps above 5. See
#: :func:`probability`.
CALIBRATION = (-2.428, 0.691, 0.225, 0.206, -1.185, 0.16)
#: The closest (pixels) a ghost edge may lie to its step (closer, it merges with the edge).
STEP_MIN_LAG = 2.5
#: The z-score of a ghost edge from which it counts (see :func:`_step_term`).
STEP_FLOOR = 5.0
#: Separate objects whose features must agree on an offset before their evidence counts.
MIN_OBJECTS = 2
#: The cepstrum is trusted from this many pixels out (closer, the feature's own shape dominates).
CEPSTRUM_MIN_LAG = 3.0
#: How far (m, at least 1.5 pixels) a ghost offset may lie from an earlier frame's and agree.
HISTORY_TOLERANCE = 0.15e-9
#: Earlier frames whose feature evidence the analyzer weighs, and the offsets kept per frame
#: (its strongest: every offset kept is one more chance for a chance pair to agree).
HISTORY_FRAMES = 3
REMEMBER = 2
#: The least feature log-likelihood ratio at an offset, in the earlier frame and in this one,
#: for frames to add their evidence. Set on simulated frame sequences (10 nm at 64 pixels,
#: 20 nm at 128, seeds apart from every benchmark's): frames called double went from 6 % to
#: 10 % and from 62 % to 70 % of the double tips' frames, and from 1.0 % to 1.0 % and from
#: 6.7 % to 7.3 % of the good tips' (a threshold of 0 gave 15 % and 76 %, but 2.1 % and 15 %).
MIN_LLR = 3.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the frame says about a ghost: the best displacement ``g`` (rows, x, pixels: where a
    feature's ghost lies relative to it) and the numbers :func:`probability` weighs."""

    g: tuple[float, float]
    llr: float  # feature log-likelihood ratio at g (0: no feature evidence)
    explained: int  # features that speak for a ghost at g
    objects: int  # separate objects among them
    expected: int  # features that could speak
    weight: float  # current ratio of the second apex, 0 when unknown
    cepstrum: float  # cepstrum z-score at g
    cepstrum_best: float  # strongest cepstrum z-score anywhere
    features: int
    lattice_bins: int
    earlier: int = 0  # earlier frames whose features agree on g (their share is in llr, objects)
    seen: tuple[Seen, ...] = ()  # this frame's own feature evidence, for the next frames
    steps: StepGhost = NO_STEP  # the ghost edge at the step edges, if any

    @property
    def found(self) -> bool:
        """Whether anything speaks for a ghost: an offset, or a ghost edge at a step."""
        return self.g != (0.0, 0.0) or self.steps.zscore > STEP_FLOOR


@dataclass(frozen=True, slots=True)
class Seen:
    """Feature evidence for a ghost at ``g`` (rows, x, pixels; or metres in the scanner frame
    once remembered) from one frame alone: its log-likelihood ratio and the objects behind it."""

    g: tuple[float, float]
    llr: float
    objects: int


class Total(NamedTuple):
    """Feature evidence for one offset over this frame and the earlier ones that agree."""

    llr: float
    objects: int
    earlier: int  # earlier frames that agree


def _recall(
    remembered: Sequence[Sequence[Seen]], g: tuple[float, float], tolerance: float
) -> Total:
    """What earlier frames (one list each, offsets in this frame's pixels) say for a ghost at
    ``g``: the sum of each frame's best agreeing evidence (either sign: with comparable apexes
    either copy may look like the ghost)."""
    llr, objects, frames = 0.0, 0, 0
    for earlier in remembered:
        near = [
            m
            for m in earlier
            if min(math.dist(m.g, g), math.dist(m.g, (-g[0], -g[1]))) <= tolerance
        ]
        if near:
            best = max(near, key=lambda m: m.llr)
            llr, objects, frames = llr + best.llr, objects + best.objects, frames + 1
    return Total(llr, objects, frames)


@dataclass(frozen=True, slots=True)
class DoubleTipResult:
    """What :func:`detect` found. Offsets are in pixels along x and along the rows."""

    probability: float
    offset: tuple[float, float]  # second apex relative to the main one (x, rows), pixels
    weight: float  # current ratio of the second apex to the main one, in (0, 1]; 0: unknown
    votes: float  # fraction of the features that could speak for the ghost that do
    pairs: int  # features with a partner at the offset
    features: int  # compact features in the frame
    peak: float  # cepstrum z-score at the offset
    lattice_bins: int  # Fourier bins removed as lattice
    llr: float = 0.0  # feature log-likelihood ratio (earlier frames' share included)
    earlier: int = 0  # earlier frames whose features agree on the offset
    seen: tuple[Seen, ...] = ()  # this frame's own feature evidence (rows, x pixels)
    steps: StepGhost = NO_STEP  # the ghost edge at the steps (shift in pixels)


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


def _feature_term(llr: float, objects: int) -> float:
    """The feature evidence the logit uses: ``sqrt(llr)``, once features of at least
    :data:`MIN_OBJECTS` separate objects agree (one or two pairs are as often two neighbouring
    adsorbates, or the lobes of a molecule)."""
    return math.sqrt(max(llr, 0.0)) if objects >= MIN_OBJECTS else 0.0


def _offset_score(ev: Evidence) -> float:
    """What the evidence at the offset ``ev.g`` adds to the logit."""
    return _candidate_score(ev.llr, ev.objects, ev.cepstrum)


def _step_term(steps: StepGhost) -> float:
    """The step edges' evidence the logit uses: how far the ghost edge's z-score stands above
    :data:`STEP_FLOOR` (the scatter of the median slope leaves chance peaks up to about it)."""
    return max(steps.zscore - STEP_FLOOR, 0.0)


def _candidate_score(llr: float, objects: int, cepstrum: float) -> float:
    """The offset-dependent part of the logit: how candidates compete."""
    return CALIBRATION[1] * _feature_term(llr, objects) + CALIBRATION[2] * max(cepstrum, 0.0)


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
    remembered: Sequence[Sequence[Seen]] = (),
) -> Evidence:
    """Look for a ghost copy in the levelled image ``z`` (m; pixel sizes in m).

    :param feature_size: Gaussian width (m) of the features to look at (atomic adsorbates:
        0.3 nm); clipped to 1-8 pixels.
    :param max_offset: largest apex separation considered (m); at most a quarter of the frame.
    :param min_offset: smallest apex separation considered (m); at least two pixels.
    :param kappa: decay constant of the tunnelling current (1/m), for the weight.
    :param remembered: the feature evidence of earlier frames of the same tip (one sequence
        per frame, offsets converted to this frame's pixels): a ghost is at the same offset in
        every frame, so features of this frame that pair up at an offset where earlier frames'
        features did add their evidence to this frame's (objects in other frames are other
        objects). Only where this frame's own features speak for it: the apex may have changed.
    """
    ny, nx = z.shape
    px = math.sqrt(pixel[0] * pixel[1])
    sigma = float(np.clip(feature_size / px, 1.0, 8.0))
    spectrum = periodic_spectrum(z)
    power = spectrum.real**2 + spectrum.imag**2
    # The features are looked for without all that stands out of its ring of frequencies
    # (lattice peaks, streaks, anisotropic texture); the cepstrum loses only the lattice's sharp
    # peaks and the streaks through the origin, as a ghost's fringes cross the rest too.
    ring = bragg_mask(spectrum, ny)
    streak = streaks(ring, ny)
    peaks = peak_mask(spectrum, ny) & ~streak  # a bumpy streak is no lattice
    mask = peaks | streak
    spectrum[ring] = 0.0
    r_min = max(2.0, min_offset / px)
    r_max = min(max_offset / px, min(ny, nx) / 4)
    nothing = Evidence((0.0, 0.0), 0.0, 0, 0, 0, 0.0, 0.0, 0.0, 0, int(peaks.sum()))
    if r_max < r_min:
        return nothing
    steps = step_ghost(z, max(r_min, STEP_MIN_LAG), r_max)
    blobs, heights = blob_and_height_maps(spectrum, (ny, nx), sigma)
    tolerance = max(1.5, HISTORY_TOLERANCE / px)
    scene = _Scene(heights, gh.find_features(blobs, heights, sigma), 0.0, [], remembered, tolerance)
    # The cepstrum, both weightings, without lattice translations.
    cepstra = gh.power_cepstra(power, mask, (ny, nx))
    reach = gh.lag_reach((ny, nx), r_max)
    veto = gh.lattice_translations(power, peaks, (ny, nx), reach)
    c_min = max(r_min, CEPSTRUM_MIN_LAG)
    scene.lags.extend(gh.cepstrum_lags(c, c_min, r_max, count=4, veto=veto) for c in cepstra)
    best_lag = max((lags.zscores[0] for lags in scene.lags if lags.zscores), default=0.0)
    if scene.features.y.size:
        # The chance that something stands out at an offset where there is no ghost.
        radius = 0.5 * (r_min + r_max)
        null = []
        for k in range(3):
            angle = 0.37 + k * math.pi / 3
            null.extend(
                gh.partners(
                    scene.features, heights, (radius * math.sin(angle), radius * math.cos(angle))
                )
            )
        scene.chance = gh.hit_rate(null)
    candidates = [lag for lags in scene.lags for lag in lags.lags]
    candidates += gh.pair_lags(scene.features, r_min, r_max, count=4)
    candidates += [m.g for earlier in remembered for m in earlier]
    best = _choose(scene, candidates, r_min, r_max)
    seen = tuple(
        m for m in sorted(scene.seen.values(), key=lambda m: -m.llr)[:REMEMBER] if m.llr >= MIN_LLR
    )
    if best is None:
        return replace(
            nothing,
            cepstrum_best=best_lag,
            features=int(scene.features.y.size),
            seen=seen,
            steps=steps,
        )
    p, v, g = best
    if p is None or v is None or scene.total(p.g, v).objects < MIN_OBJECTS or v.llr <= 0:
        found = _by_pixels(scene, g, v, best_lag, nothing.lattice_bins)
    else:
        found = _by_features(scene, p, v, best_lag, nothing.lattice_bins, kappa)
    return replace(found, seen=seen, steps=steps)


@dataclass(slots=True)
class _Scene:
    """What :func:`evidence` works on: the band-passed image, its features, the chance of a
    partner where there is no ghost, the cepstrum peaks, earlier frames' evidence, and this
    frame's own feature evidence per offset as it is judged."""

    heights: FloatArray
    features: gh.Features
    chance: float
    lags: list[gh.Lags]
    remembered: Sequence[Sequence[Seen]] = ()
    tolerance: float = 1.5
    seen: dict[tuple[int, int], Seen] = field(default_factory=dict)

    def cepstrum_at(self, g: tuple[float, float]) -> float:
        return max((gh.lag_score(lags, g) for lags in self.lags), default=0.0)

    def total(self, g: tuple[float, float], v: gh.Verdict) -> Total:
        """This frame's feature evidence for ``g`` plus the earlier frames' that agree (only
        when enough of this frame's own speaks for ``g``). Notes this frame's evidence for the
        frames to come, too."""
        if v.llr > 0 and v.explained > 0:
            key = (round(g[0] * 2), round(g[1] * 2))
            key = max(key, (-key[0], -key[1]))  # g and -g: the same pairs read both ways
            if key not in self.seen or self.seen[key].llr < v.llr:
                self.seen[key] = Seen(g, v.llr, v.objects)
            if self.remembered and v.llr >= MIN_LLR:
                earlier = _recall(self.remembered, g, self.tolerance)
                return Total(v.llr + earlier.llr, v.objects + earlier.objects, earlier.earlier)
        return Total(v.llr, v.objects, 0)

    def score(self, g: tuple[float, float], v: gh.Verdict, cepstrum: float) -> float:
        t = self.total(g, v)
        return _candidate_score(t.llr, t.objects, cepstrum)


_Choice = tuple["gh.Partners | None", "gh.Verdict | None", tuple[float, float]]


def _choose(
    scene: _Scene, candidates: list[tuple[float, float]], r_min: float, r_max: float
) -> _Choice | None:
    """The candidate with the most combined evidence (both signs of each are tried)."""
    feats, heights = scene.features, scene.heights
    scored: list[tuple[float, gh.Partners | None, gh.Verdict | None, tuple[float, float]]] = []
    seen: set[tuple[int, int]] = set()
    for g in candidates:
        key = (round(g[0] * 2), round(g[1] * 2))
        if key in seen or (-key[0], -key[1]) in seen:
            continue
        seen.add(key)
        if not r_min - 0.5 <= math.hypot(*g) <= r_max + 1.0:
            continue
        cz = scene.cepstrum_at(g)
        if not feats.y.size:
            scored.append((_candidate_score(0.0, 0, cz), None, None, g))
            continue
        for p in gh.partners(feats, heights, g):
            v = gh.judge(p, feats, scene.chance)
            scored.append((scene.score(p.g, v, cz), p, v, p.g))
    # The leader again, against the chance of a partner at the same distance in other
    # directions (features of some shapes pair up more at some distances than at others; a
    # ghost lies in one direction only), until the leader has been checked so.
    checked: set[int] = set()
    for _ in range(4):
        if not scored:
            return None
        k = max(range(len(scored)), key=lambda j: scored[j][0])
        _, p, v, g = scored[k]
        if k in checked or p is None or v is None or scene.total(g, v).objects < MIN_OBJECTS:
            break
        local = gh.hit_rate(gh.rotated_partners(feats, heights, g))
        v = gh.judge(p, feats, max(scene.chance, local))
        scored[k] = (scene.score(g, v, scene.cepstrum_at(g)), p, v, g)
        checked.add(k)
    _, p, v, g = max(scored, key=lambda item: item[0])
    return p, v, g


def _by_pixels(
    scene: _Scene, g: tuple[float, float], v: gh.Verdict | None, best_lag: float, lattice: int
) -> Evidence:
    """Evidence when too few features agree: the ghost's side and weight from the pixels."""
    if _orientation(scene.heights, g) < 0:
        g = (-g[0], -g[1])
    weight = _pixel_weight(scene.heights, g, scene.features.noise)
    llr, explained, objects, expected = (
        (max(v.llr, 0.0), v.explained, v.objects, v.expected) if v else (0.0, 0, 0, 0)
    )
    return Evidence(
        g,
        llr,
        explained,
        objects,
        expected,
        weight,
        scene.cepstrum_at(g),
        best_lag,
        int(scene.features.y.size),
        lattice,
    )


def _by_features(
    scene: _Scene,
    p: gh.Partners,
    v: gh.Verdict,
    best_lag: float,
    lattice: int,
    kappa: float,
) -> Evidence:
    """Evidence from the features that agree: the ghost's side (ghosts are the weaker copies),
    a refined offset, and the weight from the feature / ghost heights."""
    feats, heights = scene.features, scene.heights
    ahead, behind = gh.partners(feats, heights, p.g)
    if gh.stronger_ahead(ahead, feats) < gh.stronger_ahead(behind, feats):
        p = behind
        v = gh.judge(p, feats, scene.chance)
    refined = gh.refine(feats, heights, p, v.mains)
    if refined != p.g:
        p2 = gh.partners(feats, heights, refined)[0]
        v2 = gh.judge(p2, feats, scene.chance)
        if v2.llr >= v.llr - 1.0:
            p, v = p2, v2
    total = scene.total(p.g, v)
    mains = feats.height[v.mains]
    ghosts = p.ghost[v.mains]
    weight = 0.0
    if mains.size:
        polarity = np.sign(mains)
        ratios = weight_from_heights(polarity * mains, polarity * ghosts, kappa)
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        weight = float(np.clip(np.median(ratios), 0.0, 1.0)) if ratios.size else 0.0
    return Evidence(
        p.g,
        max(total.llr, 0.0),
        v.explained,
        total.objects,
        v.expected,
        weight,
        scene.cepstrum_at(p.g),
        best_lag,
        int(feats.y.size),
        lattice,
        earlier=total.earlier,
    )


def probability(ev: Evidence) -> float:
    """P(double) from the evidence: a logistic function calibrated so that 0.5 is the
    decision threshold."""
    b0, _, _, b_best, b_weight, b_step = CALIBRATION
    logit = (
        b0
        + _candidate_score(ev.llr, ev.objects, ev.cepstrum)
        + b_best * max(ev.cepstrum_best, 0.0)
        + b_weight * ev.weight
        + b_step * _step_term(ev.steps)
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
    remembered: Sequence[Sequence[Seen]] = (),
) -> DoubleTipResult:
    """P(double), the second apex's offset and weight in the levelled image ``z`` (m; pixel
    sizes in m); see :func:`evidence` for the parameters."""
    ev = evidence(
        z,
        pixel,
        feature_size=feature_size,
        max_offset=max_offset,
        min_offset=min_offset,
        kappa=kappa,
        remembered=remembered,
    )
    p = probability(ev) if ev.found else 0.0
    g = ev.g
    step_says = CALIBRATION[5] * _step_term(ev.steps)
    if (
        step_says > 0
        and ev.steps.normal != (0.0, 0.0)
        and (g == (0.0, 0.0) or step_says > _offset_score(ev))
    ):
        # The steps speak loudest: the ghost edge lies uphill, so the offset's component across
        # the steps is known, its sign and its component along them are not.
        g = (ev.steps.shift * ev.steps.normal[0], ev.steps.shift * ev.steps.normal[1])
    return DoubleTipResult(
        p,
        (-g[1], -g[0]),  # the ghost sits at -d: the second apex is at -g
        ev.weight,
        ev.explained / ev.expected if ev.expected else 0.0,
        ev.explained,
        ev.features,
        ev.cepstrum,
        ev.lattice_bins,
        ev.llr,
        ev.earlier,
        ev.seen,
        ev.steps,
    )


# --------------------------------------------------------------------------------------------
# The analyzer


class DoubleTipAnalyzer:
    """``double_tip``: P(double), the second apex's offset (m) and its weight, per frame.

    The finding's ``confidence`` is P(double). ``values``: ``p_double``; ``offset_x``,
    ``offset_y`` (m, scanner frame: where the second apex sits relative to the main one, so
    ghosts appear displaced by minus this); ``separation`` (m); ``weight`` (current ratio of the
    second apex to the main one, 0 when unknown); ``pairs`` (features with a ghost at the
    offset) and ``features`` (compact features in the frame); ``earlier_frames`` (earlier
    frames of the history whose features showed the same offset, their evidence included);
    ``step_ghost`` (z-score of a ghost edge uphill of the step edges, 0 when none: where
    it alone speaks, the offset is its component across the steps, sign unknown);
    ``status`` (``"ok"``).
    """

    name = "double_tip"

    def __init__(self, options: DoubleTipOptions | None = None) -> None:
        self.options = options or DoubleTipOptions()
        # The feature evidence of the frames analysed lately (ghost offsets in scanner metres),
        # by frame, so that the history the session hands over can be weighed without
        # analysing those frames again.
        self._memory: OrderedDict[tuple[float, ...], tuple[Seen, ...]] = OrderedDict()

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "double_tip", lambda: self._analyze(frame, history))

    def _recalled(self, frame: Frame, history: Sequence[Frame]) -> list[list[Seen]]:
        """The remembered evidence of the last :data:`HISTORY_FRAMES` frames of ``history``,
        offsets in ``frame``'s pixels."""
        out = []
        for earlier in frame_history(history)[-HISTORY_FRAMES:]:
            seen = self._memory.get(_frame_key(earlier))
            # A frame of the same area shows the same neighbouring adsorbates at the same
            # offsets: it proves nothing that this frame does not.
            if seen and not _overlap(frame.area, earlier.area):
                out.append([replace(m, g=_pixels(frame, m.g)) for m in seen])
        return out

    def _analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
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
            remembered=self._recalled(frame, history),
        )
        self._memory[_frame_key(frame)] = tuple(
            replace(m, g=scanner_vector(frame, m.g[1], m.g[0])) for m in result.seen
        )
        while len(self._memory) > MEMORY:
            self._memory.popitem(last=False)
        p = finite(result.probability)
        dx, dy = scanner_vector(frame, *result.offset)
        separation = math.hypot(dx, dy)
        verdict = "double tip" if p >= opts.threshold else "probably single"
        steps = ""
        if result.steps.zscore > STEP_FLOOR:
            shift = result.steps.shift * math.sqrt(image.pixel[0] * image.pixel[1])
            steps = (
                f"steps show a ghost edge {shift * 1e9:.2f} nm uphill "
                f"({result.steps.zscore:.1f} sigma)"
            )
        if result.offset == (0.0, 0.0):
            message = (
                f"{verdict}: P(double) {p:.2f}; {steps}"
                if steps
                else f"no ghost copy found (P(double) {p:.2f})"
            )
        else:
            pairs = (
                f"{result.pairs} of {result.features} features have a ghost"
                if result.pairs
                else "no feature pairs"
            )
            if result.earlier:
                pairs += f" (as in {result.earlier} earlier frame{'s' * (result.earlier > 1)})"
            message = (
                f"{verdict}: P(double) {p:.2f}; second apex {separation * 1e9:.2f} nm away at "
                f"({dx * 1e9:+.2f}, {dy * 1e9:+.2f}) nm, weight {result.weight:.2f}; {pairs}, "
                f"cepstrum peak {result.peak:.1f} sigma"
            )
            if steps:
                message += f"; {steps}"
        values: dict[str, float | str] = {
            "status": "ok",
            "p_double": p,
            "offset_x": finite(dx),
            "offset_y": finite(dy),
            "separation": finite(separation),
            "weight": finite(result.weight),
            "pairs": float(result.pairs),
            "features": float(result.features),
            "earlier_frames": float(result.earlier),
            "step_ghost": finite(result.steps.zscore),
        }
        return [Finding(self.name, "double_tip", p, values, message=message)]


#: Frames whose evidence the analyzer keeps (a few more than it weighs: the session's history
#: may skip frames the analyzer never saw).
MEMORY = 16


def _frame_key(frame: Frame) -> tuple[float, ...]:
    """What tells frames apart: when they were taken and where."""
    a = frame.area
    return (frame.started_at, frame.finished_at, *a.centre, *a.size, a.angle, float(a.lines))


def _pixels(frame: Frame, vector: tuple[float, float]) -> tuple[float, float]:
    """A displacement in the scanner frame (x, y metres) as (rows, columns) of ``frame``: the
    inverse of :func:`~probepilot_analyzers._findings.scanner_vector`."""
    px, py = frame.area.pixel_size
    c, s = math.cos(frame.area.angle), math.sin(frame.area.angle)
    u = c * vector[0] + s * vector[1]
    v = -s * vector[0] + c * vector[1]
    return (v / (py * (-1.0 if frame.direction == "down" else 1.0)), u / px)


def _overlap(a: ScanArea, b: ScanArea) -> bool:
    """Whether two scan areas share any of the surface (their bounding boxes in the scanner
    frame overlap; drift between them is ignored)."""

    def half(area: ScanArea) -> tuple[float, float]:
        c, s = abs(math.cos(area.angle)), abs(math.sin(area.angle))
        w, h = area.size
        return (0.5 * (c * w + s * h), 0.5 * (s * w + c * h))

    (ax, ay), (bx, by) = half(a), half(b)
    return abs(a.centre[0] - b.centre[0]) < ax + bx and abs(a.centre[1] - b.centre[1]) < ay + by
