"""Sample surfaces in real units, generated from a seed: the presets the simulator images.

A :class:`Surface` is a sum of layers rendered on a scan-aligned grid through a Gaussian apex of a
given width (``blur``): a sample tilt, monatomic step edges (meandering terraces), an atomic lattice
(:mod:`probepilot_sim.lattice`), an optional reconstruction such as the Au(111) herringbone, and
Gaussian blobs for adsorbates, molecules, vacancies, debris, contamination and conditioning damage
(:mod:`probepilot_sim.features`). Every layer blurs analytically, so the rendered height is what
a mini-tip of that width sees. Heights are in metres; the surface is unbounded.

Presets (:data:`PRESETS`): ``au111`` (with the herringbone unless switched off), ``cu111``,
``si111_7x7`` and ``hopg``. :func:`from_height_map` turns a measured topography (an ``.sxm`` Z
channel) into a surface, so real data can be re-imaged with a simulated tip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from probepilot.model import FloatArray
from probepilot_sim import lattice as lat
from probepilot_sim.features import Blobs, FeatureField, FeatureMix
from probepilot_sim.grid import Grid
from probepilot_sim.spectroscopy import DOS, METAL_FLAT, au111, cu111, graphite, si111_7x7


class Layer(Protocol):
    """Anything that can render its height on a grid through an apex of width ``blur``."""

    def render(self, grid: Grid, blur: float) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class Tilt:
    """The macroscopic sample tilt every raw image shows (slopes dz/dx, dz/dy)."""

    gx: float
    gy: float

    def render(self, grid: Grid, blur: float) -> FloatArray:
        rows, cols = grid.project(self.gx, self.gy)
        return rows + cols


@dataclass(frozen=True, slots=True)
class Terraces:
    """A vicinal surface: monatomic steps of ``step_height`` every ``width`` on average, along a
    meandering line field, descending along ``angle``.

    The terrace index is ``t = (n . r + meander(r)) / width``; the height is a staircase in ``t``
    whose edges are error functions of the distance to the nearest step, of intrinsic width
    ``edge`` widened by the apex.
    """

    step_height: float
    width: float
    angle: float
    edge: float = 0.15e-9
    # (kx, ky, amplitude, phase) of the meander; wavelengths of a few terrace widths.
    meander: tuple[tuple[float, float, float, float], ...] = ()

    def render(self, grid: Grid, blur: float) -> FloatArray:
        n = (math.cos(self.angle) / self.width, math.sin(self.angle) / self.width)
        rows, cols = grid.project(n[0], n[1])
        t = rows + cols
        for kx, ky, amp, phase in self.meander:
            r, c = grid.project(kx, ky, phase)
            c = np.remainder(c, 2 * math.pi)
            a = amp / self.width
            # sin(r + c) = sin r cos c + cos r sin c, as outer products.
            t += a * (np.sin(r) * np.cos(c) + np.cos(r) * np.sin(c))
        k = np.floor(t + 0.5)
        dist = (t - k) * self.width
        sigma = math.hypot(self.edge, blur)
        level = (k - 1) + 0.5 * (1 + erf(dist * (1 / (sigma * math.sqrt(2)))))
        out: FloatArray = -self.step_height * level
        return out


@dataclass(frozen=True, slots=True)
class Herringbone:
    """The Au(111) 22 x sqrt(3) reconstruction: pairs of soliton ridges (fcc/hcp domain walls)
    6.3 nm apart that zigzag by 120 degrees every ``elbow`` metres.
    """

    angle: float
    height: float = 15e-12
    period: float = 6.3e-9
    pair_gap: float = 2.5e-9
    ridge_width: float = 0.6e-9
    elbow: float = 28e-9

    def render(self, grid: Grid, blur: float) -> FloatArray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        rp, cp = grid.project(c, s)  # along the zigzag axis
        rq, cq = grid.project(-s, c)  # across it
        p = rp + cp
        # Ridges run at +-30 degrees to the q axis (120 degrees between domains): a triangle wave
        # of slope tan(60 deg) shears q, rounded at the elbows.
        p *= 1 / self.elbow
        phase = np.abs(_mod(p, 2.0) - 1.0) - 0.5  # in [-0.5, 0.5]
        q = rq + cq - math.tan(math.radians(60)) * self.elbow * phase
        # Along q the ridge spacing is period / cos(60 deg).
        spacing = self.period / math.cos(math.radians(60))
        width = math.hypot(self.ridge_width, blur)
        amp = self.height * self.ridge_width / width
        out = np.zeros(grid.shape)
        for offset in (0.0, self.pair_gap / math.cos(math.radians(60))):
            d = _mod(q - offset, spacing) - spacing / 2
            out += amp * np.exp(-0.5 * (d / width) ** 2)
        return out


def _mod(x: FloatArray, period: float) -> FloatArray:
    """``x mod period`` in [0, period) (several times faster than ``np.remainder``)."""
    out: FloatArray = x - period * np.floor(x * (1 / period))
    return out


@dataclass(frozen=True, slots=True)
class LatticeLayer:
    lattice: lat.FourierLattice

    def render(self, grid: Grid, blur: float) -> FloatArray:
        return self.lattice.render(grid, blur)


@dataclass(slots=True)
class Surface:
    """What the simulator images: layers plus the sample's densities of states."""

    name: str
    layers: list[Layer]
    features: FeatureField | None = None
    dos: DOS = METAL_FLAT
    step_height: float = 0.0
    lattice: lat.FourierLattice | None = None
    description: str = ""

    def render(self, grid: Grid, blur: float) -> FloatArray:
        """Height (m) on ``grid`` seen through a Gaussian apex of std ``blur`` (m)."""
        out = np.zeros(grid.shape)
        for layer in self.layers:
            out += layer.render(grid, blur)
        if self.features is not None:
            out += self.features.render(grid, blur)
        return out

    def add_damage(self, blobs: Blobs) -> None:
        if self.features is None:
            self.features = FeatureField(FeatureMix(), seed=0)
        self.features.add_damage(blobs)


