"""Turning a frame into an image the analyzers can trust, or saying why it cannot be done.

Every analyzer starts here, so the rules for bad input live in one place: the frame's channel is
converted to float64 whatever its dtype, unscanned rows (NaN, at the end of a partial frame) are
cut off, isolated non-finite pixels are filled, and frames too small, too empty or constant are
refused with a reason instead of reaching numpy code that would divide by zero. The reason goes
into a zero-confidence finding (the contract: an analyzer never raises for a bad frame).

Levelling follows what microscopists do in Gwyddion before looking at an image: a robust plane
(median slopes, so steps and adsorbates do not tilt it) and per-line median offsets (the scan
lines of an STM image wander up and down by a few pm each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probepilot.model import FloatArray, Frame

#: Smallest frame (lines and pixels) any analyzer looks at.
MIN_SIZE = 8
#: A row is usable when at least this fraction of its pixels is finite.
ROW_FINITE = 0.9


class BadImage(ValueError):
    """The frame cannot be analysed; ``str(exc)`` says why (one line, for the finding)."""


@dataclass(frozen=True, slots=True)
class Image:
    """A usable, finite image of one channel and what it means physically.

    ``data`` is float64 (lines, pixels), rows in scan order; ``first_line`` is the frame row of
    ``data[0]`` (unscanned rows are cut off); ``pixel`` is (m per pixel along x, m per line).
    """

    data: FloatArray
    pixel: tuple[float, float]
    first_line: int
    channel: str

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.shape[0]), int(self.data.shape[1]))


def channel_array(frame: Frame, channel: str = "Z", backward: bool = False) -> tuple[object, str]:
    """The raw array of ``channel`` (forward or backward) and the name actually used.

    Z is what analyzers read; a frame without a Z channel (a constant-height image keeps its
    contrast in Current) falls back to its first channel.
    """
    channels = getattr(frame, "channels", None)
    if not isinstance(channels, dict) or not channels:
        raise BadImage("the frame has no channels")
    name = channel if channel in channels else next(iter(channels))
    trace = channels[name]
    array = getattr(trace, "backward" if backward else "forward", None)
    if array is None:
        raise BadImage(f"channel {name!r} has no {'backward' if backward else 'forward'} trace")
    return array, name


def as_float_image(raw: object) -> FloatArray:
    """``raw`` as a 2-D float64 array (a copy); :class:`BadImage` if it cannot be one."""
    try:
        array = np.asarray(raw)
    except (TypeError, ValueError) as exc:
        raise BadImage(f"the image is not an array ({exc})") from None
    if array.ndim != 2:
        raise BadImage(f"the image has {array.ndim} dimensions, not 2 (lines, pixels)")
    if array.dtype.kind == "c":
        raise BadImage("the image is complex-valued")
    if array.dtype.kind not in "biuf":
        raise BadImage(f"the image holds {array.dtype} values, not numbers")
    with np.errstate(all="ignore"):
        return np.array(array, dtype=np.float64)


def pixel_size(frame: Frame, shape: tuple[int, int]) -> tuple[float, float]:
    """Metres per pixel and per line; :class:`BadImage` when the frame's size is unusable."""
    area = getattr(frame, "area", None)
    try:
        width, height = (float(v) for v in area.size)  # type: ignore[union-attr]
        pixels, lines = int(area.pixels), int(area.lines)  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        raise BadImage("the frame has no usable scan area") from None
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise BadImage(f"the frame size {width} x {height} m is not positive")
    # The array is authoritative when it disagrees with the header (some files do).
    pixels = pixels if pixels == shape[1] else shape[1]
    lines = lines if lines == shape[0] else shape[0]
    return (width / pixels, height / lines)


