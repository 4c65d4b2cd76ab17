"""Option schemas of the dashboard's panels (no Textual here: the plugin registers them at
load time, and loading must stay light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from probepilot.options import Doc

Colormap = Literal["afmhot", "viridis", "gray"]


@dataclass(frozen=True)
class FrameOptions:
    """``[panels.frame]``: how the live frame and the recent frames are drawn."""

    channel: Annotated[str, Doc("channel to show: Z, Current ... (the first one if absent)")] = "Z"
    colormap: Annotated[
        Colormap, Doc("colour map: afmhot (the STM gold), viridis (perceptual) or gray")
    ] = "afmhot"
