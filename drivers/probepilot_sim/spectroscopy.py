"""Point spectroscopy: I(V) and dI/dV from sample and tip densities of states.

The tunnelling current at sample bias ``V`` is (Bardeen / Tersoff-Hamann, 1-D WKB barrier)::

    I(V) ~ integral_0^V rho_s(E) rho_t(E - V) T(E, V) dE,
    T(E, V) = exp(-2 g kappa(E, V)),  kappa = kappa_0 sqrt((phi - E + V/2) / phi)

with energies in eV from the sample Fermi level and ``g`` the gap the feedback set at the
imaging bias and setpoint before the sweep; the result is scaled so that I(V_bias) equals the
setpoint, as on a real instrument. A densities of states is a background plus smoothed steps plus
Gaussian peaks. A bad tip changes the spectrum in two ways: its own broadening (``smear``, eV)
convolves the sample DOS (so a blunt or contaminated tip washes out the Shockley surface-state
step of Au(111)/Cu(111)), and its own DOS peaks (an adsorbate picked up) multiply in.

Spectra are site-specific: on an adsorbate (:func:`adsorbate_weight`, :func:`local_dos`) the
surface state is scattered away (its step shrinks by the overlap with the adsorbate) and the
adsorbate's own resonance appears above the Fermi level, so spectra on adsorbates and on clean
terrace differ as they do on a real surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from probepilot.model import FloatArray
from probepilot_sim.features import Blobs

HBAR_KAPPA = 0.5123e10  # sqrt(2 m_e * 1 eV) / hbar in 1/m: kappa = HBAR_KAPPA * sqrt(phi/eV)


@dataclass(frozen=True, slots=True)
class DOS:
    """A density of states (arbitrary units, ~1 for a flat metal).

    ``steps``: (energy eV, height, intrinsic width eV), a smoothed step up above ``energy``.
    ``peaks``: (energy eV, width eV, height), Gaussian peaks. ``slope``: a linear |E| term, which
    makes graphite's V shape.
    """

    background: float = 1.0
    steps: tuple[tuple[float, float, float], ...] = ()
    peaks: tuple[tuple[float, float, float], ...] = ()
    slope: float = 0.0

    def evaluate(self, energy: FloatArray, smear: float = 0.0) -> FloatArray:
        """The DOS at ``energy`` (eV) convolved with a Gaussian of std ``smear`` (eV)."""
        out = np.full_like(energy, self.background)
        if self.slope:
            # |E| convolved with a Gaussian, closed form (keeps the V shape's tip rounded).
            s = max(smear, 0.01)
            z = energy / (s * math.sqrt(2))
            out += self.slope * (energy * erf(z) + s * math.sqrt(2 / math.pi) * np.exp(-(z**2)))
        for e0, height, width in self.steps:
            s = math.hypot(width, smear)
            out += height * 0.5 * (1 + erf((energy - e0) / (s * math.sqrt(2))))
        for e0, width, height in self.peaks:
            s = math.hypot(width, smear)
            out += height * (width / s) * np.exp(-0.5 * ((energy - e0) / s) ** 2)
        return np.maximum(out, 0.0)


METAL_FLAT = DOS()


def au111() -> DOS:
    """Au(111): Shockley surface-state band bottom at -0.48 eV (a step in dI/dV)."""
    return DOS(background=1.0, steps=((-0.48, 1.0, 0.015),))


def cu111() -> DOS:
    """Cu(111): surface-state onset at -0.44 eV."""
    return DOS(background=1.0, steps=((-0.44, 1.2, 0.012),))


def si111_7x7() -> DOS:
    """Si(111)-7x7: rest-atom (-0.8 eV) and adatom (-0.35 eV, +0.5 eV) surface states on a
    small metallic background (the 7x7 surface is metallic)."""
    return DOS(background=0.15, peaks=((-0.8, 0.15, 1.2), (-0.35, 0.1, 0.6), (0.5, 0.2, 1.0)))


def graphite() -> DOS:
    """HOPG: semimetal, DOS linear in |E| around the Fermi level."""
    return DOS(background=0.05, slope=2.0)


#: An adsorbate's own resonance (energy eV, width eV, height): an unoccupied state above E_F.
ADSORBATE_RESONANCE = (0.35, 0.12, 1.5)
#: How far beyond its own width (m) an adsorbate changes the local density of states.
ADSORBATE_REACH = 0.3e-9


def adsorbate_weight(blobs: Blobs, x: float, y: float) -> float:
    """How much the junction at world position (x, y) (m) sits on an adsorbate: 0 on clean
    terrace, 1 on top of one; the largest Gaussian overlap with a protruding blob, of width its
    own plus :data:`ADSORBATE_REACH`."""
    if not len(blobs):
        return 0.0
    up = blobs.height > 0
    if not up.any():
        return 0.0
    r2 = (blobs.x[up] - x) ** 2 + (blobs.y[up] - y) ** 2
    s = blobs.sigma[up] + ADSORBATE_REACH
    return float(np.max(np.exp(-r2 / (2.0 * s * s))))


def local_dos(dos: DOS, weight: float) -> DOS:
    """The sample's DOS under the tip when a fraction ``weight`` of the junction is on an
    adsorbate: surface-state steps scaled by ``1 - weight``, the adsorbate's resonance added
    with ``weight``."""
    if weight <= 1e-3:
        return dos
    weight = min(weight, 1.0)
    energy, width, height = ADSORBATE_RESONANCE
    return DOS(
        background=dos.background,
        steps=tuple((e0, h * (1.0 - weight), w) for e0, h, w in dos.steps),
        peaks=(*dos.peaks, (energy, width, height * weight)),
        slope=dos.slope,
    )


def current_curve(
    bias: FloatArray,
    *,
    sample: DOS,
    tip: DOS,
    tip_smear: float,
    gap: float,
    work_function: float,
    energies: int = 400,
) -> FloatArray:
    """Unscaled I(V) at the sweep ``bias`` (V) for a gap ``gap`` (m)."""
    lo = min(float(bias.min()), 0.0)
    hi = max(float(bias.max()), 0.0)
    if hi - lo <= 0:
        return np.zeros_like(bias)
    e = np.linspace(lo, hi, energies)
    de = e[1] - e[0]
    rho_s = sample.evaluate(e, tip_smear)  # (M,)
    # Tip states at E - V; the tip's own peaks are narrow features of the apex.
    rho_t = tip.evaluate(e[None, :] - bias[:, None])  # (N, M)
    barrier = np.maximum(work_function - e[None, :] + bias[:, None] / 2, 0.05)
    kappa = HBAR_KAPPA * np.sqrt(barrier)
    trans = np.exp(-2.0 * gap * (kappa - HBAR_KAPPA * math.sqrt(work_function)))
    # Each energy cell contributes the length of its overlap with [min(0, V), max(0, V)], so
    # I(V) is smooth in V (no staircase from the energy grid) and dI/dV has no artefacts.
    lo_v = np.minimum(bias, 0.0)[:, None]
    hi_v = np.maximum(bias, 0.0)[:, None]
    weight = np.clip(
        np.minimum(e[None, :] + de / 2, hi_v) - np.maximum(e[None, :] - de / 2, lo_v), 0.0, None
    )
    integrand = rho_s[None, :] * rho_t * trans * weight
    return np.asarray(np.sign(bias) * integrand.sum(axis=1), dtype=np.float64)
