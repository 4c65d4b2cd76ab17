"""Labelled frames for the tip-state classifier, from the simulated microscope.

The simulator is reached through the plugin registry (``config.build(manager, "driver",
"sim", ...)``), never imported: plugins meet only through hooks. Each example is a fresh
simulated microscope (its own seed, surface, noise, drift, feedback, tip) scanned once, so
examples are independent and the set is the same for the same seed whatever the order.

**Labels** are what a microscopist would call the frame: the tip state at the start of the
scan, except that a frame during which the apex changed (``sim_tip_changes``) is ``unstable``
whatever it started as. A tip of the simulator's ``unstable`` kind that happened not to change
during the frame looks like a good tip with, sometimes, a faint ghost; such frames carry no
label a picture could support and are redrawn (next seed).

**Domain randomisation** (:data:`TRAINING`): the four surface presets (Au(111) with its
herringbone, Cu(111), Si(111)-7x7, graphite), random seeds, scan sizes 2-40 nm
(log-uniform), 48-160 pixels, any rotation, both scan directions, line times 0.03-0.2 s,
white, 1/f and line-offset noise at 0.5-3x the defaults (independently), drift up to about
30 pm/s, feedback bandwidths 0.3-3 kHz, feature densities 0.5-2.5x; then, on the recorded
image, a random plane tilt, random-walk line offsets, extra white noise and, sometimes, a
glitching scan line. Optionally (``synthetic_doubles``) part of the double tips are made from a
good-tip frame by the two-apex formula (the currents of two apexes add), which is the physics
the simulator itself uses, applied to the recorded image (noise and all) as happens to a real
image a double tip records.

**Held out** (:data:`HELD_OUT`, the benchmark's set): other seeds (from 10^6), Au(111)
*without* the herringbone (training always has it), feature densities of 0.25-0.5x and
2.5-4x, noise at 0.3-0.5x and 3-4x, and larger frames (192 and 256 pixels, 10-60 nm),
without the image-level augmentations.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from probepilot.model import Channel, Frame, ScanArea, ScanSettings
from probepilot_analyzers._image import prepare
from probepilot_analyzers._tip_views import SIZE, VIEWS, views
from probepilot_analyzers.tip_state import CLASSES, MIN_SIZE

#: Decay constant of the tunnelling current (1/m) for a 4.5 eV barrier, as the simulator uses.
KAPPA = 1.0867e10
#: The simulator's scan speed limit (m/s), kept well clear of.
MAX_SPEED = 1.5e-6


@dataclass(frozen=True)
class Domain:
    """Ranges one set of examples is drawn from (see the module docstring)."""

    name: str
    surfaces: tuple[str, ...]
    herringbone: float  # probability an Au(111) surface shows its herringbone
    seeds: tuple[int, int]
    sizes: tuple[float, float]  # m, log-uniform
    pixels: tuple[int, ...]
    noise: tuple[tuple[float, float], ...]  # multipliers of the default noise, bands
    density: tuple[tuple[float, float], ...]  # feature density bands
    drift: float  # rms drift velocity per axis, m/s
    bandwidth: tuple[float, float]  # feedback bandwidth, Hz, log-uniform
    augment: bool  # image-level augmentations (tilt, line offsets, glitches)
    synthetic_doubles: float = 0.0  # fraction of double tips made by the two-apex formula


TRAINING = Domain(
    name="training",
    surfaces=("au111", "cu111", "si111_7x7", "hopg"),
    herringbone=1.0,
    seeds=(0, 10**6),
    sizes=(2e-9, 40e-9),
    pixels=(48, 64, 80, 96, 112, 128, 160),
    noise=((0.5, 3.0),),
    density=((0.5, 2.5),),
    drift=20e-12,
    bandwidth=(300.0, 3000.0),
    augment=True,
    synthetic_doubles=0.3,
)

HELD_OUT = Domain(
    name="held_out",
    surfaces=("au111", "cu111", "si111_7x7", "hopg"),
    herringbone=0.0,
    seeds=(10**6, 2 * 10**6),
    sizes=(10e-9, 60e-9),
    pixels=(192, 256),
    noise=((0.3, 0.5), (3.0, 4.0)),
    density=((0.25, 0.5), (2.5, 4.0)),
    drift=25e-12,
    bandwidth=(500.0, 2000.0),
    augment=False,
)


@dataclass(frozen=True)
class Example:
    """One drawn frame: what was asked of the simulator and the label it earned."""

    index: int
    state: str  # the tip the microscope started with
    label: str  # what the frame shows (see the module docstring)
    synthetic: bool  # a double tip made by the two-apex formula
    frame: Frame


def _band(rng: np.random.Generator, bands: tuple[tuple[float, float], ...]) -> float:
    """Log-uniform in one of ``bands`` (chosen by width in log space)."""
    widths = np.array([math.log(b / a) for a, b in bands])
    lo, hi = bands[int(rng.choice(len(bands), p=widths / widths.sum()))]
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _overrides(domain: Domain, rng: np.random.Generator, tip: str) -> dict[str, Any]:
    surface = domain.surfaces[int(rng.integers(len(domain.surfaces)))]
    return {
        "seed": int(rng.integers(*domain.seeds)),
        "surface": surface,
        "herringbone": bool(rng.random() < domain.herringbone),
        "tip": tip,
        "time_scale": 0.0,
        "noise_z": 2e-12 * _band(rng, domain.noise),
        "flicker_z": 3e-12 * _band(rng, domain.noise),
        "line_offset_z": 4e-12 * _band(rng, domain.noise),
        "feature_density": _band(rng, domain.density),
        "drift_velocity": [
            float(rng.normal(0, domain.drift)),
            float(rng.normal(0, domain.drift)),
            0.0,
        ],
        "feedback_bandwidth": _band(rng, (domain.bandwidth,)),
    }


def _settings(
    domain: Domain, rng: np.random.Generator, margin: int = 0
) -> tuple[ScanSettings, int]:
    """Scan settings (``margin`` extra pixels on every side) and the frame's own pixels."""
    size = _band(rng, (domain.sizes,))
    pixels = int(domain.pixels[int(rng.integers(len(domain.pixels)))])
    total = pixels + 2 * margin
    width = size * total / pixels
    centre = (float(rng.uniform(-3e-7, 3e-7)), float(rng.uniform(-3e-7, 3e-7)))
    angle = (
        float(rng.uniform(-math.pi, math.pi)) if domain.augment else float(rng.uniform(-0.6, 0.6))
    )
    line_time = max(float(rng.uniform(0.03, 0.2)), width / MAX_SPEED)
    direction = "down" if rng.random() < 0.5 else "up"
    area = ScanArea(centre, (width, width), total, total, angle)
    return ScanSettings(area, line_time, direction, channels=("Z",)), pixels  # type: ignore[arg-type]


