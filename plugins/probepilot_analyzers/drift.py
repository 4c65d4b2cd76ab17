"""Drift velocity from consecutive overlapping frames, filtered over the run.

Where the content of a frame has moved since an earlier frame of the same area tells how fast
the sample drifts relative to the scanner. Two things make that more than shift / time:

* **Line-by-line acquisition.** Line ``r`` starts ``2 r T`` after the frame (``T`` the line
  time, forward plus backward per line) and pixel ``c`` of it ``(c + 1/2) T / N`` later. With the
  sample drifting at ``v``, a feature that moved by ``dr`` lines is met ``2 T dr`` later in the
  second frame, and so on. For a constant velocity every feature moves by the same amount (a
  drifting frame is sheared and stretched, but its successor identically), and solving the
  timing for ``v`` gives, with ``dt`` between the frames' starts and ``s`` = -1 for a downward
  scan (+1 upward):

      v_slow = s * dy * dr / (dt + 2 T dr)
      v_fast = dx * dc / (dt + 2 T dr + T dc / N)

  in the frame's own axes (fast along the lines), rotated into the scanner's x and y.
* **Commanded moves.** A frame re-centred by ``c`` shows its content shifted by ``-c`` without
  any drift; that part is subtracted.

The shift itself comes from :func:`~probepilot_analyzers.registration.estimate_shift`
(phase correlation and a phase-plane fit; hundredths of a pixel). A Kalman filter
(:mod:`~probepilot_analyzers.kalman`) averages the measurements and flags a change it cannot
explain (creep after a move, a thermal jolt). The velocity is what features do relative to the
scanner: adding it to the drift compensation in use cancels it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probepilot.model import Finding, FloatArray, Frame
from probepilot_analyzers._findings import frame_history, guarded
from probepilot_analyzers._image import Image, level, prepare
from probepilot_analyzers.kalman import DriftFilter, Update
from probepilot_analyzers.options import DriftOptions
from probepilot_analyzers.registration import Shift, estimate_shift

#: Shift uncertainty (pixels) added to every registration's own: consecutive frames are never
#: exact shifts of each other (the random walk of drift within a frame, feedback lag, pixel
#: sampling); on simulated frames with exactly known drift the errors are about 0.1 pixel.
SHIFT_FLOOR = 0.1


@dataclass(frozen=True, slots=True)
class Measurement:
    """The mean drift between a reference frame and a later one."""

    velocity: FloatArray  # (2,) m/s, scanner x and y
    covariance: FloatArray  # (2, 2) (m/s)^2
    displacement: tuple[float, float]  # drift between the frames, m (scanner x, y)
    elapsed: float  # s between the frames' starts
    shift: Shift  # in pixels, as registered (commanded move included)


def frame_key(frame: Frame) -> tuple[object, ...]:
    """What identifies a frame across calls (a run's frames differ in start time)."""
    return (frame.source, frame.started_at, frame.area, frame.direction, frame.lines_done)


def compatible(a: Frame, b: Frame) -> bool:
    """Same raster, size, rotation, direction and line time: their images differ by a shift."""
    pa, pb = a.area, b.area
    same_size = all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(pa.size, pb.size, strict=True))
    return (
        pa.pixels == pb.pixels
        and pa.lines == pb.lines
        and same_size
        and math.isclose(pa.angle, pb.angle, abs_tol=1e-9)
        and a.direction == b.direction
        and math.isclose(a.line_time, b.line_time, rel_tol=1e-6)
    )


def frame_offset(reference: Frame, frame: Frame) -> tuple[float, float]:
    """How far ``frame``'s centre moved from ``reference``'s, in the frame's own axes (m):
    along the lines (u) and across them (v)."""
    dx = frame.area.centre[0] - reference.area.centre[0]
    dy = frame.area.centre[1] - reference.area.centre[1]
    c, s = math.cos(frame.area.angle), math.sin(frame.area.angle)
    return (c * dx + s * dy, -s * dx + c * dy)


def overlap(reference: Frame, frame: Frame) -> float:
    """Fraction of the frame's area that ``reference`` also covers (compatible frames)."""
    du, dv = frame_offset(reference, frame)
    w, h = frame.area.size
    return max(0.0, 1 - abs(du) / w) * max(0.0, 1 - abs(dv) / h)


