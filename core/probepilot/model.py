"""The data types every part of probepilot shares, in SI units (m, V, A, s, Hz, rad).

Frames hold channels as numpy arrays of shape ``(lines, pixels)``; row 0 is the first line
scanned, whatever the scan direction, and backward channels are stored in scan order reversed
back into x order, so forward and backward line up pixel for pixel. Unscanned lines are NaN.

Actions are small frozen dataclasses; :data:`Action` is their union. They carry no behaviour: the
safety envelope checks them, the session hands them to a driver.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
ScanDirection: TypeAlias = Literal["up", "down"]


# --------------------------------------------------------------------------------------------
# Geometry and scanning


@dataclass(frozen=True, slots=True)
class ScanArea:
    """Where and how finely to scan.

    ``centre`` and ``size`` are in metres in the scanner frame; ``size`` is (width along the fast
    axis, height along the slow axis). ``angle`` is in radians, counter-clockwise positive.
    """

    centre: tuple[float, float]
    size: tuple[float, float]
    pixels: int
    lines: int
    angle: float = 0.0

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Metres per pixel along x and per line along y."""
        return (self.size[0] / self.pixels, self.size[1] / self.lines)

    def corners(self) -> tuple[tuple[float, float], ...]:
        """The four corners of the (possibly rotated) area, in metres."""
        cx, cy = self.centre
        hw, hh = self.size[0] / 2, self.size[1] / 2
        c, s = math.cos(self.angle), math.sin(self.angle)
        return tuple(
            (cx + dx * c - dy * s, cy + dx * s + dy * c)
            for dx, dy in ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh))
        )


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """A complete request for one frame.

    ``line_time`` is the time for one line in one direction (s); ``channels`` names the channels
    to record (drivers always record ``"Z"``; ``"Current"`` where the instrument has it).
    """

    area: ScanArea
    line_time: float
    direction: ScanDirection = "down"
    channels: tuple[str, ...] = ("Z", "Current")

    @property
    def speed(self) -> float:
        """Tip speed along the fast axis, m/s."""
        return self.area.size[0] / self.line_time


@dataclass(slots=True)
class Channel:
    """One recorded signal: forward and (optional) backward traces, shape ``(lines, pixels)``."""

    name: str
    unit: str
    forward: FloatArray
    backward: FloatArray | None = None


