"""Atomic lattices as short Fourier series, so a blunt tip is an exact per-harmonic damping.

A periodic height ``h(r) = sum_k Re(c_k exp(i G_k . r))`` seen through a Gaussian apex of
standard deviation ``w`` becomes ``sum_k Re(c_k exp(-|G_k|^2 w^2 / 2) exp(i G_k . r))``: fine
detail (large ``|G|``) fades first, which is exactly how a blunt tip loses atomic resolution while
it still shows a 7x7 reconstruction. On a scan-aligned grid ``exp(i G . r)`` factorises into a row
vector times a column vector, so rendering a lattice is one small matrix product.

Amplitudes are *apparent* corrugations for an ideal sharp tip (what a good tip shows at typical
gaps), not total-charge-density corrugations; the mini-tip width adds blur on top of that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from probepilot.model import FloatArray
from probepilot_sim.grid import Grid

ComplexArray = npt.NDArray[np.complex128]


@dataclass(frozen=True, slots=True)
class FourierLattice:
    """``h(r) = sum_k Re(coeffs[k] * exp(i * vectors[k] . r))``, heights in metres.

    ``vectors`` has shape (K, 2) in rad/m; only one of each +-G pair is kept (its coefficient
    doubled), and G = 0 is dropped (the mean height is zero).
    """

    name: str
    vectors: FloatArray
    coeffs: ComplexArray
    period: float

    def render(self, grid: Grid, blur: float) -> FloatArray:
        """The lattice height on ``grid`` seen through a Gaussian apex of std ``blur`` (m)."""
        g2 = np.einsum("ij,ij->i", self.vectors, self.vectors)
        coeffs = self.coeffs * np.exp(-0.5 * g2 * blur * blur)
        keep = np.abs(coeffs) > 1e-15
        if not keep.any():
            return np.zeros(grid.shape)
        rows = []
        cols = []
        for (gx, gy), c in zip(self.vectors[keep], coeffs[keep], strict=True):
            r, k = grid.project(float(gx), float(gy))
            # Reduce the column phase (it carries the world offset) before the exponential.
            k = np.remainder(k, 2 * math.pi)
            rows.append(np.exp(1j * r[:, 0]))
            cols.append(c * np.exp(1j * k[0, :]))
        row_m = np.stack(rows, axis=1)  # (nv, K)
        col_m = np.stack(cols, axis=0)  # (K, nu)
        # Re(A @ B) = Re(A) @ Re(B) - Im(A) @ Im(B): two real products are cheaper than complex.
        out: FloatArray = row_m.real @ col_m.real
        out -= row_m.imag @ col_m.imag
        return out

    def peak_to_peak(self, blur: float = 0.0, samples: int = 48) -> float:
        """Corrugation (max - min) over one unit cell, for tests and the docs."""
        a1, a2 = _cell_vectors(self.vectors, self.period)
        f = (np.arange(samples) + 0.5) / samples
        f1, f2 = np.meshgrid(f, f)
        x = f1 * a1[0] + f2 * a2[0]
        y = f1 * a1[1] + f2 * a2[1]
        g2 = np.einsum("ij,ij->i", self.vectors, self.vectors)
        coeffs = self.coeffs * np.exp(-0.5 * g2 * blur * blur)
        phase = self.vectors[:, 0, None, None] * x + self.vectors[:, 1, None, None] * y
        h = np.real(np.sum(coeffs[:, None, None] * np.exp(1j * phase), axis=0))
        return float(h.max() - h.min())


def _hex_vectors(a: float, rotation: float) -> tuple[FloatArray, FloatArray]:
    """Primitive vectors of a 2-D hexagonal lattice with constant ``a`` rotated by ``rotation``."""
    c, s = math.cos(rotation), math.sin(rotation)
    rot = np.array([[c, -s], [s, c]])
    a1 = rot @ np.array([a, 0.0])
    a2 = rot @ np.array([a / 2, a * math.sqrt(3) / 2])
    return a1, a2


def _reciprocal(a1: FloatArray, a2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """b_i . a_j = 2 pi delta_ij."""
    m = np.array([a1, a2])
    b = 2 * math.pi * np.linalg.inv(m).T
    return b[0], b[1]


def _cell_vectors(vectors: FloatArray, period: float) -> tuple[FloatArray, FloatArray]:
    """Recover a unit cell from the shortest harmonics (used only for corrugation checks)."""
    norms = np.linalg.norm(vectors, axis=1)
    order = np.argsort(norms)
    b1 = vectors[order[0]]
    for j in order[1:]:
        cand = vectors[j]
        cross = b1[0] * cand[1] - b1[1] * cand[0]
        if abs(cross) > 1e-6 * norms[order[0]] ** 2:
            b2 = cand
            break
    else:  # a 1-D pattern: any perpendicular vector works
        return np.array([period, 0.0]), np.array([0.0, period])
    m = np.array([b1, b2])
    a = 2 * math.pi * np.linalg.inv(m).T
    return a[0], a[1]


def hexagonal(name: str, a: float, corrugation: float, rotation: float = 0.0) -> FourierLattice:
    """A close-packed layer (Au, Cu, the visible graphite sublattice): three first-shell cosines.

    ``sum cos(G_i . r)`` peaks (value 3) on the atoms and bottoms out (-1.5) at the hollows, so
    the peak-to-peak corrugation is 4.5 times the amplitude.
    """
    a1, a2 = _hex_vectors(a, rotation)
    b1, b2 = _reciprocal(a1, a2)
    amp = corrugation / 4.5
    vectors = np.array([b1, b2, b1 + b2])
    # Each kept harmonic stands for the pair +-G: Re(2c e^{iGr}) with c = amp/2.
    coeffs = np.full(3, amp, dtype=np.complex128)
    return FourierLattice(name, vectors, coeffs, a)


def from_unit_cell(
    name: str,
    a1: FloatArray,
    a2: FloatArray,
    table: FloatArray,
    max_harmonics: int = 90,
    tolerance: float = 0.01,
) -> FourierLattice:
    """Fourier series of a height ``table`` sampled on fractional coordinates of (a1, a2).

    Keeps the strongest harmonics (up to ``max_harmonics`` of one half-plane, each above
    ``tolerance`` times the strongest) so rendering stays a small matrix product.
    """
    n1, n2 = table.shape
    spectrum = np.fft.fft2(table) / (n1 * n2)
    m1 = np.fft.fftfreq(n1, 1.0 / n1)
    m2 = np.fft.fftfreq(n2, 1.0 / n2)
    mm1, mm2 = np.meshgrid(m1, m2, indexing="ij")
    half = (mm1 > 0) | ((mm1 == 0) & (mm2 > 0))
    # Drop the Nyquist rows, whose +-G partners alias onto themselves.
    half &= (np.abs(mm1) < n1 / 2) & (np.abs(mm2) < n2 / 2)
    amps = np.where(half, np.abs(spectrum), 0.0)
    order = np.argsort(amps.ravel())[::-1][:max_harmonics]
    order = order[amps.ravel()[order] > tolerance * amps.max()]
    b1, b2 = _reciprocal(a1, a2)
    i1, i2 = np.unravel_index(order, table.shape)
    vectors = mm1[i1, i2][:, None] * b1 + mm2[i1, i2][:, None] * b2
    coeffs = 2.0 * spectrum[i1, i2]
    period = float(min(np.linalg.norm(a1), np.linalg.norm(a2)))
    return FourierLattice(name, vectors.astype(np.float64), coeffs.astype(np.complex128), period)


def si_7x7(rotation: float = 0.0) -> FourierLattice:
    """A Si(111)-7x7-like reconstruction after the dimer-adatom-stacking-fault model.

    Per 2.69 nm cell: 12 adatoms in two triangular halves (6 each, 2x2-local spacing of
    0.77 nm), the faulted half 10 pm brighter, centre adatoms 8 pm brighter than corner ones,
    and a deep corner hole at each cell corner. Apparent heights are those of filled-state images.
    """
    a0 = 0.384e-9  # Si(111) 1x1 surface lattice constant
    a = 7 * a0
    a1, a2 = _hex_vectors(a, rotation)
    n = 56
    f = np.arange(n) / n
    f1, f2 = np.meshgrid(f, f, indexing="ij")
    table = np.zeros((n, n))

    def bump(p1: float, p2: float, height: float, sigma: float) -> None:
        # Minimum-image distance on the periodic cell, in metres.
        d1 = (f1 - p1 + 0.5) % 1.0 - 0.5
        d2 = (f2 - p2 + 0.5) % 1.0 - 0.5
        x = d1 * a1[0] + d2 * a2[0]
        y = d1 * a1[1] + d2 * a2[1]
        table[...] += height * np.exp(-(x * x + y * y) / (2 * sigma * sigma))

    faulted = [(1, 1), (3, 1), (5, 1), (1, 3), (3, 3), (1, 5)]
    corner = {(1, 1), (5, 1), (1, 5)}
    for p1, p2 in faulted:
        extra = 0.0 if (p1, p2) in corner else 8e-12
        bump(p1 / 7, p2 / 7, 70e-12 + 10e-12 + extra, 0.17e-9)
        # The unfaulted half is the point reflection through the cell centre.
        bump((7 - p1) / 7, (7 - p2) / 7, 70e-12 + extra, 0.17e-9)
    bump(0.0, 0.0, -150e-12, 0.33e-9)
    table -= table.mean()
    return from_unit_cell("Si(111)-7x7", a1, a2, table)
