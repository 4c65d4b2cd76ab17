"""``probepilot sim-preview``: the same area imaged with a good, a double, a blunt and an unstable
tip, side by side in one PNG (forward Z, rows levelled, gold palette)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from probepilot.model import ScanArea, ScanSettings, TipState
from probepilot.store.png import colourise, levelled, write_png
from probepilot_sim import tip as tips
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions

STATES = (TipState.GOOD, TipState.DOUBLE, TipState.BLUNT, TipState.UNSTABLE)


def render_states(
    options: SimOptions, size: float, pixels: int, line_time: float = 0.2
) -> list[tuple[TipState, np.ndarray]]:
    """Forward Z of one frame per tip state, on identical microscopes (same seed and area)."""
    out: list[tuple[TipState, np.ndarray]] = []
    for state in STATES:
        scope = Microscope(dataclasses.replace(options, tip="good"))
        rng = np.random.default_rng([options.seed, 0x9E, len(out)])
        scope.apex = tips.make_apex(state, rng)
        if state == TipState.UNSTABLE:  # make sure the preview shows what "unstable" means
            scope.apex = dataclasses.replace(
                scope.apex, change_rate=max(scope.apex.change_rate, 0.03)
            )
        settings = ScanSettings(ScanArea((0.0, 0.0), (size, size), pixels, pixels), line_time)
        plan = scope.plan_scan(settings)
        result = scope.render(plan)
        out.append((state, result.z_forward))
    return out


def write_preview(
    path: str | Path, options: SimOptions, *, size: float = 30e-9, pixels: int = 128
) -> list[str]:
    """Write the preview PNG; returns the panel labels, left to right."""
    panels = render_states(options, size, pixels)
    gap = 4
    height = pixels
    width = len(panels) * pixels + (len(panels) - 1) * gap
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    # One colour scale for all panels, so blunt really looks flatter than good.
    images = [levelled(z) for _, z in panels]
    lows, highs = zip(*(np.percentile(im, [1, 99]) for im in images), strict=True)
    low, high = float(np.median(lows)), float(np.median(highs))
    for k, image in enumerate(images):
        x0 = k * (pixels + gap)
        # Row 0 is the first scanned line (the top for a "down" scan): draw it on top.
        canvas[:, x0 : x0 + pixels] = colourise(image, low, high)
    write_png(path, canvas)
    return [state.value for state, _ in panels]
