"""Frames with known answers, made by the simulated microscope (tests may import it; the
analyzers themselves never do), and the real files of ``../shared/stm-data``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from probepilot.model import Channel, Frame, ScanArea, ScanDirection, ScanSettings, TipState
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions
from probepilot_sim.tip import Apex, MiniTip

REPO = Path(__file__).resolve().parents[2]
STM_DATA = REPO.parent / "shared" / "stm-data"

#: A quiet, drift-free microscope: the analyzers' answers can be checked against exact truths.
QUIET = {"drift_velocity": (0.0, 0.0, 0.0), "drift_walk": 0.0, "creep": 0.0}


def microscope(surface: str = "au111", seed: int = 0, **options: object) -> Microscope:
    """A simulated microscope with a good tip that never changes by itself."""
    scope = Microscope(SimOptions(seed=seed, surface=surface, tip="good", **options))  # type: ignore[arg-type]
    scope.apex = dataclasses.replace(scope.apex, change_rate=0.0)
    return scope


def double_apex(dx: float, dy: float, dz: float = 0.02e-9, width: float = 0.04e-9) -> Apex:
    """Two sharp mini-tips; the second at (dx, dy) m from the first and ``dz`` above it."""
    return Apex(
        TipState.DOUBLE,
        (MiniTip(width=width), MiniTip(dx, dy, dz, width)),
        change_rate=0.0,
    )


def scan(
    scope: Microscope,
    size: float = 20e-9,
    pixels: int = 128,
    *,
    centre: tuple[float, float] = (0.0, 0.0),
    line_time: float = 0.05,
    direction: ScanDirection = "down",
    angle: float = 0.0,
) -> Frame:
    """One frame as ``SimDriver.scan`` delivers it (Z and Current, forward and backward)."""
    area = ScanArea(centre, (size, size), pixels, pixels, angle)
    settings = ScanSettings(area, line_time, direction)
    state = scope.apex.state.value
    plan = scope.plan_scan(settings)
    result = scope.render(plan)
    scope.commit(plan, pixels, result)
    changes = [line for line, _ in plan.apexes_after]
    return Frame(
        channels={
            "Z": Channel("Z", "m", result.z_forward, result.z_backward),
            "Current": Channel("Current", "A", result.current_forward, result.current_backward),
        },
        area=area,
        direction=direction,
        bias=scope.bias,
        setpoint=scope.setpoint,
        line_time=line_time,
        started_at=plan.start,
        finished_at=scope.clock,
        lines_done=pixels,
        source="sim",
        metadata={
            "sim_tip_state": state,
            "sim_tip_changes": ",".join(str(line) for line in changes),
        },
    )


def real_images() -> Iterator[Path]:
    """Every image file of the shared real data (none when the folder is absent)."""
    if not STM_DATA.is_dir():
        return iter(())
    suffixes = (".sxm", ".z_mtrx")
    return iter(sorted(p for p in STM_DATA.rglob("*") if p.name.lower().endswith(suffixes)))


def with_z(frame: Frame, z: np.ndarray) -> Frame:
    """``frame`` with its forward Z replaced (for bad-input tests)."""
    channels = dict(frame.channels)
    channels["Z"] = Channel("Z", "m", z, None)
    return dataclasses.replace(frame, channels=channels)