# --------------------------------------------------------------------------------------------
# Presets


def _meander(
    rng: np.random.Generator, width: float
) -> tuple[tuple[float, float, float, float], ...]:
    out = []
    for _ in range(3):
        wavelength = rng.uniform(2.5, 6.0) * width
        direction = rng.uniform(0, 2 * math.pi)
        k = 2 * math.pi / wavelength
        out.append(
            (
                k * math.cos(direction),
                k * math.sin(direction),
                rng.uniform(0.08, 0.18) * width,
                rng.uniform(0, 2 * math.pi),
            )
        )
    return tuple(out)


def _base(rng: np.random.Generator, step: float, width: tuple[float, float]) -> list[Layer]:
    w = rng.uniform(*width)
    return [
        Tilt(rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01)),
        Terraces(step, w, rng.uniform(0, 2 * math.pi), meander=_meander(rng, w)),
    ]


def make_au111(seed: int, *, herringbone: bool = True, density: float = 1.0) -> Surface:
    """Au(111): a = 0.288 nm, 0.236 nm steps, herringbone, adsorbates, a few molecules."""
    rng = np.random.default_rng([seed, 0xA0])
    rotation = rng.uniform(0, math.pi / 3)
    lattice = lat.hexagonal("Au(111)", 0.2884e-9, 25e-12, rotation)
    layers = _base(rng, 0.2355e-9, (40e-9, 90e-9))
    layers.append(LatticeLayer(lattice))
    if herringbone:
        layers.append(Herringbone(rotation + math.pi / 6))
    mix = FeatureMix(
        adsorbates=5.0e15,
        molecules=1.5e15,
        vacancies=3e15,
        debris=0.04e15,
        patches=0.012e15,
    )
    return Surface(
        "au111",
        layers,
        FeatureField(mix, seed, density),
        au111(),
        0.2355e-9,
        lattice,
        "Au(111) terraces with the herringbone reconstruction" if herringbone else "Au(111)",
    )


def make_cu111(seed: int, *, density: float = 1.0) -> Surface:
    """Cu(111): a = 0.256 nm, 0.208 nm steps, CO molecules imaged as shallow depressions."""
    rng = np.random.default_rng([seed, 0xC0])
    lattice = lat.hexagonal("Cu(111)", 0.2556e-9, 20e-12, rng.uniform(0, math.pi / 3))
    layers = _base(rng, 0.208e-9, (30e-9, 70e-9))
    layers.append(LatticeLayer(lattice))
    mix = FeatureMix(
        adsorbates=1.5e15,
        depressions=5e15,
        vacancies=2e15,
        debris=0.05e15,
        patches=0.015e15,
    )
    return Surface(
        "cu111", layers, FeatureField(mix, seed, density), cu111(), 0.208e-9, lattice, "Cu(111)"
    )


def make_si111_7x7(seed: int, *, density: float = 1.0) -> Surface:
    """Si(111)-7x7: 2.69 nm reconstruction cells, 0.314 nm steps, few adsorbates, missing
    adatoms as vacancies."""
    rng = np.random.default_rng([seed, 0x51])
    lattice = lat.si_7x7(rng.uniform(0, math.pi / 3))
    layers = _base(rng, 0.314e-9, (50e-9, 120e-9))
    layers.append(LatticeLayer(lattice))
    mix = FeatureMix(
        adsorbates=1.0e15,
        vacancies=4e15,
        debris=0.04e15,
        patches=0.01e15,
        adsorbate_height=(0.1e-9, 0.25e-9),
    )
    return Surface(
        "si111_7x7",
        layers,
        FeatureField(mix, seed, density),
        si111_7x7(),
        0.314e-9,
        lattice,
        "Si(111)-7x7 reconstruction",
    )


