"""What every analyzer shares around its numerics: zero-confidence findings for frames that
cannot be analysed, and geometry from image pixels to the scanner's metres.

The analyzer contract says ``analyze`` never raises for a bad frame. :func:`guarded` keeps that
promise in one place: the input checks of :mod:`probepilot_analyzers._image` raise
:class:`~probepilot_analyzers._image.BadImage` with a reason, and numerical failures that bad
data can still provoke (a singular fit, an overflow) become the same kind of finding, with the
error named in its message, instead of an exception in the session.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from probepilot.model import Finding, Frame
from probepilot_analyzers._image import BadImage

T = TypeVar("T")

#: Failures bad input can provoke inside numpy/scipy; anything else is a bug and propagates.
NUMERIC_ERRORS = (BadImage, ValueError, ArithmeticError, np.linalg.LinAlgError, IndexError)


def invalid(analyzer: str, kind: str, reason: str) -> Finding:
    """A zero-confidence finding saying why the frame could not be analysed."""
    return Finding(analyzer, kind, 0.0, {"status": "invalid"}, message=f"not analysed: {reason}")


def guarded(analyzer: str, kind: str, work: Callable[[], list[Finding]]) -> list[Finding]:
    """``work()``, or one zero-confidence finding when the frame defeats it."""
    try:
        with np.errstate(all="ignore"):
            return work()
    except BadImage as exc:
        return [invalid(analyzer, kind, str(exc))]
    except NUMERIC_ERRORS as exc:
        return [invalid(analyzer, kind, f"{type(exc).__name__}: {exc}")]


def scanner_vector(frame: Frame, columns: float, rows: float) -> tuple[float, float]:
    """A displacement of ``columns`` pixels along the lines and ``rows`` lines in the image, as
    (x, y) metres in the scanner frame: rows run down (``y`` decreasing) in a ``down`` scan and
    up in an ``up`` scan, and the frame is rotated by its ``angle``."""
    px, py = frame.area.pixel_size
    u = columns * px
    v = rows * py * (-1.0 if frame.direction == "down" else 1.0)
    c, s = math.cos(frame.area.angle), math.sin(frame.area.angle)
    return (c * u - s * v, s * u + c * v)


def finite(value: float, default: float = 0.0) -> float:
    """``value`` as a plain float, ``default`` where it is NaN or infinite (findings carry
    JSON- and msgpack-safe numbers)."""
    value = float(value)
    return value if math.isfinite(value) else default


def frame_history(history: Sequence[Frame]) -> list[Frame]:
    """``history`` as a list, tolerating ``None`` and non-frames (skipped)."""
    return [f for f in (history or ()) if isinstance(f, Frame)]
