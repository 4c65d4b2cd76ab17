"""Regular grids in a frame's own coordinates, and bilinear sampling on them.

The simulator renders the surface once per frame on a grid aligned with the scan (``u`` along the
fast axis, ``v`` along the slow axis, rotated by the scan angle), then samples it at the positions
the tip actually visited (drift and creep move those off the nominal pixels). Because the grid is
axis-aligned in (u, v), any function of an affine form ``g . r`` splits into a row part plus a
column part; the surface layers use that to replace per-pixel trigonometry by outer products and
matrix products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probepilot.model import FloatArray


@dataclass(frozen=True, slots=True)
class Grid:
    """Nodes ``(v[i], u[j])`` of a rotated frame, in metres.

    ``origin`` is the world (surface) position of local (0, 0); ``angle`` the rotation of the
    local u axis from the world x axis (rad, counter-clockwise). Arrays rendered on the grid have
    shape ``(len(v), len(u))``.
    """

    origin: tuple[float, float]
    angle: float
    u: FloatArray
    v: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.v.size, self.u.size)

    @property
    def spacing(self) -> tuple[float, float]:
        """Node spacing along u and v (m); 1 m for a single node so divisions stay finite."""
        du = float(self.u[1] - self.u[0]) if self.u.size > 1 else 1.0
        dv = float(self.v[1] - self.v[0]) if self.v.size > 1 else 1.0
        return du, dv

    def to_world(self, u: float, v: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (self.origin[0] + c * u - s * v, self.origin[1] + s * u + c * v)

    def to_local(
        self, x: FloatArray | float, y: FloatArray | float
    ) -> tuple[FloatArray, FloatArray]:
        """World positions -> local (u, v)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx = np.asarray(x, dtype=np.float64) - self.origin[0]
        dy = np.asarray(y, dtype=np.float64) - self.origin[1]
        return c * dx + s * dy, -s * dx + c * dy

    def bounds_world(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of the grid in world coordinates, widened by ``margin``."""
        corners = [
            self.to_world(float(u), float(v))
            for u in (self.u[0], self.u[-1])
            for v in (self.v[0], self.v[-1])
        ]
        xs, ys = zip(*corners, strict=True)
        return (min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin)

    def project(self, gx: float, gy: float, const: float = 0.0) -> tuple[FloatArray, FloatArray]:
        """``const + gx*x + gy*y`` over the grid as ``(rows[:, None], cols[None, :])``.

        Their broadcast sum is the full field; keeping them apart lets callers use
        ``cos(a + b) = cos a cos b - sin a sin b`` on 1-D vectors. ``const`` is folded into the
        column part after reducing the origin's phase, so huge world offsets (coarse moves of
        millimetres) keep full precision.
        """
        c, s = math.cos(self.angle), math.sin(self.angle)
        base = const + gx * self.origin[0] + gy * self.origin[1]
        cols = base + (gx * c + gy * s) * self.u
        rows = (-gx * s + gy * c) * self.v
        return rows[:, None], cols[None, :]

    def world_xy(self) -> tuple[FloatArray, FloatArray]:
        """Full (nv, nu) arrays of world x and y (for layers that are not affine)."""
        rx, cx = self.project(1.0, 0.0)
        ry, cy = self.project(0.0, 1.0)
        return rx + cx, ry + cy


def make_grid(
    origin: tuple[float, float],
    angle: float,
    u_range: tuple[float, float],
    v_range: tuple[float, float],
    spacing: tuple[float, float],
    anchor: tuple[float, float] = (0.0, 0.0),
) -> Grid:
    """A grid covering ``u_range`` x ``v_range`` with nodes on ``anchor + k * spacing``.

    Anchoring the nodes on the nominal pixel positions makes an undrifted sample land exactly
    on a node, so bilinear interpolation only acts on the (sub-pixel) drift.
    """

    def axis(lo: float, hi: float, step: float, a: float) -> FloatArray:
        first = math.floor((lo - a) / step) - 1
        last = math.ceil((hi - a) / step) + 1
        return a + step * np.arange(first, last + 1, dtype=np.float64)

    return Grid(
        origin,
        angle,
        axis(u_range[0], u_range[1], spacing[0], anchor[0]),
        axis(v_range[0], v_range[1], spacing[1], anchor[1]),
    )


def sample(grid: Grid, values: FloatArray, u: FloatArray, v: FloatArray) -> FloatArray:
    """Bilinear interpolation of ``values`` (on ``grid``) at local positions ``u``, ``v``.

    Callers size grids to cover every sample with a node to spare; positions outside anyway
    are clamped to the edge (checked once, cheaply, instead of clipping every position).
    """
    nv, nu = values.shape
    du, dv = grid.spacing
    fu = u - grid.u[0]
    fu *= 1.0 / du
    fv = v - grid.v[0]
    fv *= 1.0 / dv
    iu = fu.astype(np.intp)
    iv = fv.astype(np.intp)
    if (
        iu.min() < 0
        or iv.min() < 0
        or iu.max() > nu - 2
        or iv.max() > nv - 2
        or fu.min() < 0
        or fv.min() < 0
    ):
        np.clip(fu, 0.0, nu - 1.000001, out=fu)
        np.clip(fv, 0.0, nv - 1.000001, out=fv)
        iu = fu.astype(np.intp)
        iv = fv.astype(np.intp)
    fu -= iu
    fv -= iv
    idx = iv * nu
    idx += iu
    flat = values.ravel()
    a = flat[idx]
    b = flat[idx + 1]
    idx += nu
    c = flat[idx]
    d = flat[idx + 1]
    # a + fu (b - a) + fv ((c - a) + fu ((d - c) - (b - a))), in place.
    b -= a
    d -= c
    d -= b
    c -= a
    d *= fu
    c += d
    c *= fv
    b *= fu
    a += b
    a += c
    out: FloatArray = a
    return out