def two_apex(z: np.ndarray, shifted: np.ndarray, weight: float, dz: float) -> np.ndarray:
    """Height recorded by two apexes: ``(1/2k) ln(exp(2k z) + w exp(2k (z_shifted - dz)))``,
    without overflow (``shifted`` is ``z`` seen from the second apex)."""
    k2 = 2 * KAPPA
    return np.asarray(np.logaddexp(k2 * z, math.log(weight) + k2 * (shifted - dz)) / k2)


def augment(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Image-level randomisation of a recorded topograph (m): a plane tilt, random-walk line
    offsets, extra white noise and, sometimes, one glitching line (a few pixels of spikes)."""
    ny, nx = z.shape
    scale = float(np.std(z)) or 1e-11
    out = z + rng.normal(0, 0.05) * scale * (np.arange(nx)[None, :] - nx / 2) / 4
    out = out + rng.normal(0, 0.05) * scale * (np.arange(ny)[:, None] - ny / 2) / 4
    steps = rng.normal(0, rng.uniform(0, 0.15) * scale, size=ny)
    out = out + np.cumsum(steps)[:, None]
    out = out + rng.normal(0, rng.uniform(0, 0.1) * scale, size=z.shape)
    if rng.random() < 0.15:
        row = int(rng.integers(ny))
        cols = rng.integers(nx, size=int(rng.integers(1, max(2, nx // 8))))
        out[row, cols] += rng.normal(0, 3 * scale, size=len(cols))
    return np.asarray(out)


class Simulators:
    """Builds simulated microscopes through the plugin registry.

    ``config.build`` validates every option from its schema, which costs more than a small
    scan (type hints are evaluated each time); so the first microscope is built that way
    (checking the option names and values this module uses) and later ones from the validated
    options with only the drawn values replaced (``dataclasses.replace``, same types)."""

    def __init__(self) -> None:
        from probepilot.config import load_config

        self.config, self.manager = load_config(None)
        self.factory = self.manager.registry("driver").get("sim").factory
        self.base: Any = None

    def driver(self, overrides: dict[str, Any]) -> Any:
        if self.base is None:
            driver = self.config.build(self.manager, "driver", "sim", overrides=overrides)
            self.base = driver.options
            return driver
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        return self.factory(replace(self.base, **values))


async def _scan(sims: Simulators, overrides: dict[str, Any], settings: ScanSettings) -> Frame:
    driver = sims.driver(overrides)
    await driver.connect()
    try:
        await driver.approach()
        frame: Frame = await driver.scan(settings)
    finally:
        await driver.close()
    return frame


def _with_z(frame: Frame, z: np.ndarray, settings: ScanSettings | None = None) -> Frame:
    area = frame.area
    if settings is not None:
        area = settings.area
    return replace(
        frame,
        channels={"Z": Channel("Z", "m", z, None)},
        area=area,
        lines_done=z.shape[0],
    )


async def draw(domain: Domain, seed: int, index: int, sims: Simulators) -> Example:
    """Example ``index`` of ``domain`` for ``seed``: the same arguments, the same example."""
    state = CLASSES[index % len(CLASSES)]
    for attempt in range(50):
        rng = np.random.default_rng([seed, index, attempt])
        synthetic = state == "double" and rng.random() < domain.synthetic_doubles
        tip = "good" if synthetic else state
        overrides = _overrides(domain, rng, tip)
        if synthetic:
            example = await _synthetic_double(domain, rng, overrides, sims, index)
            if example is None:
                continue
            return example
        settings, _ = _settings(domain, rng)
        frame = await _scan(sims, overrides, settings)
        changed = bool(frame.metadata.get("sim_tip_changes"))
        if state == "unstable" and not changed:
            continue
        label = "unstable" if changed else state
        z = frame.channels["Z"].forward
        if domain.augment:
            z = augment(z, rng)
        return Example(index, state, label, False, _with_z(frame, z))
    raise RuntimeError(f"no usable example {index} in 50 attempts")  # pragma: no cover


async def _synthetic_double(
    domain: Domain,
    rng: np.random.Generator,
    overrides: dict[str, Any],
    sims: Simulators,
    index: int,
) -> Example | None:
    """A good-tip frame turned double by the two-apex formula (second apex 0.6-3 nm away,
    weight 0.3-1, 0-60 pm higher), or None when the tip changed during the scan."""
    settings0, pixels = _settings(domain, np.random.default_rng(rng.integers(2**63)))
    pixel = settings0.area.size[0] / settings0.area.pixels
    distance = float(rng.uniform(0.6e-9, 3e-9)) / pixel
    distance = float(np.clip(distance, 2.0, 48.0))
    angle = float(rng.uniform(0, 2 * math.pi))
    dy, dx = round(distance * math.sin(angle)), round(distance * math.cos(angle))
    margin = max(abs(dx), abs(dy)) + 1
    area = settings0.area
    width = area.size[0] * (pixels + 2 * margin) / pixels
    settings = replace(
        settings0,
        area=replace(
            area, size=(width, width), pixels=pixels + 2 * margin, lines=pixels + 2 * margin
        ),
        line_time=max(settings0.line_time, width / MAX_SPEED),
    )
    frame = await _scan(sims, overrides, settings)
    if frame.metadata.get("sim_tip_changes"):
        return None
    full = frame.channels["Z"].forward
    crop = full[margin : margin + pixels, margin : margin + pixels]
    shifted = full[margin - dy : margin - dy + pixels, margin - dx : margin - dx + pixels]
    z = two_apex(crop, shifted, float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, 60e-12)))
    if domain.augment:
        z = augment(z, rng)
    area = replace(area, pixels=pixels, lines=pixels)
    return Example(index, "double", "double", True, _with_z(frame, z, replace(settings, area=area)))


def _each(
    domain: Domain,
    count: int,
    seed: int,
    handle: Callable[[Example], None],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Draw examples 0 .. ``count`` - 1 in one event loop, handing each to ``handle``."""
    sims = Simulators()

    async def run() -> None:
        for i in range(count):
            handle(await draw(domain, seed, i, sims))
            if progress is not None:
                progress(i + 1, count)

    asyncio.run(run())


def examples(
    domain: Domain,
    count: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Example]:
    """``count`` examples of ``domain`` (equal numbers started with each tip state)."""
    out: list[Example] = []
    _each(domain, count, seed, out.append, progress)
    return out


def dataset(
    domain: Domain,
    count: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (count, views, SIZE, SIZE) float32 and labels (indices into
    :data:`CLASSES`) of ``count`` examples (frames are turned into views as they come, so a
    large set never holds its frames)."""
    x = np.empty((count, len(VIEWS), SIZE, SIZE), dtype=np.float32)
    y = np.empty(count, dtype=np.int64)

    def keep(example: Example) -> None:
        x[example.index] = views(prepare(example.frame, min_size=MIN_SIZE).data)
        y[example.index] = CLASSES.index(example.label)

    _each(domain, count, seed, keep, progress)
    return x, y
