"""Real topography as a simulated surface: the Z channel of a Nanonis ``.sxm`` image, read with
the core's reader (:func:`probepilot.store.read_sxm`) and put into the simulator's orientation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probepilot.errors import FormatError
from probepilot.model import FloatArray
from probepilot.store import read_sxm


@dataclass(frozen=True, slots=True)
class HeightImage:
    """A Z image with row 0 at the bottom (smallest y) and its physical size (m)."""

    heights: FloatArray
    size: tuple[float, float]
    path: str


def read_sxm_z(path: str | Path) -> HeightImage:
    """The forward Z channel of ``path``; :class:`FormatError` says what is wrong otherwise.

    Lines an aborted scan never reached (NaN) are filled with the median height, so the surface
    is defined everywhere the simulated tip can go.
    """
    frame = read_sxm(Path(path))
    channel = frame.channels.get("Z")
    if channel is None:
        raise FormatError(
            f"{path}: has no Z channel (channels: {', '.join(frame.channels)})",
            hint="use a topography image as a simulated surface",
        )
    z = np.asarray(channel.forward, dtype=np.float64)
    # The model stores row 0 = first line scanned; a "down" scan starts at the top.
    if frame.direction == "down":
        z = z[::-1]
    finite = np.isfinite(z)
    if not finite.any():
        raise FormatError(f"{path}: the Z channel holds no measured value")
    if not finite.all():
        z = np.where(finite, z, np.median(z[finite]))
    return HeightImage(np.ascontiguousarray(z), frame.area.size, str(path))
