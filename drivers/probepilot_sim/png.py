"""Just enough PNG to look at frames: 8-bit RGB, written with zlib and struct (no Pillow)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from probepilot.model import FloatArray

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


def colourise(
    image: FloatArray, low: float | None = None, high: float | None = None
) -> npt.NDArray[np.uint8]:
    """(h, w) floats -> (h, w, 3) uint8 through the gold palette, clipped to the 1-99 %
    percentiles unless ``low``/``high`` are given; NaN shows as dark grey."""
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


def write_png(path: str | Path, rgb: npt.NDArray[np.uint8]) -> None:
    """Write an (h, w, 3) uint8 array as a PNG file."""
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
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


def read_png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from a PNG header, for tests."""
    data = Path(path).read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)