@dataclass(slots=True)
class Frame:
    """One scanned image with everything needed to interpret it.

    ``lines_done`` < ``area.lines`` marks a partial frame (aborted or still scanning); the rows
    not scanned are NaN. ``started_at``/``finished_at`` are POSIX timestamps (s). ``bias`` (V),
    ``setpoint`` (A) and ``line_time`` (s) are what the instrument used. ``metadata`` keeps any
    further header entries the source provided, as strings or numbers.
    """

    channels: dict[str, Channel]
    area: ScanArea
    direction: ScanDirection
    bias: float
    setpoint: float
    line_time: float
    started_at: float
    finished_at: float
    lines_done: int
    source: str = ""
    metadata: dict[str, str | float | int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every line was scanned."""
        return self.lines_done >= self.area.lines

    @property
    def topography(self) -> FloatArray:
        """The forward Z channel (m), the image most analyzers look at."""
        return self.channels["Z"].forward

    def line_times(self) -> FloatArray:
        """Acquisition time of the start of each line relative to ``started_at`` (s).

        Forward and backward traces alternate, so one line (both directions) takes
        ``2 * line_time``.
        """
        return np.arange(self.area.lines, dtype=np.float64) * 2.0 * self.line_time


@dataclass(frozen=True, slots=True)
class LineProgress:
    """Reported by ``Driver.scan`` after each completed line.

    ``index`` is the row just completed (0-based), ``total`` the number of lines. ``forward`` and
    ``backward`` map channel names to that line's data, shape ``(pixels,)``.
    """

    index: int
    total: int
    forward: Mapping[str, FloatArray]
    backward: Mapping[str, FloatArray]


@dataclass(frozen=True, slots=True)
class TipPosition:
    """Tip position in the scanner frame (m); larger ``z`` means the tip is further from the
    surface, as on Nanonis."""

    x: float
    y: float
    z: float


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """What the instrument can physically do; the safety envelope never lets an action past them.

    ``piezo_range`` is the (x, y, z) travel in metres; x and y are centred on zero.
    ``bias_range`` is in volts. ``z_limits`` is the (fully extended, fully retracted) scanner z
    in metres, in the coordinates of :class:`TipPosition` (None: centred on zero, i.e.
    ``(-z/2, +z/2)``).
    """

    piezo_range: tuple[float, float, float]
    bias_range: tuple[float, float]
    max_setpoint: float = 1e-7
    z_limits: tuple[float, float] | None = None

    def z_bounds(self) -> tuple[float, float]:
        """(fully extended, fully retracted) z, m."""
        if self.z_limits is not None:
            return self.z_limits
        half = self.piezo_range[2] / 2
        return (-half, half)


# --------------------------------------------------------------------------------------------
# Spectroscopy


@dataclass(slots=True)
class Spectrum:
    """A point spectrum: ``sweep`` (e.g. bias in V) against recorded ``channels``.

    ``position`` is the (x, y) of the tip in metres. A spectrum that was interrupted has fewer
    sweep points than planned and ``complete`` False.
    """

    sweep_name: str
    sweep_unit: str
    sweep: FloatArray
    channels: dict[str, FloatArray]
    units: dict[str, str]
    position: tuple[float, float]
    started_at: float = field(default_factory=time.time)
    complete: bool = True
    metadata: dict[str, str | float | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpectrumRequest:
    """A bias sweep at the current tip position, feedback off during the sweep."""

    start: float
    stop: float
    points: int
    settle_time: float = 1e-3
    integration_time: float = 1e-3
    channels: tuple[str, ...] = ("Current",)


@dataclass(frozen=True, slots=True)
class LockInReading:
    """One reading of a lock-in amplifier's outputs: in-phase ``x`` and quadrature ``y`` (V rms
    at the input, or A rms for a current input), magnitude ``r`` and phase ``theta`` (rad).
    ``overload`` is True when the instrument flagged an input, filter or output overload while
    taking it (the values are then not to be trusted)."""

    x: float
    y: float
    r: float
    theta: float
    overload: bool = False


# --------------------------------------------------------------------------------------------
# Actions: what a policy or an operator asks for. SI units throughout.


@dataclass(frozen=True, slots=True)
class Pulse:
    """A bias pulse of ``voltage`` (V) for ``width`` (s), optionally at ``position`` (x, y)."""

    voltage: float
    width: float
    position: tuple[float, float] | None = None
    kind: Literal["pulse"] = "pulse"


@dataclass(frozen=True, slots=True)
class Dip:
    """A controlled dip ("tip shaping"): feedback off, tip lowered by ``depth`` (m) at ``bias``
    (V), then retracted; optionally at ``position`` (x, y)."""

    depth: float
    bias: float = 0.0
    position: tuple[float, float] | None = None
    kind: Literal["dip"] = "dip"


@dataclass(frozen=True, slots=True)
class Move:
    """Move the tip within the piezo range to (x, y) in metres."""

    x: float
    y: float
    kind: Literal["move"] = "move"


@dataclass(frozen=True, slots=True)
class CoarseStep:
    """Coarse positioner steps along ``axis`` (``"x+"``, ``"x-"``, ``"y+"``, ``"y-"``,
    ``"z+"``, ``"z-"``); z+ retracts."""

    axis: Literal["x+", "x-", "y+", "y-", "z+", "z-"]
    steps: int
    kind: Literal["coarse"] = "coarse"


@dataclass(frozen=True, slots=True)
class Scan:
    """Acquire one frame with these settings."""

    settings: ScanSettings
    kind: Literal["scan"] = "scan"


@dataclass(frozen=True, slots=True)
class KeepImaging:
    """Carry on imaging; the session picks the next region (see ``regions.py``)."""

    kind: Literal["image"] = "image"


@dataclass(frozen=True, slots=True)
class CompensateDrift:
    """Set the drift compensation velocity (m/s) the piezo adds."""

    vx: float
    vy: float
    vz: float = 0.0
    kind: Literal["drift"] = "drift"


@dataclass(frozen=True, slots=True)
class SetBias:
    """Set the tunnelling bias (V)."""

    voltage: float
    kind: Literal["bias"] = "bias"


@dataclass(frozen=True, slots=True)
class SetSetpoint:
    """Set the current setpoint (A)."""

    current: float
    kind: Literal["setpoint"] = "setpoint"


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Retract the tip fully (feedback off)."""

    kind: Literal["withdraw"] = "withdraw"


@dataclass(frozen=True, slots=True)
class Approach:
    """Auto-approach until tunnelling, feedback on."""

    kind: Literal["approach"] = "approach"


@dataclass(frozen=True, slots=True)
class Stop:
    """End the run."""

    kind: Literal["stop"] = "stop"


