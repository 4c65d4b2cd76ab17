"""Just enough PNG to look at data: 8-bit RGB written with zlib and struct (no Pillow), the
plane levelling and the gold palette STM viewers use, and a bare line plot for spectra.

It lives in the core so that ``probepilot inspect --png`` and any plugin (the simulator's
``sim-preview``) share one implementation.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from probepilot.model import FloatArray
from probepilot.store._common import atomic_write

__all__ = ["colourise", "encode_png", "levelled", "line_plot", "read_png_size", "write_png"]

RGB = npt.NDArray[np.uint8]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The usual STM "gold" palette (afmhot-like): black -> red -> yellow -> white.
_STOPS = np.array([0.0, 0.35, 0.7, 1.0])
_COLOURS = np.array([[0, 0, 0], [180, 40, 0], [255, 200, 40], [255, 255, 255]], dtype=np.float64)


def levelled(image: FloatArray) -> FloatArray:
    """``image`` minus its best-fit plane (NaN ignored), as a viewer's "plane level" does."""
    ny, nx = image.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ok = np.isfinite(image)
    if ok.sum() < 3:
        return np.asarray(image, dtype=np.float64)
    design = np.column_stack([np.ones(ok.sum()), xx[ok], yy[ok]])
    coef, *_ = np.linalg.lstsq(design, image[ok], rcond=None)
    return np.asarray(image - (coef[0] + coef[1] * xx + coef[2] * yy), dtype=np.float64)


def colourise(image: FloatArray, low: float | None = None, high: float | None = None) -> RGB:
    """(h, w) floats -> (h, w, 3) uint8 through the gold palette, clipped to the 1-99 %
    percentiles unless ``low``/``high`` are given; NaN (unscanned) shows as dark grey."""
    finite = np.isfinite(image)
    if low is None or high is None:
        if finite.any():
            lo, hi = np.percentile(image[finite], [1, 99])
        else:
            lo, hi = 0.0, 1.0
        low = float(lo) if low is None else low
        high = float(hi) if high is None else high
    span = high - low if high > low else 1.0
    t = np.clip((np.where(finite, image, low) - low) / span, 0.0, 1.0)
    rgb = np.stack([np.interp(t, _STOPS, _COLOURS[:, k]) for k in range(3)], axis=-1)
    rgb[~finite] = 60
    return rgb.round().astype(np.uint8)


def line_plot(x: FloatArray, y: FloatArray, width: int = 480, height: int = 320) -> RGB:
    """A bare plot of ``y`` against ``x`` (no axes text: there is no font here), dark on white
    inside a grey frame, for previewing a spectrum. Non-finite points are skipped."""
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[[0, -1], :] = canvas[:, [0, -1]] = 160
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return canvas
    xs, ys = x[ok], y[ok]
    margin = 8

    def scale(values: FloatArray, size: int) -> FloatArray:
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo if hi > lo else 1.0
        return margin + (values - lo) / span * (size - 1 - 2 * margin)

    px, py = scale(xs, width), (height - 1) - scale(ys, height)  # y grows upwards
    # Sample each segment densely enough that consecutive samples touch.
    steps = np.maximum(np.ceil(np.hypot(np.diff(px), np.diff(py))), 1).astype(int)
    t = np.concatenate([np.arange(n) / n for n in steps] + [np.array([1.0])])
    seg = np.concatenate([np.full(n, k) for k, n in enumerate(steps)] + [np.array([len(px) - 2])])
    cols = np.round(px[seg] + t * (px[seg + 1] - px[seg])).astype(int)
    rows = np.round(py[seg] + t * (py[seg + 1] - py[seg])).astype(int)
    canvas[rows, cols] = (30, 60, 160)
    return canvas


def encode_png(rgb: RGB) -> bytes:
    """The bytes of a PNG file showing an (h, w, 3) uint8 array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    # Each scanline starts with filter type 0 (none).
    raw = np.zeros((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], rgb: RGB) -> Path:
    """Write an (h, w, 3) uint8 array as a PNG file (atomically)."""
    return atomic_write(path, encode_png(rgb))


def read_png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from a PNG header, for tests."""
    data = Path(path).read_bytes()[:24]
    if data[:8] != _SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)
