"""Sudden changes of the apex during a frame: where the image jumps from one line to the next,
where a line carries a streak, where the forward and backward passes disagree.

When atoms jump on or off the apex mid-scan, three things show in the raw (not line-levelled)
topography, each robust to what the surface itself does:

* **Jump.** The apex's length changes, so Z shifts by tens of picometres from that line on. The
  median over the pixels of the difference between consecutive lines measures it; a step edge
  or an adsorbate touches only a few pixels of a line and leaves the median alone.
* **Streak.** The line where it happened carries a spike that decays along the scan. A pixel
  that stands out from *both* neighbouring lines with the same sign is streak-like; a step edge
  between lines rises on one side and falls on the other, and is not.
* **Forward/backward disagreement.** The two passes of a line are scanned one after the other,
  so a change in between (or during one of them) leaves them offset or different over part of
  the line, beyond the systematic difference feedback lag makes everywhere.

Each line gets the largest of the three robust z-scores (against the frame's own line-to-line
noise); lines above the threshold and the smallest jump are tip changes, neighbouring lines
counting once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from probepilot.model import Finding, FloatArray, Frame
from probepilot_analyzers._findings import guarded
from probepilot_analyzers._image import BadImage, prepare, robust_std
from probepilot_analyzers.options import TipChangeOptions


@dataclass(frozen=True, slots=True)
class Event:
    """One tip change: the frame ``line``, how it showed, its size (m) and z-score."""

    line: int
    kind: str  # "jump", "streak" or "fwd/bwd"
    size: float
    score: float


def _floor(values: FloatArray, minimum: float) -> float:
    """Robust spread of ``values``, never below ``minimum`` (a noiseless simulation would
    otherwise make every picometre infinitely significant)."""
    return max(robust_std(values), minimum)


def line_jumps(z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Median line-to-line step (m) for lines 1.., and its robust z-score."""
    steps = np.median(np.diff(z, axis=0), axis=1)
    centred = steps - np.median(steps)
    return centred, np.abs(centred) / _floor(centred, 1e-13)


def line_streaks(z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Largest streak amplitude (m) in lines 1..n-2 and its robust z-score: pixels standing
    out from both neighbouring lines with the same sign, averaged over three pixels along the
    line (a streak decays over several pixels, noise does not)."""
    up = z[1:-1] - z[:-2]
    down = z[1:-1] - z[2:]
    # Each line's own offset is not a streak: take the differences about their line medians.
    up -= np.median(up, axis=1, keepdims=True)
    down -= np.median(down, axis=1, keepdims=True)
    same = np.sign(up) == np.sign(down)
    stand_out = np.where(same, np.sign(up) * np.minimum(np.abs(up), np.abs(down)), 0.0)
    smooth = ndimage.uniform_filter1d(stand_out, 3, axis=1, mode="nearest")
    peak = np.max(np.abs(smooth), axis=1)
    return peak, _outliers(peak)


def _outliers(peaks: FloatArray) -> FloatArray:
    """Robust z-scores of per-line peak values against the other lines' (a peak over a line's
    pixels is large even for noise; what matters is a line whose peak stands out)."""
    centre = float(np.median(peaks))
    return np.maximum(peaks - centre, 0.0) / _floor(peaks, 1e-13)


def pass_disagreement(forward: FloatArray, backward: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per line, the forward-minus-backward offset's and local disagreement's departure from
    the frame's usual (m), and its robust z-score."""
    diff = forward - backward
    offsets = np.median(diff, axis=1)
    offset_dev = offsets - np.median(offsets)
    local = diff - offsets[:, None]
    # Feedback lag makes the passes differ on every edge, the same on every line crossing it:
    # compare each pixel with the typical disagreement in its column.
    local -= np.median(local, axis=0, keepdims=True)
    local = ndimage.uniform_filter1d(local, 5, axis=1, mode="nearest")
    local_peak = np.max(np.abs(local), axis=1)
    z_offset = np.abs(offset_dev) / _floor(offset_dev, 1e-13)
    z_local = _outliers(local_peak)
    size = np.where(z_offset >= z_local, np.abs(offset_dev), local_peak)
    return size, np.maximum(z_offset, z_local)


