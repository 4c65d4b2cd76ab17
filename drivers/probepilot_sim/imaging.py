"""Constant-current imaging with a multi-apex tip.

Each mini-tip ``i`` at lateral offset ``d_i`` and height ``dz_i`` above the main apex carries a
current ``I_i = (G0 V) exp(-2 kappa (z + dz_i - h_i(x)))`` where ``h_i`` is the surface seen
through that mini-tip's width at ``x + d_i``. The feedback holds the total at the setpoint, so the
tip height is the soft maximum

    z(x) = gap + (1 / 2 kappa) ln sum_i exp(2 kappa (h_i(x) - dz_i)),
    gap  = (1 / 2 kappa) ln(G0 |V| / I_set)

computed for a whole frame at once. A second mini-tip as low as the first adds a full-height
ghost of every feature at its offset; one retracted by ``dz`` adds a ghost weighted by
``exp(-2 kappa dz)``. ``kappa = sqrt(2 m phi) / hbar`` is 1.09 per angstrom for phi = 4.5 eV.
"""

from __future__ import annotations

import math

import numpy as np

from probepilot.model import FloatArray
from probepilot_sim.grid import Grid, sample
from probepilot_sim.spectroscopy import HBAR_KAPPA
from probepilot_sim.tip import Apex

G0 = 7.748091729e-5  # conductance quantum, S
MIN_BIAS = 1e-3  # V: below this the gap formula is floored (a real loop would crash the tip)


def decay_constant(work_function: float) -> float:
    """kappa (1/m) for a barrier of ``work_function`` eV."""
    return HBAR_KAPPA * math.sqrt(work_function)


def gap(bias: float, setpoint: float, kappa: float) -> float:
    """Tip-sample distance (m) at which a flat surface gives ``setpoint`` A at ``bias`` V."""
    conductance = G0 * max(abs(bias), MIN_BIAS)
    return max(math.log(conductance / setpoint), 0.0) / (2 * kappa)


def apparent_height(
    apex: Apex,
    heights: dict[float, FloatArray],
    grid: Grid,
    u: FloatArray,
    v: FloatArray,
    kappa: float,
    angle: float,
) -> FloatArray:
    """Constant-current height above the surface mean plane (without the gap), at local
    sample positions ``(u, v)``.

    ``heights`` maps each mini-tip width to the surface rendered on ``grid`` through that width;
    ``angle`` is the scan angle (mini-tip offsets are in world axes).
    """
    c, s = math.cos(angle), math.sin(angle)
    parts = []
    for t in apex.tips:
        # World offset -> local: mini-tip i sees the surface at x + d_i.
        du = c * t.dx + s * t.dy
        dv = -s * t.dx + c * t.dy
        h = sample(grid, heights[t.width], u + du, v + dv)
        if t.dz:
            h -= t.dz
        parts.append(h)
    if len(parts) == 1:
        return parts[0]
    two_k = 2 * kappa
    top = parts[0].copy()
    for p in parts[1:]:
        np.maximum(top, p, out=top)
    total = np.zeros_like(top)
    for p in parts:
        p -= top
        p *= two_k
        np.exp(p, out=p)
        total += p
    np.log(total, out=total)
    total *= 1 / two_k
    total += top
    return total
