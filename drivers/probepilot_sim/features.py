"""Everything on a surface that is not the lattice or a step: adsorbates, molecules, vacancies,
debris, contaminated patches and conditioning damage, all as isotropic Gaussian blobs.

A blob of height ``a`` and width ``s`` seen through a Gaussian apex of width ``w`` is again a
Gaussian, of width ``sqrt(s^2 + w^2)`` and height ``a s^2 / (s^2 + w^2)`` (its volume is kept),
so blunt tips smear features exactly. An isotropic Gaussian factorises along the grid axes, so the
blobs of a frame render as one matrix product ``Gy^T diag(a) Gx``, no loop over pixels.

The surface is unbounded (coarse moves keep finding fresh area), so blobs are generated lazily in
square tiles, each from its own seeded generator: the same seed gives the same surface wherever
and in whatever order it is visited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from probepilot.model import FloatArray
from probepilot_sim.grid import Grid

TILE = 64e-9  # side of a generation tile, m


@dataclass(slots=True)
class Blobs:
    """Parallel arrays of Gaussian blobs in world coordinates (m)."""

    x: FloatArray = field(default_factory=lambda: np.zeros(0))
    y: FloatArray = field(default_factory=lambda: np.zeros(0))
    height: FloatArray = field(default_factory=lambda: np.zeros(0))
    sigma: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return int(self.x.size)

    @staticmethod
    def concat(parts: list[Blobs]) -> Blobs:
        if not parts:
            return Blobs()
        return Blobs(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.height for p in parts]),
            np.concatenate([p.sigma for p in parts]),
        )

    def render(self, grid: Grid, blur: float) -> FloatArray:
        """Sum of the blobs on ``grid`` through an apex of width ``blur`` (m)."""
        out = np.zeros(grid.shape)
        if not len(self):
            return out
        s2 = self.sigma**2 + blur * blur
        amp = self.height * (self.sigma**2 / s2)
        u, v = grid.to_local(self.x, self.y)
        reach = 4.0 * np.sqrt(s2)
        inside = (
            (u + reach >= grid.u[0])
            & (u - reach <= grid.u[-1])
            & (v + reach >= grid.v[0])
            & (v - reach <= grid.v[-1])
            & (np.abs(amp) > 1e-15)
        )
        if not inside.any():
            return out
        u, v, s2, amp = u[inside], v[inside], s2[inside], amp[inside]
        inv = -0.5 / s2
        gx = np.exp(inv[:, None] * (grid.u[None, :] - u[:, None]) ** 2)  # (N, nu)
        gy = np.exp(inv[:, None] * (grid.v[None, :] - v[:, None]) ** 2)  # (N, nv)
        out += (gy * amp[:, None]).T @ gx
        return out


@dataclass(frozen=True, slots=True)
class FeatureMix:
    """Areal densities (per m^2) and shapes of what decorates a surface preset.

    Heights are apparent heights for a good tip at moderate bias, in metres.
    """

    adsorbates: float = 0.0  # single atoms / small clusters
    molecules: float = 0.0  # multi-lobe molecules
    vacancies: float = 0.0  # single-atom vacancies (visible at atomic resolution)
    depressions: float = 0.0  # adsorbates imaged as dips (CO on Cu(111))
    debris: float = 0.0  # tall, irregular clusters
    patches: float = 0.0  # contaminated patches
    adsorbate_height: tuple[float, float] = (0.08e-9, 0.2e-9)
    adsorbate_sigma: tuple[float, float] = (0.25e-9, 0.45e-9)
    molecule_lobes: tuple[int, int] = (2, 4)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> FloatArray:
    return rng.uniform(bounds[0], bounds[1], n)


def generate_tile(mix: FeatureMix, seed: int, ix: int, iy: int, scale: float = 1.0) -> Blobs:
    """The blobs of tile (ix, iy); ``scale`` multiplies every density."""
    # SeedSequence entropy must be non-negative: shift tile indices into the unsigned range.
    rng = np.random.default_rng([seed, 0x5EED, ix + (1 << 40), iy + (1 << 40)])
    x0, y0 = ix * TILE, iy * TILE
    area = TILE * TILE
    parts: list[Blobs] = []

    def count(density: float) -> int:
        return int(rng.poisson(density * area * scale))

    def place(n: int) -> tuple[FloatArray, FloatArray]:
        return x0 + rng.uniform(0, TILE, n), y0 + rng.uniform(0, TILE, n)

    n = count(mix.adsorbates)
    x, y = place(n)
    parts.append(
        Blobs(x, y, _uniform(rng, mix.adsorbate_height, n), _uniform(rng, mix.adsorbate_sigma, n))
    )

    n = count(mix.molecules)
    cx, cy = place(n)
    for i in range(n):
        lobes = int(rng.integers(mix.molecule_lobes[0], mix.molecule_lobes[1] + 1))
        turn = rng.uniform(0, 2 * math.pi)
        spacing = rng.uniform(0.6e-9, 0.9e-9)
        if lobes == 2:  # a linear dimer
            offsets = [(-spacing / 2, 0.0), (spacing / 2, 0.0)]
        else:  # lobes on a ring: triangles and four-lobed (porphyrin-like) crosses
            radius = spacing / (2 * math.sin(math.pi / lobes))
            offsets = [
                (
                    radius * math.cos(2 * math.pi * k / lobes),
                    radius * math.sin(2 * math.pi * k / lobes),
                )
                for k in range(lobes)
            ]
        c, s = math.cos(turn), math.sin(turn)
        xs = np.array([cx[i] + c * dx - s * dy for dx, dy in offsets])
        ys = np.array([cy[i] + s * dx + c * dy for dx, dy in offsets])
        h = rng.uniform(0.1e-9, 0.16e-9)
        parts.append(Blobs(xs, ys, np.full(lobes, h), np.full(lobes, 0.28e-9)))

    n = count(mix.vacancies)
    x, y = place(n)
    parts.append(Blobs(x, y, -_uniform(rng, (0.03e-9, 0.05e-9), n), np.full(n, 0.14e-9)))

    n = count(mix.depressions)
    x, y = place(n)
    parts.append(Blobs(x, y, np.full(n, -0.03e-9), np.full(n, 0.35e-9)))

    n = count(mix.debris)
    cx, cy = place(n)
    for i in range(n):
        k = int(rng.integers(3, 9))
        parts.append(
            Blobs(
                cx[i] + rng.normal(0, 1.5e-9, k),
                cy[i] + rng.normal(0, 1.5e-9, k),
                rng.uniform(0.4e-9, 1.5e-9, k),
                rng.uniform(0.8e-9, 2.0e-9, k),
            )
        )

    n = count(mix.patches)
    cx, cy = place(n)
    for i in range(n):
        radius = rng.uniform(4e-9, 12e-9)
        k = int(rng.integers(20, 60))
        r = radius * np.sqrt(rng.uniform(0, 1, k))
        phi = rng.uniform(0, 2 * math.pi, k)
        parts.append(
            Blobs(
                cx[i] + r * np.cos(phi),
                cy[i] + r * np.sin(phi),
                rng.uniform(0.05e-9, 0.3e-9, k),
                rng.uniform(0.3e-9, 0.8e-9, k),
            )
        )
    return Blobs.concat(parts)


class FeatureField:
    """The lazily generated, cached blobs of an unbounded surface plus its damage."""

    def __init__(self, mix: FeatureMix, seed: int, scale: float = 1.0) -> None:
        self.mix = mix
        self.seed = seed
        self.scale = scale
        self._tiles: dict[tuple[int, int], Blobs] = {}
        self._damage: list[Blobs] = []

    def add_damage(self, blobs: Blobs) -> None:
        """Craters and clusters left by conditioning; later frames show them."""
        self._damage.append(blobs)

    @property
    def damage_parts(self) -> list[Blobs]:
        return self._damage

    @property
    def damage(self) -> Blobs:
        return Blobs.concat(self._damage)

    def blobs_in(self, xmin: float, xmax: float, ymin: float, ymax: float) -> Blobs:
        """Every blob whose centre may affect the box (tiles overlapping it, plus damage)."""
        margin = 10e-9  # debris and patch members scatter a few nm beyond their tile
        parts = []
        for ix in range(math.floor((xmin - margin) / TILE), math.floor((xmax + margin) / TILE) + 1):
            for iy in range(
                math.floor((ymin - margin) / TILE), math.floor((ymax + margin) / TILE) + 1
            ):
                tile = self._tiles.get((ix, iy))
                if tile is None:
                    tile = generate_tile(self.mix, self.seed, ix, iy, self.scale)
                    if len(self._tiles) > 4096:  # bound memory on very long runs
                        self._tiles.clear()
                    self._tiles[(ix, iy)] = tile
                parts.append(tile)
        parts.extend(self._damage)
        return Blobs.concat(parts)

    def render(self, grid: Grid, blur: float) -> FloatArray:
        return self.blobs_in(*grid.bounds_world(margin=5e-9)).render(grid, blur)