def make_hopg(seed: int, *, density: float = 1.0) -> Surface:
    """Highly oriented pyrolytic graphite: a = 0.246 nm (the visible sublattice), 0.335 nm
    steps far apart, a clean surface with occasional debris."""
    rng = np.random.default_rng([seed, 0x6C])
    lattice = lat.hexagonal("graphite", 0.246e-9, 60e-12, rng.uniform(0, math.pi / 3))
    layers = _base(rng, 0.335e-9, (150e-9, 400e-9))
    layers.append(LatticeLayer(lattice))
    mix = FeatureMix(adsorbates=0.8e15, debris=0.03e15, patches=0.008e15, vacancies=0.5e15)
    return Surface(
        "hopg", layers, FeatureField(mix, seed, density), graphite(), 0.335e-9, lattice, "HOPG"
    )


PRESETS: dict[str, Callable[..., Surface]] = {
    "au111": make_au111,
    "cu111": make_cu111,
    "si111_7x7": make_si111_7x7,
    "hopg": make_hopg,
}


def make_surface(
    name: str, seed: int, *, herringbone: bool = True, density: float = 1.0
) -> Surface:
    """The preset ``name`` generated from ``seed``; :class:`KeyError` lists the choices."""
    if name not in PRESETS:
        raise KeyError(f"unknown surface preset {name!r}; choose from {', '.join(PRESETS)}")
    if name == "au111":
        return make_au111(seed, herringbone=herringbone, density=density)
    return PRESETS[name](seed, density=density)


# --------------------------------------------------------------------------------------------
# Measured topography as a surface


@dataclass(frozen=True, slots=True)
class HeightMap:
    """A measured height map (rows along y, columns along x) of ``size`` (m), centred on the
    world origin and mirrored beyond its edges so it tiles the plane without jumps."""

    heights: FloatArray
    size: tuple[float, float]

    def render(self, grid: Grid, blur: float) -> FloatArray:
        ny, nx = self.heights.shape
        x, y = grid.world_xy()
        fx = (x / self.size[0] + 0.5) * nx - 0.5
        fy = (y / self.size[1] + 0.5) * ny - 0.5
        fx = _mirror(fx, nx)
        fy = _mirror(fy, ny)
        ix = np.clip(np.floor(fx).astype(np.intp), 0, nx - 2)
        iy = np.clip(np.floor(fy).astype(np.intp), 0, ny - 2)
        tx = fx - ix
        ty = fy - iy
        h = self.heights
        out = (
            h[iy, ix] * (1 - tx) * (1 - ty)
            + h[iy, ix + 1] * tx * (1 - ty)
            + h[iy + 1, ix] * (1 - tx) * ty
            + h[iy + 1, ix + 1] * tx * ty
        )
        du, dv = grid.spacing
        if blur > 0:
            out = gaussian_filter(out, (blur / dv, blur / du), mode="nearest")
        return np.asarray(out, dtype=np.float64)


def _mirror(f: FloatArray, n: int) -> FloatArray:
    """Reflect fractional pixel indices into [0, n - 1]."""
    period = 2 * (n - 1)
    f = np.remainder(f, period)
    return np.where(f > n - 1, period - f, f)


def from_height_map(
    heights: FloatArray,
    size: tuple[float, float],
    *,
    name: str = "height map",
    dos: DOS = METAL_FLAT,
) -> Surface:
    """A surface whose topography is ``heights`` (m), e.g. the Z channel of a real image.

    The map is levelled (a plane fit removed) and zero-mean; no lattice or features are added,
    so re-imaging it shows only what the simulated tip, drift and noise do to real topography.
    """
    h = np.array(heights, dtype=np.float64)
    if h.ndim != 2 or min(h.shape) < 2:
        raise ValueError(f"a height map needs at least 2 x 2 values, got shape {h.shape}")
    bad = ~np.isfinite(h)
    if bad.all():
        raise ValueError("the height map has no finite values")
    h[bad] = np.nanmean(h[~bad])
    ny, nx = h.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    design = np.column_stack([np.ones(h.size), xx.ravel(), yy.ravel()])
    coef, *_ = np.linalg.lstsq(design, h.ravel(), rcond=None)
    h -= (design @ coef).reshape(h.shape)
    return Surface(name, [HeightMap(h, size)], None, dos, 0.0, None, f"measured topography {name}")
