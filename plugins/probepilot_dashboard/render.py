"""Frames as terminal pictures: levelling, colour maps and half-block cells.

Each terminal cell shows two pixels stacked: the upper one as the foreground colour of ``▀``,
the lower one as the background colour. That works in every terminal with true colour (and in
SVG snapshots), needs no graphics protocol, and keeps pixels about square because a cell is about
twice as tall as it is wide.

Pure numpy up to :func:`to_rgb`; :func:`halfblock_lines` turns the colours into Rich segments.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
from rich.segment import Segment
from rich.style import Style

#: Colour levels of a map; fewer levels merge more cells into one segment.
LEVELS = 64
UPPER_HALF = "▀"
#: What a pixel not scanned yet looks like (a dark grey, so the frame's extent shows).
BLANK = (38, 38, 46)

# Colour-map anchor points (0..1 -> RGB 0..255), interpolated to LEVELS entries.
_ANCHORS: dict[str, list[tuple[float, tuple[int, int, int]]]] = {
    # The classic STM "gold" (afmhot, Gwyddion's default look): black, red-brown, gold, white.
    "afmhot": [
        (0.0, (0, 0, 0)),
        (0.25, (128, 0, 0)),
        (0.5, (255, 128, 0)),
        (0.75, (255, 255, 128)),
        (1.0, (255, 255, 255)),
    ],
    # Perceptually uniform (matplotlib's viridis, sampled at nine points).
    "viridis": [
        (0.0, (68, 1, 84)),
        (0.125, (71, 44, 122)),
        (0.25, (59, 81, 139)),
        (0.375, (44, 113, 142)),
        (0.5, (33, 144, 141)),
        (0.625, (39, 173, 129)),
        (0.75, (92, 200, 99)),
        (0.875, (170, 220, 50)),
        (1.0, (253, 231, 37)),
    ],
    "gray": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
}
COLORMAPS = tuple(_ANCHORS)


@cache
def colormap(name: str) -> np.ndarray:
    """``LEVELS`` x 3 uint8 table of colour map ``name`` (``afmhot``, ``viridis``, ``gray``)."""
    try:
        anchors = _ANCHORS[name]
    except KeyError:
        raise ValueError(f"unknown colour map {name!r}; expected one of {COLORMAPS}") from None
    xs = np.array([a[0] for a in anchors])
    rgb = np.array([a[1] for a in anchors], dtype=float)
    t = np.linspace(0.0, 1.0, LEVELS)
    table = np.stack([np.interp(t, xs, rgb[:, k]) for k in range(3)], axis=1)
    table = np.round(table).astype(np.uint8)
    table.setflags(write=False)
    return table


def level(image: np.ndarray) -> np.ndarray:
    """Plane-fit then line-by-line median levelling, the way STM images are usually shown.

    A least-squares plane removes the sample tilt; subtracting each line's median then removes
    the line-to-line offsets of the feedback (robust to steps and adsorbates). Rows not scanned
    yet (all NaN) stay NaN.
    """
    z = np.asarray(image, dtype=float)
    finite = np.isfinite(z)
    if finite.sum() < 3:
        return np.where(finite, 0.0, np.nan)
    rows, cols = np.nonzero(finite)
    values = z[finite]
    a = np.column_stack([np.ones_like(values), cols.astype(float), rows.astype(float)])
    coef, *_ = np.linalg.lstsq(a, values, rcond=None)
    yy, xx = np.mgrid[0 : z.shape[0], 0 : z.shape[1]]
    flat = z - (coef[0] + coef[1] * xx + coef[2] * yy)
    scanned = finite.any(axis=1)
    medians = np.zeros(z.shape[0])
    medians[scanned] = np.nanmedian(flat[scanned], axis=1)
    return flat - medians[:, None]


def scale(values: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """``values`` mapped to [0, 1] between robust limits (percentiles of the finite values)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.shape, np.nan)
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if not hi > lo:
        return np.where(np.isfinite(values), 0.5, np.nan)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def fit(
    shape: tuple[int, int], width: int, height: int, *, upscale: bool = True
) -> tuple[int, int]:
    """Pixels (rows, cols) to show a ``shape`` (lines, pixels) image in ``width`` x ``height``
    cells at two pixels per cell, keeping square pixels; upscaling only by whole factors."""
    lines, pixels = shape
    if lines <= 0 or pixels <= 0 or width <= 0 or height <= 0:
        return 0, 0
    factor = min(width / pixels, 2 * height / lines)
    if factor >= 1.0:
        factor = float(int(factor)) if upscale else 1.0
    return max(1, int(lines * factor)), max(1, int(pixels * factor))


