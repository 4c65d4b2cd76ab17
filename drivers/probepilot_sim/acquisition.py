"""Rendering one frame the way an STM acquires it: line by line, forward and backward.

Given where the sample is at every moment (drift, creep), which apex the tip has on every line
(spontaneous tip changes included) and how the z-controller is set, :func:`render` computes the
forward and backward Z and Current of a whole frame with array operations only:

1. Each pixel's time and the sample displacement then, interpolated between half-line samples
   of the drift path, give the surface position the tip actually probed: drift shears and
   stretches the image, and forward and backward traces see slightly different positions.
2. The surface is rendered once per mini-tip width on a grid aligned with the scan and anchored
   on the nominal pixels, then sampled bilinearly at those positions for every mini-tip; the
   constant-current height combines the mini-tips (:mod:`probepilot_sim.imaging`).
3. A tip change splits the frame: rows before it use the old apex, rows after the new one, and
   the line where it happens switches at the pixel where it happened, with a decaying spike along
   the scan direction (the streak) and a Z offset from the change in apex length.
4. The z-controller has a finite bandwidth: a first-order low-pass along the scan direction, so
   steep edges leave a tracking error that differs between forward and backward, and the
   Current channel shows that error as ``I_set exp(-2 kappa (z_measured - z_target))``.
5. White and 1/f noise along the acquisition path, and per-line offsets, are added to Z; relative
   and floor noise to the current.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.fft import next_fast_len

from probepilot.model import FloatArray, ScanArea, ScanDirection
from probepilot_sim.grid import Grid, make_grid
from probepilot_sim.imaging import apparent_height
from probepilot_sim.noise import flicker
from probepilot_sim.surfaces import Surface
from probepilot_sim.tip import Apex

Mode = Literal["feedback", "hold", "withdrawn"]


@dataclass(frozen=True, slots=True)
class NoiseLevels:
    """Noise amplitudes (rms): Z in metres, current relative and absolute (A)."""

    z_white: float = 2e-12
    z_flicker: float = 3e-12
    z_line: float = 4e-12
    current_relative: float = 0.03
    current_floor: float = 0.2e-12


@dataclass(frozen=True, slots=True)
class TipChange:
    """A spontaneous apex change during the scan: at row ``line``, x index ``pixel``, in the
    forward or backward pass; ``apex`` is the apex from then on."""

    line: int
    pixel: int
    backward: bool
    apex: Apex
    spike: float = 0.1e-9  # height of the streak's spike, m
    decay: float = 6.0  # pixels over which the spike decays


@dataclass(slots=True)
class Request:
    """Everything :func:`render` needs; the microscope fills it in."""

    area: ScanArea
    direction: ScanDirection
    line_time: float
    origin: tuple[float, float]  # world position of the frame centre
    displacement: FloatArray  # (2 * lines + 1, 3): sample displacement at half-line boundaries
    apex: Apex
    changes: tuple[TipChange, ...]
    surface_z: float  # scanner z at which the main apex would touch the mean surface (h = 0)
    gap: float
    kappa: float
    setpoint: float
    bias_sign: float
    mode: Mode
    z_hold: float
    z_range: float
    tau: float  # z-controller time constant, s
    noise: NoiseLevels
    rng: np.random.Generator
    oversample: int = 1


@dataclass(slots=True)
class Result:
    """Forward and backward channels, backward already in x order, shape (lines, pixels)."""

    z_forward: FloatArray
    z_backward: FloatArray
    current_forward: FloatArray
    current_backward: FloatArray
    touched_line: int | None = None  # first row where the tip hit the surface
    target_forward: FloatArray = field(default_factory=lambda: np.zeros(0))


def nominal_axes(area: ScanArea, direction: ScanDirection) -> tuple[FloatArray, FloatArray]:
    """Local u of each pixel and v of each row (row 0 = first scanned line)."""
    w, h = float(area.size[0]), float(area.size[1])
    u = np.asarray(-w / 2 + (np.arange(area.pixels) + 0.5) * (w / area.pixels), dtype=np.float64)
    k = np.arange(area.lines) + 0.5
    rows = (
        (h / 2 - k * (h / area.lines)) if direction == "down" else (-h / 2 + k * (h / area.lines))
    )
    v = np.asarray(rows, dtype=np.float64)
    return u, v


def _segments(req: Request) -> list[tuple[Apex, int, int]]:
    """(apex, first row, last row) with shared boundary rows at each change."""
    out = []
    start = 0
    apex = req.apex
    for ch in req.changes:
        out.append((apex, start, ch.line))
        apex, start = ch.apex, ch.line
    out.append((apex, start, req.area.lines - 1))
    return out


def _lag(target: FloatArray, alpha: float) -> FloatArray:
    """First-order low-pass ``y[n] = alpha x[n] + (1 - alpha) y[n-1]`` along axis 1, settled
    on each line's first value.

    Written as a convolution with the truncated exponential kernel ``alpha (1 - alpha)^m``
    (a few shifted adds for short kernels, an FFT for long ones), so it needs no per-pixel loop
    and no scipy.signal (whose import alone takes a second).
    """
    if alpha >= 1.0:
        return target.copy()
    r = 1.0 - alpha
    px = target.shape[1]
    taps = min(px, math.ceil(math.log(1e-12) / math.log(r)) + 1) if r > 0 else 1
    first = target[:, :1]
    x = target - first  # settled on x[0]: the filter of the rest starts from rest
    if taps <= 48:
        y = alpha * x
        weight = alpha
        for m in range(1, taps):
            weight *= r
            y[:, m:] += weight * x[:, :-m]
    else:
        n = next_fast_len(px + taps, real=True)
        kernel = np.fft.rfft(alpha * r ** np.arange(taps), n)
        y = np.fft.irfft(np.fft.rfft(x, n, axis=1) * kernel, n, axis=1)[:, :px]
    y += first
    return np.asarray(y, dtype=np.float64)


def render(surface: Surface, req: Request) -> Result:
    """Acquire the frame described by ``req`` on ``surface``.

    Forward and backward passes are stacked on a leading axis of size 2 (backward in x order)
    so every step below is one array operation for both.
    """
    area = req.area
    px, nl = area.pixels, area.lines
    c, s = math.cos(area.angle), math.sin(area.angle)
    u_nom, v_nom = nominal_axes(area, req.direction)

    # 1. Positions probed: nominal minus the sample displacement, interpolated in time between
    # half-line samples; the backward pass reaches x index j late in its half line.
    d = req.displacement
    start = np.stack([d[0 : 2 * nl : 2], d[1 : 2 * nl + 1 : 2]])  # (2, nl, 3)
    step = np.stack([d[1 : 2 * nl + 1 : 2], d[2 : 2 * nl + 1 : 2]]) - start
    frac = (np.arange(px) + 0.5) / px
    f = np.stack([frac, 1.0 - frac])[:, None, :]  # (2, 1, px)
    du0 = (c * start[..., 0] + s * start[..., 1])[..., None]
    dv0 = (-s * start[..., 0] + c * start[..., 1])[..., None]
    du1 = (c * step[..., 0] + s * step[..., 1])[..., None]
    dv1 = (-s * step[..., 0] + c * step[..., 1])[..., None]
    u = u_nom - du0 - du1 * f  # (2, nl, px)
    v = v_nom[:, None] - dv0 - dv1 * f
    dz = start[..., 2, None] + step[..., 2, None] * f

    # 2. One grid for the whole frame, covering every sample of every mini-tip.
    segments = _segments(req)
    offsets = [
        (c * t.dx + s * t.dy, -s * t.dx + c * t.dy) for apex, _, _ in segments for t in apex.tips
    ]
    ou = [o[0] for o in offsets]
    ov = [o[1] for o in offsets]
    u_lo, u_hi = float(u.min()) + min(ou), float(u.max()) + max(ou)
    v_lo, v_hi = float(v.min()) + min(ov), float(v.max()) + max(ov)
    spacing = [area.size[0] / px / req.oversample, area.size[1] / nl / req.oversample]
    # Huge creep after a big move could ask for an enormous grid; coarsen instead.
    while (u_hi - u_lo) / spacing[0] * (v_hi - v_lo) / spacing[1] > 16 * px * nl + 65536:
        spacing = [spacing[0] * 2, spacing[1] * 2]
    grid: Grid = make_grid(
        req.origin,
        area.angle,
        (u_lo, u_hi),
        (v_lo, v_hi),
        (spacing[0], spacing[1]),
        anchor=(float(u_nom[0]), float(v_nom[0])),
    )
    widths = sorted({t.width for apex, _, _ in segments for t in apex.tips})
    heights = {w: surface.render(grid, w) for w in widths}

    # 3. Constant-current height per apex segment, switching mid-line at each change.
    if len(segments) == 1:
        apex = segments[0][0]
        target = apparent_height(apex, heights, grid, u, v, req.kappa, area.angle)
        target += apex.length
    else:
        target = np.empty((2, nl, px))
        for k, (apex, first, last) in enumerate(segments):
            rows = slice(first, last + 1)
            old = target[:, first].copy()
            target[:, rows] = apparent_height(
                apex, heights, grid, u[:, rows], v[:, rows], req.kappa, area.angle
            )
            target[:, rows] += apex.length
            if k:
                _switch(target, old, req.changes[k - 1], px)
    target += req.surface_z + req.gap
    target += dz

    # 4. The z-controller and the current it sees.
    if req.mode == "feedback":
        dt = req.line_time / px
        alpha = 1.0 - math.exp(-dt / req.tau) if req.tau > 0 else 1.0
        # Each pass is filtered in the order it was scanned (backward: right to left).
        z = np.stack([target[0], target[1][:, ::-1]]).reshape(2 * nl, px)
        z = _lag(z, alpha).reshape(2, nl, px)
        z[1] = z[1][:, ::-1]
        np.clip(z, 0.0, req.z_range, out=z)
        hit = (target > req.z_range + req.gap).any(axis=(0, 2))
    elif req.mode == "hold":
        z = np.full((2, nl, px), req.z_hold)
        hit = (target - req.gap > req.z_hold).any(axis=(0, 2))
    else:
        z = np.full((2, nl, px), req.z_range)
        hit = np.zeros(nl, dtype=bool)
    touched = int(np.argmax(hit)) if hit.any() else None

    if req.mode == "withdrawn":
        current = np.zeros_like(z)
    else:
        current = target - z
        current *= 2 * req.kappa
        np.minimum(current, 7.0, out=current)  # the preamplifier saturates ~1000x the setpoint
        np.exp(current, out=current)
        current *= req.setpoint

    # 5. Noise along the acquisition path: forward line, backward line, next line ...
    rng = req.rng
    nz = req.noise
    if nz.z_white > 0:
        z += nz.z_white * rng.standard_normal((2, nl, px))
    if nz.z_flicker > 0:
        path = flicker(rng, 2 * nl * px, nz.z_flicker).reshape(nl, 2, px)
        z[0] += path[:, 0]
        z[1] += path[:, 1, ::-1]
    if nz.z_line > 0:
        z += nz.z_line * rng.standard_normal(nl)[:, None]
    if nz.current_relative > 0 or nz.current_floor > 0:
        # Relative and floor noise are independent Gaussians: one draw of their sum.
        spread = np.abs(current)
        spread *= nz.current_relative
        if nz.current_floor > 0:
            np.hypot(spread, nz.current_floor, out=spread)
        spread *= rng.standard_normal((2, nl, px))
        current += spread
    current *= req.bias_sign
    return Result(z[0], z[1], current[0], current[1], touched, target[0])


def _switch(target: FloatArray, old: FloatArray, ch: TipChange, px: int) -> None:
    """Row ``ch.line`` of ``target`` holds the new apex's heights; put back the old apex's
    ``old`` where the change had not happened yet, and add the streak after it."""
    j = np.arange(px)
    row = ch.line
    if ch.backward:  # forward used the old apex; backward (right to left) switched at pixel
        target[0, row] = old[0]
        target[1, row] = np.where(j > ch.pixel, old[1], target[1, row])
        after = ch.pixel - j  # pixels scanned since the change
        target[1, row] += np.where(after >= 0, ch.spike * np.exp(-np.abs(after) / ch.decay), 0.0)
    else:
        target[0, row] = np.where(j < ch.pixel, old[0], target[0, row])
        after = j - ch.pixel
        target[0, row] += np.where(after >= 0, ch.spike * np.exp(-np.abs(after) / ch.decay), 0.0)