#: Where a spectrum's dI/dV comes from: the controller's own channel (its internal lock-in, or an
#: external lock-in wired to one of its inputs), an external lock-in amplifier read point by
#: point while the bias is stepped, the numerical derivative of I(V), or nowhere (I(V) only).
DidvSource: TypeAlias = Literal["driver", "lockin", "numerical", "none"]


@dataclass(frozen=True, slots=True)
class PointSpectrum:
    """Bias spectroscopy at ``position`` (x, y) in metres, or where the tip is (None).

    The tip moves there with the feedback on, then ``request`` is swept with the feedback off
    (the bias returns to the imaging bias afterwards). ``didv`` says where dI/dV comes from (see
    :data:`DidvSource`); ``target`` says why this point was chosen (``"terrace"``,
    ``"adsorbate"``, or ``""``) and goes into the spectrum's metadata.
    """

    request: SpectrumRequest
    position: tuple[float, float] | None = None
    didv: DidvSource = "driver"
    target: str = ""
    kind: Literal["spectrum"] = "spectrum"


@dataclass(frozen=True, slots=True)
class GridSpectrum:
    """A spectrum at every point of ``area``: ``area.pixels`` points per row, ``area.lines``
    rows, placed as Nanonis places grid points (see
    :meth:`probepilot.store.Grid.nominal_positions`), rows measured from the low-y edge up.
    ``request`` and ``didv`` as for :class:`PointSpectrum`."""

    area: ScanArea
    request: SpectrumRequest
    didv: DidvSource = "driver"
    kind: Literal["grid"] = "grid"


Action: TypeAlias = (
    Pulse
    | Dip
    | Move
    | CoarseStep
    | Scan
    | KeepImaging
    | CompensateDrift
    | SetBias
    | SetSetpoint
    | Withdraw
    | Approach
    | Stop
    | PointSpectrum
    | GridSpectrum
)

#: Actions that take spectra; the session persists what they return.
SPECTROSCOPY_ACTIONS: tuple[type, ...] = (PointSpectrum, GridSpectrum)

#: Actions that change the tip apex; the safety envelope limits how often they happen.
CONDITIONING_ACTIONS: tuple[type, ...] = (Pulse, Dip)

#: The DeepSPM-like default conditioning action set (Krull et al. 2020): pulses of +/-2.5,
#: +/-4 and +/-8 V for 200 ms and dips of 0.8 to 5 nm. Policies choose from it by default and
#: the simulator's conditioning model is calibrated against it.
DEFAULT_CONDITIONING_ACTIONS: tuple[Pulse | Dip, ...] = (
    *(Pulse(voltage=v, width=0.2) for v in (2.5, -2.5, 4.0, -4.0, 8.0, -8.0)),
    *(Dip(depth=d, bias=0.0) for d in (0.8e-9, 1.0e-9, 1.2e-9, 1.8e-9, 2.5e-9, 5.0e-9)),
)


# --------------------------------------------------------------------------------------------
# Analysis and decisions


class TipState(enum.StrEnum):
    """What a microscopist would call the tip."""

    GOOD = "good"
    DOUBLE = "double"
    BLUNT = "blunt"
    UNSTABLE = "unstable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Finding:
    """One conclusion of an analyzer about a frame.

    ``kind`` names what was found (``"tip_state"``, ``"double_tip"``, ``"drift"``,
    ``"tip_change"``, ``"roughness"`` ...); ``confidence`` is in [0, 1]; ``values`` holds the
    numbers in SI units (``"offset_x"`` in m, ``"vx"`` in m/s ...) or labels; ``lines`` lists the
    frame rows the finding refers to, where that applies.
    """

    analyzer: str
    kind: str
    confidence: float
    values: Mapping[str, float | str] = field(default_factory=dict)
    lines: tuple[int, ...] = ()
    message: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy sees before it decides.

    ``frame`` is the latest frame (None before the first), ``findings`` the analyzers' verdicts on
    it, ``tip_state`` the current best estimate, ``actions_since_good`` how many conditioning
    actions were taken since the tip was last good, ``clean_area`` the side (m) of the largest
    clean square in the latest frame, fit for conditioning.
    """

    frame: Frame | None
    findings: tuple[Finding, ...]
    tip_state: TipState
    actions_since_good: int = 0
    bad_frames_in_row: int = 0
    clean_area: float = 0.0
    elapsed: float = 0.0

    def finding(self, kind: str) -> Finding | None:
        """The most confident finding of ``kind``, or None."""
        matches = [f for f in self.findings if f.kind == kind]
        return max(matches, key=lambda f: f.confidence) if matches else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Fed back to a learning policy after its action was carried out."""

    action: Action
    observation: Observation
    reward: float
    done: bool