def measure(reference: Frame, ref_image: Image, frame: Frame, image: Image) -> Measurement:
    """The drift velocity between two compatible frames, from their levelled images."""
    a, b = ref_image.data, image.data
    # Partial frames: compare the lines both have.
    first = max(ref_image.first_line, image.first_line)
    last = min(ref_image.first_line + a.shape[0], image.first_line + b.shape[0])
    if last - first < 8:
        raise ValueError("the frames share fewer than 8 scanned lines")
    a = a[first - ref_image.first_line : last - ref_image.first_line]
    b = b[first - image.first_line : last - image.first_line]
    shift = estimate_shift(a, b)
    if not (math.isfinite(shift.sigma_rows) and math.isfinite(shift.sigma_columns)):
        raise ValueError("the frames do not match at any shift")
    area = frame.area
    px, py = area.pixel_size
    sign = -1.0 if frame.direction == "down" else 1.0
    du, dv = frame_offset(reference, frame)
    # Drift part of the shift, in pixels: what is left after the commanded move.
    dc = shift.columns + du / px
    dr = shift.rows + dv / (sign * py)
    elapsed = frame.started_at - reference.started_at
    line_time = frame.line_time
    t_slow = elapsed + 2 * line_time * dr
    t_fast = t_slow + line_time * dc / area.pixels
    if not (elapsed > 0 and t_slow > 0 and t_fast > 0):
        raise ValueError(f"the frames are {elapsed:.3g} s apart: no velocity from them")
    v_u = px * dc / t_fast
    v_v = sign * py * dr / t_slow
    # A poor phase agreement after alignment means the frames are not simply shifted copies
    # (a pure lattice, a tip change, creep within the frame): trust the shift less.
    doubt = 1.0 / max(shift.coherence, 0.05) ** 2
    sig_c = math.hypot(shift.sigma_columns, SHIFT_FLOOR) * doubt
    sig_r = math.hypot(shift.sigma_rows, SHIFT_FLOOR) * doubt
    local = np.diag([(px * sig_c / t_fast) ** 2, (py * sig_r / t_slow) ** 2])
    c, s = math.cos(area.angle), math.sin(area.angle)
    rot = np.array([[c, -s], [s, c]])
    velocity = rot @ np.array([v_u, v_v])
    covariance = rot @ local @ rot.T
    moved = rot @ np.array([px * dc, sign * py * dr])
    return Measurement(velocity, covariance, (float(moved[0]), float(moved[1])), elapsed, shift)


