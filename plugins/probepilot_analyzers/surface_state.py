"""Is the tip good for spectroscopy? Ask the Shockley surface state.

On a clean (111) noble-metal terrace, dI/dV shows the onset of the Shockley surface-state band as
a sharp step: at -0.48 V on Au(111), -0.44 V on Cu(111), -0.06 V on Ag(111), about 20-30 mV
wide with a good tip. A tip whose own states are broad (blunt, contaminated) smears the step
over a few hundred millivolts or hides it, and a tip with states of its own (an adsorbate picked
up) adds features that move the apparent onset. Microscopists check exactly this before
trusting a tip for spectroscopy; an autopilot can do the same after every good frame.

The analyzer fits dI/dV within ``window`` of the expected onset with a linear background plus a
Gaussian-smoothed step (``a + b V + h Phi((V - E0) / s)``): a grid over ``E0`` and ``s`` with the
linear parameters solved exactly, then refined around the best. Verdicts:

``good``      the step is there (rise at least ``min_step`` of the background), sharp (10-90 %
              width at most ``max_width``) and where expected (within ``tolerance``);
``smeared``   it is there but wider: a blunt or contaminated tip;
``absent``    no step rises ``min_step`` (of the median dI/dV) (a bad tip, or not a clean terrace);
``shifted``   a sharp step, away from where it belongs (tip states, or the wrong surface).

One finding of kind ``surface_state`` per spectrum, with ``state``, ``onset`` (V), ``width`` (V,
10-90 %), ``rise`` (the step's height relative to the median dI/dV in the window), ``expected``
(V), ``r2`` (the fit's coefficient of determination) and ``status``. Its confidence grows with
the fit's quality and is 0 for a spectrum it cannot judge: no dI/dV or current channel, a
sweep that does not cover the window, too few finite points, or a spectrum taken on an
adsorbate (``metadata["target"]``).
Frames are not its business: ``analyze`` returns nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from probepilot.model import Finding, FloatArray, Frame, Spectrum
from probepilot.spectroscopy import numerical_didv
from probepilot_analyzers._findings import NUMERIC_ERRORS, finite, invalid
from probepilot_analyzers.options import SurfaceStateOptions

KIND = "surface_state"
#: Surface-state onsets, V (band bottom below the Fermi level: occupied, negative sample bias).
ONSETS = {"au111": -0.48, "cu111": -0.44, "ag111": -0.065}
#: 10-90 % width of a Gaussian-smoothed step is this many standard deviations.
WIDTH_PER_SIGMA = 2.0 * 1.2815515655446004


class SurfaceStateAnalyzer:
    """``surface_state``: the tip judged from the Shockley surface state in dI/dV (a
    :class:`~probepilot.contracts.SpectrumAnalyzer`)."""

    name = "surface_state"

    def __init__(self, options: SurfaceStateOptions | None = None) -> None:
        self.options = options or SurfaceStateOptions()

    @property
    def expected(self) -> float:
        opts = self.options
        return opts.onset if opts.onset is not None else ONSETS[opts.surface]

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return []

    def analyze_spectrum(self, spectrum: Spectrum) -> list[Finding]:
        try:
            with np.errstate(all="ignore"):
                return [self._judge(spectrum)]
        except _Unjudgeable as exc:
            return [invalid(self.name, KIND, str(exc))]
        except NUMERIC_ERRORS as exc:
            return [invalid(self.name, KIND, f"{type(exc).__name__}: {exc}")]

    # -- the fit -----------------------------------------------------------------------------------

    def _judge(self, spectrum: Spectrum) -> Finding:
        opts = self.options
        target = str(getattr(spectrum, "metadata", {}).get("target", ""))
        if target == "adsorbate":
            raise _Unjudgeable("taken on an adsorbate, not on clean terrace")
        v, g = _didv(spectrum)
        e0 = self.expected
        inside = (v >= e0 - opts.window) & (v <= e0 + opts.window) & np.isfinite(g)
        if int(inside.sum()) < 12:
            raise _Unjudgeable(
                f"the sweep has {int(inside.sum())} finite points within {opts.window:g} V of "
                f"the expected onset {e0:+.3f} V (at least 12 needed)"
            )
        v, g = v[inside], g[inside]
        if v.max() - v.min() < 1.5 * opts.window:
            raise _Unjudgeable(f"the sweep does not cover {e0:+.3f} +- {opts.window:g} V")
        scale = float(np.median(np.abs(g)))
        if not scale > 0:
            raise _Unjudgeable("dI/dV is zero (no tunnelling current?)")
        g = g / scale
        fit = _fit_step(v, g, e0, opts.window)
        onset, sigma, _, _, h, r2 = fit
        rise = h  # dI/dV is normalised to its median in the window
        width = WIDTH_PER_SIGMA * sigma
        if not rise >= opts.min_step:
            state = "absent"
        elif width > opts.max_width:
            state = "smeared"
        elif abs(onset - e0) > opts.tolerance:
            state = "shifted"
        else:
            state = "good"
        confidence = float(np.clip(r2, 0.0, 1.0))
        if state == "absent":
            # No step to fit: the evidence is that a step would have been seen.
            confidence = float(np.clip(1.0 - rise / opts.min_step, 0.0, 1.0)) * 0.8
        values: dict[str, float | str] = {
            "status": "ok",
            "state": state,
            "onset": finite(onset),
            "width": finite(width),
            "rise": finite(rise),
            "expected": e0,
            "r2": finite(r2),
        }
        message = (
            f"surface state {state}: onset {onset * 1e3:+.0f} mV (expected {e0 * 1e3:+.0f}), "
            f"10-90 % width {width * 1e3:.0f} mV, rise {rise:.0%}"
        )
        return Finding(self.name, KIND, confidence, values, message=message)


class _Unjudgeable(ValueError):
    """The spectrum cannot be judged; the message says why."""


def _didv(spectrum: Spectrum) -> tuple[FloatArray, FloatArray]:
    """Sweep (V) and dI/dV, sorted by bias: the ``dIdV`` channel (or one with lock-in X), else
    the derivative of ``Current``."""
    channels = getattr(spectrum, "channels", None)
    if not isinstance(channels, dict) or not channels:
        raise _Unjudgeable("the spectrum has no channels")
    if getattr(spectrum, "sweep_unit", "V") != "V":
        raise _Unjudgeable(f"the sweep is in {spectrum.sweep_unit!r}, not a bias in V")
    v = np.asarray(spectrum.sweep, dtype=np.float64)
    name = next((n for n in ("dIdV", "LI X", "LI Demod 1 X") if n in channels), None)
    if name is not None:
        g = np.asarray(channels[name], dtype=np.float64)
    elif "Current" in channels:
        current = np.asarray(channels["Current"], dtype=np.float64)
        if current.shape != v.shape or v.size < 3:
            raise _Unjudgeable("the current and the sweep differ in length")
        g = numerical_didv(v, current)
    else:
        raise _Unjudgeable(f"no dIdV or Current channel (has {', '.join(channels)})")
    if g.shape != v.shape:
        raise _Unjudgeable(f"channel {name!r} and the sweep differ in length")
    order = np.argsort(v)
    return v[order], g[order]


def _erf(x: FloatArray) -> FloatArray:
    """Error function (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7): numpy has none, and the
    analyzers' scipy import stays out of this cheap path."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.sign(x) * (1.0 - poly * np.exp(-(x**2)))