def usable_rows(data: FloatArray) -> tuple[int, int]:
    """The longest run of rows [start, stop) that are at least ``ROW_FINITE`` finite."""
    good = np.isfinite(data).mean(axis=1) >= ROW_FINITE
    best = (0, 0)
    start = None
    for i, ok in enumerate([*good.tolist(), False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def prepare(
    frame: Frame, channel: str = "Z", *, backward: bool = False, min_size: int = MIN_SIZE
) -> Image:
    """The usable part of a frame's channel, finite and float64, not yet levelled.

    A constant-height image keeps its contrast in the current (or, on an AFM, the frequency
    shift) while its Z is flat: when the default ``Z`` is constant, the first channel that does
    vary is used instead (``Image.channel`` says which).

    :raises BadImage: no such data, wrong dtype, fewer than ``min_size`` usable lines or
        pixels, or a constant image.
    """
    raw, name = channel_array(frame, channel, backward)
    try:
        return _prepare_one(frame, raw, name, min_size)
    except BadImage as exc:
        if channel != "Z" or "constant" not in str(exc):
            raise
        for other in [c for c in getattr(frame, "channels", {}) if c != name]:
            try:
                alt, _ = channel_array(frame, other, backward)
                return _prepare_one(frame, alt, other, min_size)
            except BadImage:
                continue
        raise


def _prepare_one(frame: Frame, raw: object, name: str, min_size: int) -> Image:
    data = as_float_image(raw)
    if data.shape[1] < min_size:
        raise BadImage(f"{data.shape[1]} pixels per line are too few (at least {min_size})")
    data[~np.isfinite(data)] = np.nan
    # Pixel size from the whole array: a partial frame's lines are as far apart as a whole one's.
    full_shape = (data.shape[0], data.shape[1])
    start, stop = usable_rows(data)
    if stop - start < min_size:
        raise BadImage(
            f"{stop - start} usable lines are too few (at least {min_size} finite lines)"
        )
    data = data[start:stop]
    holes = np.isnan(data)
    if holes.any():
        # A few bad pixels: the row's median stands in for them (after levelling: flat).
        medians = np.nanmedian(data, axis=1)
        data[holes] = np.broadcast_to(medians[:, None], data.shape)[holes]
    spread = float(np.ptp(data))
    scale = float(np.max(np.abs(data)))
    if not math.isfinite(spread) or spread <= 1e-9 * max(scale, 1e-300) or spread == 0.0:
        raise BadImage(f"the {name} image is constant: there is nothing to analyse")
    return Image(data, pixel_size(frame, full_shape), start, name)


def level(data: FloatArray, *, lines: bool = True) -> FloatArray:
    """``data`` minus a robust plane and (``lines``) each line's offset: a new array.

    Slopes and line offsets are medians of pixel-to-pixel and line-to-line differences, so step
    edges and adsorbates (a few pixels of each line) neither tilt the plane nor shift a line, as
    a least-squares plane or a per-line median would (a step crossing the frame at an angle
    would otherwise leave a false horizontal edge where it passes the middle of the lines).
    """
    ny, nx = data.shape
    # The slope along the lines from (at most) 32 evenly spread lines: as robust, cheaper.
    sample = np.diff(data[:: max(1, ny // 32)], axis=1)
    sx = float(np.median(sample, overwrite_input=True))
    out = data - sx * np.arange(nx)[None, :]
    if lines and ny > 1:
        # About 64 pixels of each line are as robust and sort much faster.
        diffs = np.diff(out[:, :: max(1, nx // 64)], axis=0)
        steps = np.median(diffs, axis=1, overwrite_input=True)
        out -= np.concatenate([[0.0], np.cumsum(steps)])[:, None]
    elif ny > 1:
        sy = float(np.median(np.diff(out, axis=0)))
        out -= sy * np.arange(ny)[:, None]
    # The offset from every other pixel of every other line: as robust, a quarter of the sort.
    out -= np.median(out[:: 2 if ny >= 64 else 1, :: 2 if nx >= 64 else 1])
    return out


def robust_std(values: FloatArray) -> float:
    """Standard deviation estimated from the median absolute deviation (outliers ignored)."""
    med = np.median(values)
    return float(1.4826 * np.median(np.abs(values - med)))
