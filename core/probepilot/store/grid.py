"""Grid spectroscopy: one spectrum at every point of a rectangular (possibly rotated) grid.

The model (:mod:`probepilot.model`) has frames and single spectra; grids only come from files, so
their type lives here, next to the ``.3ds`` reader and writer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from probepilot.model import ScanArea
from probepilot.store._common import BoolArray, FloatArray, MetaValue


@dataclass(slots=True)
class Grid:
    """A grid of spectra, SI units throughout.

    Arrays are indexed ``[row, column]`` like frames: ``(ny, nx)`` for per-point values and
    ``(ny, nx, points)`` for ``channels``. Row 0 is the first row measured, column 0 the first
    point of a row. Nanonis measures grids bottom row first (its grids are always "up"), so row
    0 lies at the low-y edge of ``area`` in the area's own (rotated) frame.

    ``sweep`` is the swept signal (``sweep_name``, ``sweep_unit``, e.g. ``"Bias"``, ``"V"``)
    shared by every point. ``parameters`` holds the values recorded once per point
    (``"X"``, ``"Y"``, ``"Z"``, ``"Sweep Start"`` ...), units in ``parameter_units``; the names in
    ``fixed`` are those the instrument calls fixed (the sweep range), the rest are experiment
    parameters. ``measured`` is False where the point was never measured (an aborted grid); there
    every channel and parameter is NaN.
    """

    sweep_name: str
    sweep_unit: str
    sweep: FloatArray
    channels: dict[str, FloatArray]
    units: dict[str, str]
    parameters: dict[str, FloatArray]
    parameter_units: dict[str, str]
    measured: BoolArray
    area: ScanArea
    fixed: tuple[str, ...] = ()
    started_at: float = math.nan
    finished_at: float = math.nan
    source: str = ""
    metadata: dict[str, MetaValue] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``: rows and points per row."""
        return self.area.lines, self.area.pixels

    @property
    def complete(self) -> bool:
        """True when every point was measured."""
        return bool(self.measured.all())

    def nominal_positions(self) -> FloatArray:
        """Where the grid's points are meant to be, ``(ny, nx, 2)`` in metres.

        Nanonis places point ``(j, i)`` at ``(-w/2 + i*w/nx, -h/2 + j*h/ny)`` in the area's frame
        (first point on the corner, last one a step short of the opposite corner), rotated by
        ``area.angle`` about ``area.centre``.
        """
        ny, nx = self.shape
        (cx, cy), (width, height) = self.area.centre, self.area.size
        u = -width / 2 + np.arange(nx) * (width / nx)
        v = -height / 2 + np.arange(ny) * (height / ny)
        uu, vv = np.meshgrid(u, v)
        c, s = math.cos(self.area.angle), math.sin(self.area.angle)
        return np.stack((cx + uu * c - vv * s, cy + uu * s + vv * c), axis=-1)

    @property
    def positions(self) -> FloatArray:
        """Tip position of every point, ``(ny, nx, 2)`` in metres: the recorded ``X``/``Y``
        parameters where the point was measured, :meth:`nominal_positions` elsewhere."""
        where = self.nominal_positions()
        if "X" in self.parameters and "Y" in self.parameters:
            recorded = np.stack((self.parameters["X"], self.parameters["Y"]), axis=-1)
            where[self.measured] = recorded[self.measured]
        return where
