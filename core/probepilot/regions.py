"""Region search: where to image next, where to condition, when to ask for a coarse move.

The piezo range is covered by a grid of cells one frame wide (DeepSPM's masked grid, Krull et
al. 2020). A cell is free until it is imaged, damaged by conditioning (a pulse or dip marks
every cell within its damage radius) or found rough or contaminated by the roughness analyzer.
The next region is the free cell that is closest to the tip and to the centre of the range (the
centre is where the scanner is most linear and creeps least); when no free cell is left, the
session makes a coarse move and the map starts afresh.

Conditioning happens on the largest clean square of the last frame (the roughness analyzer's
``clean_x``/``clean_y``), and the cells it damages are masked, so imaging continues away from
it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probepilot.model import Action, Dip, Finding, Pulse, ScanArea


class Cell(enum.IntEnum):
    """What is known about one cell of the grid."""

    FREE = 0
    IMAGED = 1
    DAMAGED = 2
    ROUGH = 3


#: Weight of the distance to the centre against the distance to the tip when ranking cells.
CENTRE_WEIGHT = 0.5


def damage_radius(action: Action) -> float:
    """Radius (m) around a conditioning spot that is no longer fit to image.

    From the simulator's damage model and the size of real pulse marks and dip craters: a pulse
    leaves a mound or pit about ``0.5 + 0.2 |V|`` nm wide, a dip a crater with a rim about
    ``(0.5 + 0.3 d/nm)`` nm wide plus piled-up material; three widths are kept clear.
    """
    if isinstance(action, Pulse):
        return 3 * (0.5 + 0.2 * abs(action.voltage)) * 1e-9
    if isinstance(action, Dip):
        return 3 * 1.6 * (0.5 + 0.3 * min(action.depth * 1e9, 5.0)) * 1e-9
    return 0.0


@dataclass(frozen=True, slots=True)
class RegionChoice:
    """The next imaging area, or None with the reason when the range is used up."""

    area: ScanArea | None
    cell: tuple[int, int] | None = None
    reason: str = ""


class RegionMap:
    """The masked grid over the piezo range (x and y centred on zero).

    :param piezo: the scanner's (x, y) travel in metres.
    :param frame: the side of one imaging frame (m); cells are this wide.
    :param margin: distance (m) kept from the edges of the range, where piezos are least
        linear.
    """

    def __init__(
        self, piezo: tuple[float, float], frame: float, *, margin: float | None = None
    ) -> None:
        if frame <= 0 or min(piezo) <= 0:
            raise ValueError("the piezo range and the frame size must be positive")
        self.frame = frame
        self.margin = frame / 2 if margin is None else margin
        usable = [p - 2 * self.margin for p in piezo]
        # The tolerance keeps 180 nm / 20 nm at 9 cells despite floating point.
        self.nx = max(1, math.floor(usable[0] / frame + 1e-9))
        self.ny = max(1, math.floor(usable[1] / frame + 1e-9))
        # Cell centres, symmetric about zero.
        self.xs = (np.arange(self.nx) - (self.nx - 1) / 2) * frame
        self.ys = (np.arange(self.ny) - (self.ny - 1) / 2) * frame
        self.cells = np.full((self.ny, self.nx), Cell.FREE, dtype=np.int8)
        self.coarse_moves = 0

    # -- queries -----------------------------------------------------------------------------

    @property
    def free(self) -> int:
        return int(np.count_nonzero(self.cells == Cell.FREE))

    def counts(self) -> dict[str, int]:
        """Cells in each state, for events and the dashboard."""
        return {c.name.lower(): int(np.count_nonzero(self.cells == c)) for c in Cell}

    def cell_of(self, x: float, y: float) -> tuple[int, int] | None:
        """(row, column) of the cell holding (x, y), None outside the grid."""
        col = round(x / self.frame + (self.nx - 1) / 2)
        row = round(y / self.frame + (self.ny - 1) / 2)
        if 0 <= row < self.ny and 0 <= col < self.nx:
            return row, col
        return None

    def next_region(
        self, tip: tuple[float, float], pixels: int, lines: int | None = None
    ) -> RegionChoice:
        """The free cell closest to the tip and to the centre, as a scan area."""
        free = np.argwhere(self.cells == Cell.FREE)
        if len(free) == 0:
            return RegionChoice(None, reason=f"all {self.cells.size} cells of the range are used")
        x = self.xs[free[:, 1]]
        y = self.ys[free[:, 0]]
        cost = np.hypot(x - tip[0], y - tip[1]) + CENTRE_WEIGHT * np.hypot(x, y)
        row, col = (int(v) for v in free[int(np.argmin(cost))])
        area = ScanArea(
            centre=(float(self.xs[col]), float(self.ys[row])),
            size=(self.frame, self.frame),
            pixels=pixels,
            lines=lines or pixels,
        )
        return RegionChoice(area, (row, col))

    # -- updates -----------------------------------------------------------------------------

    def mark(self, area: ScanArea, state: Cell) -> None:
        """Mark the cell under ``area``'s centre (never downgrade damaged or rough to imaged)."""
        cell = self.cell_of(*area.centre)
        if cell is not None and (state != Cell.IMAGED or self.cells[cell] == Cell.FREE):
            self.cells[cell] = state

    def mark_damaged(self, x: float, y: float, radius: float) -> int:
        """Mask every cell whose square comes within ``radius`` of (x, y); how many changed."""
        half = self.frame / 2
        gx, gy = np.meshgrid(self.xs, self.ys)
        dx = np.maximum(np.abs(gx - x) - half, 0.0)
        dy = np.maximum(np.abs(gy - y) - half, 0.0)
        hit = (np.hypot(dx, dy) <= radius) & (self.cells != Cell.DAMAGED)
        self.cells[hit] = Cell.DAMAGED
        return int(np.count_nonzero(hit))

    def note_findings(self, area: ScanArea, findings: Sequence[Finding]) -> None:
        """Mark the frame's cell rough when the roughness analyzer says it is unfit to image."""
        for f in _roughness(findings):
            if float(f.values.get("fit_to_image", 1.0)) < 0.5 and f.confidence >= 0.5:
                self.mark(area, Cell.ROUGH)

    def after_coarse_move(self) -> None:
        """A coarse move brought a fresh area under the scanner: everything is free again."""
        self.cells[:] = Cell.FREE
        self.coarse_moves += 1


def conditioning_spot(
    findings: Sequence[Finding], area: ScanArea | None
) -> tuple[float, float] | None:
    """Where to condition: the centre of the largest clean square of the last frame when the
    roughness analyzer found one fit to condition on, else the centre of the last frame (it has
    been imaged already), else None (condition where the tip is)."""
    fit = [f for f in _roughness(findings) if float(f.values.get("fit_to_condition", 0)) >= 0.5]
    best = max(fit, key=lambda f: float(f.values.get("clean_square", 0.0)), default=None)
    if best is not None:
        x, y = float(best.values.get("clean_x", math.nan)), float(best.values.get("clean_y", 0.0))
        if math.isfinite(x) and math.isfinite(y):
            return x, y
    return area.centre if area is not None else None


def _roughness(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind == "roughness" and f.values.get("status", "ok") == "ok"]