class DriftAnalyzer:
    """``drift``: the drift velocity (m/s) and its uncertainty, and creep after moves.

    Findings: ``drift`` (``confidence``: how clearly the frames matched, 0 without an earlier
    overlapping frame; ``values``: filtered ``vx``, ``vy`` and ``sigma_vx``, ``sigma_vy``,
    this pair's ``measured_vx``, ``measured_vy``, the drift ``shift_x``, ``shift_y`` (m) over
    ``dt`` (s), ``measurements`` since the filter last restarted, ``status``), and ``creep``
    when the velocity jumped (``confidence``: 1 - chi-square tail of the jump; ``dvx``, ``dvy``,
    ``after_move``).

    The filter state follows the frames it is given: when ``history`` does not end with the
    frame analysed last (a new run, a replay), it is rebuilt from ``history``.
    """

    name = "drift"

    def __init__(self, options: DriftOptions | None = None) -> None:
        self.options = options or DriftOptions()
        q = (self.options.velocity_walk**2) / 100.0
        self._filter = DriftFilter(q, self.options.creep_threshold)
        self._last: tuple[object, ...] | None = None
        self._images: dict[tuple[object, ...], Image] = {}
        self._count = 0

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "drift", lambda: self._analyze(frame, history))

    # -- state ---------------------------------------------------------------------------------

    def _image(self, frame: Frame) -> Image:
        key = frame_key(frame)
        image = self._images.get(key)
        if image is None:
            raw = prepare(frame, self.options.channel)
            image = Image(level(raw.data), raw.pixel, raw.first_line, raw.channel)
            self._images[key] = image
        return image

    def _reset(self) -> None:
        self._filter = DriftFilter(self._filter.q, self._filter.threshold)
        self._count = 0

    def _reference(self, frame: Frame, earlier: list[Frame]) -> Frame | None:
        for candidate in reversed(earlier[-self.options.lookback :]):
            if (
                candidate.started_at < frame.started_at
                and compatible(candidate, frame)
                and overlap(candidate, frame) >= self.options.min_overlap
            ):
                return candidate
        return None

    def _step(self, frame: Frame, earlier: list[Frame]) -> tuple[Measurement | None, Update | None]:
        """Measure ``frame`` against its reference in ``earlier`` and update the filter."""
        reference = self._reference(frame, earlier)
        if reference is None:
            return None, None
        measurement = measure(reference, self._image(reference), frame, self._image(frame))
        update = self._filter.update(frame.started_at, measurement.velocity, measurement.covariance)
        self._count = 1 if update.changed else self._count + 1
        return measurement, update

    def _catch_up(self, earlier: list[Frame]) -> None:
        """Rebuild the filter from ``earlier`` unless it already ends where we left off."""
        if earlier and self._last == frame_key(earlier[-1]):
            return
        self._reset()
        window = earlier[-self.options.lookback :]
        for i, past in enumerate(window):
            try:
                self._step(past, window[:i])
            except ValueError:  # a past frame that cannot be measured is skipped
                continue

    # -- analysis ------------------------------------------------------------------------------

    def _analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        earlier = frame_history(history)
        self._image(frame)  # refuses a bad frame before the filter's state changes
        self._catch_up(earlier)
        self._last = frame_key(frame)
        previous = None if self._filter.velocity is None else self._filter.velocity.copy()
        measurement, update = self._step(frame, earlier)
        # Keep only the images a later call can use.
        keep = {frame_key(f) for f in earlier[-self.options.lookback :]} | {self._last}
        self._images = {k: v for k, v in self._images.items() if k in keep}
        if measurement is None or update is None:
            return [
                Finding(
                    self.name,
                    "drift",
                    0.0,
                    {"status": "no_reference"},
                    message="no drift estimate: no earlier frame of the same area and raster",
                )
            ]
        return self._findings(frame, earlier, measurement, update, previous)

    def _findings(
        self,
        frame: Frame,
        earlier: list[Frame],
        m: Measurement,
        u: Update,
        previous: FloatArray | None,
    ) -> list[Finding]:
        vx, vy = (float(v) for v in u.velocity)
        sx, sy = (math.sqrt(max(float(u.covariance[i, i]), 0.0)) for i in (0, 1))
        mvx, mvy = (float(v) for v in m.velocity)
        values: dict[str, float | str] = {
            "status": "ok",
            "vx": vx,
            "vy": vy,
            "sigma_vx": sx,
            "sigma_vy": sy,
            "measured_vx": mvx,
            "measured_vy": mvy,
            "shift_x": m.displacement[0],
            "shift_y": m.displacement[1],
            "dt": m.elapsed,
            "measurements": float(self._count),
            "nis": u.nis if math.isfinite(u.nis) else 1e9,
        }
        message = (
            f"drift ({vx * 1e12:+.1f} +- {sx * 1e12:.1f}, {vy * 1e12:+.1f} +- {sy * 1e12:.1f}) "
            f"pm/s over {self._count} measurement(s); this frame moved "
            f"({m.displacement[0] * 1e9:+.3f}, {m.displacement[1] * 1e9:+.3f}) nm in "
            f"{m.elapsed:.1f} s"
        )
        confidence = m.shift.quality * max(m.shift.coherence, 0.0) ** 2
        findings = [Finding(self.name, "drift", confidence, values, message=message)]
        if u.changed:
            moved = bool(earlier) and overlap(earlier[-1], frame) < 0.999
            findings.append(self._creep(u, moved, previous))
        return findings

    def _creep(self, u: Update, moved: bool, previous: FloatArray | None) -> Finding:
        nis = u.nis if math.isfinite(u.nis) else 1e9
        confidence = 1.0 - math.exp(-nis / 2.0)  # chi-square CDF, two degrees of freedom
        before = np.zeros(2) if previous is None else previous
        what = "creep after a move" if moved else "a change of the drift velocity"
        return Finding(
            self.name,
            "creep",
            confidence,
            {
                "status": "ok",
                "nis": nis,
                "dvx": float(u.velocity[0] - before[0]),
                "dvy": float(u.velocity[1] - before[1]),
                "after_move": 1.0 if moved else 0.0,
            },
            message=f"{what}: the velocity jumped (chi-square {nis:.1f}); filter restarted",
        )