def detect(
    z: FloatArray,
    backward: FloatArray | None,
    *,
    threshold: float,
    min_jump: float,
    first_line: int = 0,
) -> tuple[list[Event], float]:
    """Tip changes in a raw (plane-levelled at most) image; also the highest line score."""
    n = z.shape[0]
    scores = np.zeros(n)
    sizes = np.zeros(n)
    kinds = np.full(n, "", dtype=object)

    def consider(rows: slice, size: FloatArray, score: FloatArray, kind: str) -> None:
        target = np.arange(n)[rows]
        better = score > scores[target]
        scores[target[better]] = score[better]
        sizes[target[better]] = size[better]
        kinds[target[better]] = kind

    jump, jump_z = line_jumps(z)
    consider(slice(1, None), np.abs(jump), jump_z, "jump")
    if n >= 3:
        streak, streak_z = line_streaks(z)
        consider(slice(1, -1), streak, streak_z, "streak")
    if backward is not None and backward.shape == z.shape:
        size, score = pass_disagreement(z, backward)
        consider(slice(None), size, score, "fwd/bwd")
    flagged = (scores >= threshold) & (sizes >= min_jump)
    events: list[Event] = []
    row = 0
    while row < n:
        if not flagged[row]:
            row += 1
            continue
        end = row
        while end + 1 < n and flagged[end + 1]:
            end += 1
        best = row + int(np.argmax(scores[row : end + 1]))
        events.append(
            Event(first_line + best, str(kinds[best]), float(sizes[best]), float(scores[best]))
        )
        row = end + 1
    return events, float(scores.max()) if n else 0.0


def _confidence(score: float, threshold: float) -> float:
    """Logistic in the z-score, 0.5 at the threshold and near 1 at twice it."""
    return 1.0 / (1.0 + math.exp(-4.0 * (score / threshold - 1.0)))


class TipChangeAnalyzer:
    """``tip_changes``: lines where the apex changed during the frame.

    One finding of kind ``tip_change`` per frame: ``confidence`` that the apex changed at least
    once, ``lines`` the frame rows where it did; ``values``: ``count``, ``largest`` (m, the
    biggest jump or streak), ``events`` (``"line:kind"`` pairs, comma-separated), ``status``.
    """

    name = "tip_changes"

    def __init__(self, options: TipChangeOptions | None = None) -> None:
        self.options = options or TipChangeOptions()

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "tip_change", lambda: self._analyze(frame))

    def _analyze(self, frame: Frame) -> list[Finding]:
        opts = self.options
        image = prepare(frame, opts.channel, min_size=4)
        z = _x_levelled(image.data)
        backward = None
        try:
            back = prepare(frame, image.channel, backward=True, min_size=4)
        except BadImage:
            back = None
        if back is not None and back.first_line == image.first_line and back.shape == image.shape:
            backward = _x_levelled(back.data)
        events, top = detect(
            z,
            backward,
            threshold=opts.threshold,
            min_jump=opts.min_jump,
            first_line=image.first_line,
        )
        confidence = _confidence(max([e.score for e in events], default=top), opts.threshold)
        if not events:
            confidence = min(confidence, 0.5)
        largest = max((e.size for e in events), default=0.0)
        if events:
            where = ", ".join(f"{e.line} ({e.kind}, {e.size * 1e12:.0f} pm)" for e in events[:8])
            more = f" and {len(events) - 8} more" if len(events) > 8 else ""
            message = f"{len(events)} tip change(s) at line {where}{more}"
        else:
            message = "no tip change"
        values: dict[str, float | str] = {
            "status": "ok",
            "count": float(len(events)),
            "largest": largest,
            "events": ",".join(f"{e.line}:{e.kind}" for e in events),
        }
        lines = tuple(e.line for e in events)
        return [Finding(self.name, "tip_change", confidence, values, lines, message)]


def _x_levelled(data: FloatArray) -> FloatArray:
    """``data`` minus its slope along the lines (medians: steps do not tilt it); lines keep
    their offsets, which are what a tip change shifts."""
    slope = float(np.median(np.diff(data, axis=1)))
    out = data - slope * np.arange(data.shape[1])[None, :]
    return np.asarray(out - np.median(out))