def resample(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Block means of ``image`` on a ``rows`` x ``cols`` grid (NaN-aware); nearest pixel when
    enlarging."""
    z = np.asarray(image, dtype=float)
    if z.shape == (rows, cols):
        return z.copy()
    finite = np.isfinite(z)
    vals = np.where(finite, z, 0.0)
    counts = finite.astype(float)
    r = np.linspace(0, z.shape[0], rows + 1).astype(int)[:-1]
    c = np.linspace(0, z.shape[1], cols + 1).astype(int)[:-1]
    r = np.minimum(r, z.shape[0] - 1)
    c = np.minimum(c, z.shape[1] - 1)

    def blocks(a: np.ndarray) -> np.ndarray:
        a = np.add.reduceat(a, r, axis=0) if rows < z.shape[0] else a[r]
        if cols < z.shape[1]:
            return np.add.reduceat(a, c, axis=1)
        return a[:, c]

    total, n = blocks(vals), blocks(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1e-300), np.nan)


def to_rgb(image: np.ndarray, cmap: str = "afmhot", *, levelled: bool = True) -> np.ndarray:
    """``image`` (rows, cols; NaN = not scanned) as an RGB uint8 array, NaN as :data:`BLANK`."""
    z = level(image) if levelled else np.asarray(image, dtype=float)
    t = scale(z)
    table = colormap(cmap)
    idx = np.clip(np.nan_to_num(t, nan=0.0) * (LEVELS - 1) + 0.5, 0, LEVELS - 1).astype(int)
    rgb = table[idx]
    rgb[~np.isfinite(t)] = BLANK
    return rgb


def picture(
    image: np.ndarray, width: int, height: int, cmap: str = "afmhot", *, upscale: bool = True
) -> np.ndarray:
    """Level, colour and resize ``image`` to fit ``width`` x ``height`` cells: RGB (rows, cols,
    3) with an even number of rows."""
    rows, cols = fit(image.shape, width, height, upscale=upscale)
    if rows == 0:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    # Level at full resolution (the line offsets are a full-resolution feature), then resize.
    z = level(image)
    small = resample(z, rows, cols)
    if rows % 2:
        small = np.vstack([small, np.full((1, cols), np.nan)])
    return to_rgb(small, cmap, levelled=False)


@lru_cache(maxsize=8192)
def _style(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Style:
    return Style.parse(
        f"rgb({top[0]},{top[1]},{top[2]}) on rgb({bottom[0]},{bottom[1]},{bottom[2]})"
    )


def halfblock_lines(rgb: np.ndarray) -> list[list[Segment]]:
    """RGB (rows, cols, 3), rows even, as one list of segments per terminal line: ``▀`` with the
    upper pixel as foreground and the lower as background; equal neighbours share a segment."""
    out: list[list[Segment]] = []
    if rgb.size == 0:
        return out
    packed = (
        (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    )
    for y in range(0, rgb.shape[0] - 1, 2):
        top, bottom = packed[y], packed[y + 1]
        key = top * (1 << 24) + bottom
        # Run starts: where the (top, bottom) pair changes.
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        ends = np.append(starts[1:], key.size)
        segments = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            t, b = int(top[s]), int(bottom[s])
            style = _style((t >> 16, (t >> 8) & 255, t & 255), (b >> 16, (b >> 8) & 255, b & 255))
            segments.append(Segment(UPPER_HALF * (e - s), style))
        out.append(segments)
    return out