def _solve(
    v: FloatArray, g: FloatArray, e0: FloatArray, sigma: FloatArray
) -> tuple[FloatArray, ...]:
    """For every (e0, sigma) pair: the least-squares a, b, h and the residual sum of squares of
    ``g ~ a + b v + h Phi((v - e0) / sigma)``."""
    step = 0.5 * (1.0 + _erf((v[None, :] - e0[:, None]) / (sigma[:, None] * math.sqrt(2.0))))
    n = v.size
    # Normal equations of the three-column design [1, v, step], batched over the pairs.
    sv, svv = v.sum(), (v * v).sum()
    ss = step.sum(axis=1)
    svs = (step * v[None, :]).sum(axis=1)
    sss = (step * step).sum(axis=1)
    m = np.empty((e0.size, 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = n, sv, ss
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = sv, svv, svs
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = ss, svs, sss
    rhs = np.stack([np.full(e0.size, g.sum()), np.full(e0.size, (g * v).sum()), step @ g], axis=1)
    coef = np.linalg.solve(m + 1e-12 * np.eye(3)[None], rhs[..., None])[..., 0]
    model = coef[:, 0:1] + coef[:, 1:2] * v[None, :] + coef[:, 2:3] * step
    rss = ((g[None, :] - model) ** 2).sum(axis=1)
    return coef[:, 0], coef[:, 1], coef[:, 2], rss


def _fit_step(
    v: FloatArray, g: FloatArray, e0: float, window: float
) -> tuple[float, float, float, float, float, float]:
    """Onset, sigma, a, b, h and R^2 of the best step fit (a rising step: h >= 0)."""
    lo, hi = e0 - 0.8 * window, e0 + 0.8 * window
    spacing = float(np.median(np.diff(v))) if v.size > 1 else 0.01
    s_min = max(0.003, spacing / 2)
    best: tuple[float, float] | None = None
    centres = np.linspace(lo, hi, 41)
    sigmas = np.geomspace(s_min, window, 14)
    for _ in range(3):
        cc, ss = (a.ravel() for a in np.meshgrid(centres, sigmas))
        a, b, h, rss = _solve(v, g, cc, ss)
        rss = np.where(h >= 0, rss, np.inf)
        k = int(np.argmin(rss))
        best = (float(cc[k]), float(ss[k]))
        # Refine around the best pair.
        dc = (centres[1] - centres[0]) if centres.size > 1 else window / 10
        centres = np.linspace(best[0] - dc, best[0] + dc, 21)
        ratio = (sigmas[1] / sigmas[0]) if sigmas.size > 1 else 2.0
        sigmas = np.geomspace(max(s_min, best[1] / ratio), best[1] * ratio, 11)
    assert best is not None
    a, b, h, rss = _solve(v, g, np.array([best[0]]), np.array([best[1]]))
    total = float(((g - g.mean()) ** 2).sum())
    r2 = 1.0 - float(rss[0]) / total if total > 0 else 0.0
    return best[0], best[1], float(a[0]), float(b[0]), max(float(h[0]), 0.0), r2
