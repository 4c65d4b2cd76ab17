"""The safety envelope: the one gate between a policy's wishes and the instrument.

A conditioning policy is a guess about what will fix the tip; it can be wrong, buggy, or (for a
learning policy) exploring. A bad guess must cost at most a bad frame, never a crashed tip, a
melted apex or a ruined sample. So every action a policy emits passes :meth:`SafetyEnvelope.check`
before any driver sees it, and the session only ever hands a driver the action of an accepted
:class:`Verdict`.

Three layers of limits apply, the tightest wins:

* **Hard ceilings** (the ``HARD_*`` constants below): what no config may raise, whatever the
  instrument could do. They appear as ``Range(..., ceiling=True)`` on :class:`SafetyLimits`, so
  ``probepilot config check`` reports "above the hard ceiling", and :class:`SafetyLimits` checks
  them again when built in code.
* **Configured limits** (:class:`SafetyLimits`, the ``[safety]`` table): what this lab allows on
  this sample with this tip, below the ceilings.
* **Instrument limits** (:class:`~probepilot.model.InstrumentLimits` in :class:`EnvelopeState`):
  what the driver says the hardware can do (piezo range, bias range, maximum setpoint).

An action outside them is rejected with one reason per violated limit. With
``on_violation = "clamp"`` a number that is merely too large is moved to the nearest allowed value
instead, and the verdict says so (``clamped=True`` and a reason per change); anything that cannot
be clamped honestly (NaN or infinity, an unknown axis, zero pixels, a rate limit) is still
rejected. Nothing is ever changed silently. Conditioning actions (pulses and dips) are further
limited to ``max_conditioning_per_minute`` over a sliding 60 s window, because a policy stuck in a
loop of pulses damages the tip and the surface faster than any single pulse does.

Decisions a microscopist may want to know about:

* ``SetBias`` refuses |V| below ``min_bias_magnitude`` (1 mV by default): near 0 V no current
  flows, and a feedback loop still asking for its setpoint drives the tip into the surface. A
  dip may be made at 0 V (it has its own ``dip_bias_range``); set ``min_bias_magnitude = 0`` to
  allow a zero imaging bias.
* Coarse steps towards the surface (``z-``) are refused by default
  (``max_coarse_approach_steps = 0``): one coarse step is larger than the whole z range, so the
  tip should only come closer through the controller's auto-approach (:class:`Approach`).
* A dip is checked against the z range only when the tip position is known; otherwise only
  ``max_dip_depth`` applies. The piezo range is taken as centred on zero on every axis.
* Spectra (``PointSpectrum``, ``GridSpectrum``) sweep the bias with the feedback off: both ends
  of the sweep must lie inside ``bias_range`` and the instrument's bias range (the sweep may
  cross 0 V: ``min_bias_magnitude`` is about the feedback, which is off), the spectrum's point
  and the whole grid inside the piezo range, with at most ``HARD_MAX_SPECTRUM_POINTS`` points,
  ``HARD_MAX_GRID_SIDE`` grid points per side and ``HARD_MAX_SPECTRUM_TIME`` per point.
* Only the exact action classes of :mod:`probepilot.model` pass; anything else (a subclass, a
  dict, a string) is rejected, as is every action when the instrument's own limits are
  unusable (NaN, non-positive range). ``Withdraw``, ``Approach`` and ``Stop`` always pass.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import numbers
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from probepilot.errors import SafetyError
from probepilot.model import (
    CONDITIONING_ACTIONS,
    Action,
    Approach,
    CoarseStep,
    CompensateDrift,
    DidvSource,
    Dip,
    GridSpectrum,
    InstrumentLimits,
    Move,
    PointSpectrum,
    Pulse,
    Scan,
    ScanArea,
    ScanSettings,
    SetBias,
    SetSetpoint,
    SpectrumRequest,
    Stop,
    TipPosition,
    Withdraw,
)
from probepilot.options import Doc, FieldInfo, Quantity, Range, fields_of
from probepilot.units import format_quantity

__all__ = [
    "COARSE_AXES",
    "CONDITIONING_WINDOW",
    "HARD_MAX_BIAS",
    "HARD_MAX_COARSE_STEPS",
    "HARD_MAX_CONDITIONING_PER_MINUTE",
    "HARD_MAX_DIP_DEPTH",
    "HARD_MAX_DRIFT_COMPENSATION",
    "HARD_MAX_GRID_SIDE",
    "HARD_MAX_PULSE",
    "HARD_MAX_PULSE_WIDTH",
    "HARD_MAX_SCAN_PIXELS",
    "HARD_MAX_SCAN_SPEED",
    "HARD_MAX_SETPOINT",
    "HARD_MAX_SPECTRUM_POINTS",
    "HARD_MAX_SPECTRUM_TIME",
    "HARD_MIN_SETPOINT",
    "HARD_MIN_Z_MARGIN",
    "EnvelopeState",
    "Intervention",
    "SafetyEnvelope",
    "SafetyLimits",
    "Verdict",
]

_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Hard ceilings: no config can raise them. SI units.

#: Largest |bias| (V) any config may allow; also the ceiling of the dip bias range. Standard STM
#: controllers (Nanonis, MATRIX) output +/-10 V.
HARD_MAX_BIAS = 10.0
#: Largest |pulse voltage| (V). Beyond ~10 V field emission can melt the apex and crater the
#: surface.
HARD_MAX_PULSE = 10.0
#: Longest pulse (s). Useful conditioning pulses last milliseconds to a few hundred milliseconds;
#: a second at several volts heats the junction for no gain.
HARD_MAX_PULSE_WIDTH = 1.0
#: Deepest dip (m). Controlled tip shaping indents a few nanometres; deeper is a crash.
HARD_MAX_DIP_DEPTH = 10e-9
#: Fastest tip speed along the fast scan axis (m/s). Faster than this the feedback cannot follow
#: the surface and the tip hits step edges and adsorbates.
HARD_MAX_SCAN_SPEED = 10e-6
#: Largest current setpoint (A). At 100 nA the tip is within a few angstroms of the surface.
HARD_MAX_SETPOINT = 100e-9
#: Smallest setpoint (A) any config may allow. Below ~0.1 pA the current is preamplifier noise,
#: the feedback chases noise and drives the tip into the surface.
HARD_MIN_SETPOINT = 0.1e-12
#: Most conditioning actions (pulses and dips) per minute.
HARD_MAX_CONDITIONING_PER_MINUTE = 30
#: Most coarse-positioner steps in one action.
HARD_MAX_COARSE_STEPS = 1000
#: Fastest drift-compensation velocity (m/s, magnitude of (vx, vy, vz)). Thermal drift and
#: piezo creep are nm/s; a compensation much faster than that is a mistake that moves the tip.
HARD_MAX_DRIFT_COMPENSATION = 100e-9
#: Smallest z margin (m) any config may allow between a dipped tip and the end of the z range.
HARD_MIN_Z_MARGIN = 1e-9
#: Most pixels per line, and most lines per frame.
HARD_MAX_SCAN_PIXELS = 8192

#: Most points of one bias sweep (what Nanonis and the simulator accept).
HARD_MAX_SPECTRUM_POINTS = 100_000
#: Most points per side of a spectroscopy grid.
HARD_MAX_GRID_SIDE = 256
#: Longest settle time, and longest integration time, per sweep point (s): the feedback is off
#: during a sweep, and drift moves the tip meanwhile.
HARD_MAX_SPECTRUM_TIME = 1.0

#: The sliding window (s) over which ``max_conditioning_per_minute`` is counted.
CONDITIONING_WINDOW = 60.0
#: Axes a coarse step may name; ``z-`` moves towards the surface.
COARSE_AXES: tuple[str, ...] = ("x+", "x-", "y+", "y-", "z+", "z-")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SafetyLimits:
    """The ``[safety]`` table: the limits this lab sets below the hard ceilings.

    Every quantity is in SI units; the config file may write unit strings (``max_pulse = "4 V"``,
    ``max_dip_depth = "2 nm"``, ``max_pulse_width = "500 ms"``). The instance checks itself when
    built, also when built in code rather than from a file, so the hard ceilings cannot be
    bypassed by constructing limits directly.
    """

    bias_range: Annotated[
        tuple[float, float],
        Quantity("V"),
        Range(-HARD_MAX_BIAS, HARD_MAX_BIAS, ceiling=True),
        Doc("Lowest and highest tunnelling bias a SetBias action may ask for."),
    ] = (-3.0, 3.0)
    min_bias_magnitude: Annotated[
        float,
        Quantity("V"),
        Range(0.0, 1.0),
        Doc(
            "Smallest |bias| a SetBias action may ask for: near 0 V no current flows and the "
            "feedback drives the tip into the surface. 0 disables the check."
        ),
    ] = 1e-3
    max_setpoint: Annotated[
        float,
        Quantity("A"),
        Range(HARD_MIN_SETPOINT, HARD_MAX_SETPOINT, ceiling=True),
        Doc("Largest current setpoint; a larger setpoint brings the tip closer to the surface."),
    ] = 1e-9
    min_setpoint: Annotated[
        float,
        Quantity("A"),
        Range(HARD_MIN_SETPOINT, HARD_MAX_SETPOINT, ceiling=True),
        Doc("Smallest current setpoint; below the noise floor the feedback loses the surface."),
    ] = 1e-12
    max_pulse: Annotated[
        float,
        Quantity("V"),
        Range(0.0, HARD_MAX_PULSE, ceiling=True),
        Doc("Largest |voltage| of a bias pulse (the default conditioning set uses +/-8 V)."),
    ] = 8.0
    max_pulse_width: Annotated[
        float,
        Quantity("s"),
        Range(0.0, HARD_MAX_PULSE_WIDTH, ceiling=True),
        Doc("Longest bias pulse."),
    ] = 0.5
    max_dip_depth: Annotated[
        float,
        Quantity("m"),
        Range(0.0, HARD_MAX_DIP_DEPTH, ceiling=True),
        Doc("Deepest controlled dip of the tip into the surface."),
    ] = 5e-9
    dip_bias_range: Annotated[
        tuple[float, float],
        Quantity("V"),
        Range(-HARD_MAX_BIAS, HARD_MAX_BIAS, ceiling=True),
        Doc("Lowest and highest bias during a dip; dips are made at small bias."),
    ] = (-1.0, 1.0)
    max_scan_speed: Annotated[
        float,
        Quantity("m/s"),
        Range(0.0, HARD_MAX_SCAN_SPEED, ceiling=True),
        Doc("Fastest tip speed along the fast scan axis (frame width / line time)."),
    ] = 1e-6
    max_conditioning_per_minute: Annotated[
        int,
        Range(0, HARD_MAX_CONDITIONING_PER_MINUTE, ceiling=True),
        Doc("Most pulses and dips in any 60 s window; 0 forbids conditioning."),
    ] = 6
    max_coarse_steps: Annotated[
        int,
        Range(0, HARD_MAX_COARSE_STEPS, ceiling=True),
        Doc("Most coarse-positioner steps in one action."),
    ] = 100
    max_coarse_approach_steps: Annotated[
        int,
        Range(0, HARD_MAX_COARSE_STEPS, ceiling=True),
        Doc(
            "Most coarse steps towards the surface (axis z-) in one action; 0 forbids them, "
            "so the tip only comes closer through the controller's auto-approach."
        ),
    ] = 0
    max_drift_compensation: Annotated[
        float,
        Quantity("m/s"),
        Range(0.0, HARD_MAX_DRIFT_COMPENSATION, ceiling=True),
        Doc("Fastest drift-compensation velocity, magnitude of (vx, vy, vz)."),
    ] = 10e-9
    z_margin: Annotated[
        float,
        Quantity("m"),
        Range(HARD_MIN_Z_MARGIN, None, ceiling=True),
        Doc("Room a dipped tip must keep above the fully extended end of the z piezo."),
    ] = 10e-9
    on_violation: Annotated[
        Literal["reject", "clamp"],
        Doc(
            "What to do with an action outside the limits: reject it, or clamp its numbers "
            "to the nearest allowed value (reported, never silent)."
        ),
    ] = "reject"

    def __post_init__(self) -> None:
        for info in _limit_fields():
            value = getattr(self, info.name)
            if info.type is int:
                _check_field(info, value, integer=True)
            elif info.type is float:
                _check_field(info, value, integer=False)
            elif isinstance(value, tuple) and len(value) == 2:
                for item in value:
                    _check_field(info, item, integer=False)
            elif info.name != "on_violation":
                raise ValueError(f"{info.name} must be two numbers (low, high), got {value!r}")
        if self.on_violation not in ("reject", "clamp"):
            raise ValueError(f"on_violation must be 'reject' or 'clamp', got {self.on_violation!r}")
        lo, hi = self.bias_range
        if not lo < hi:
            raise ValueError(
                f"bias_range: the low end {_q(lo, 'V')} must be below the high end {_q(hi, 'V')}"
            )
        lo, hi = self.dip_bias_range
        if not lo <= hi:
            raise ValueError(
                f"dip_bias_range: the low end {_q(lo, 'V')} must not be above the high end "
                f"{_q(hi, 'V')}"
            )
        if not self.min_setpoint < self.max_setpoint:
            raise ValueError(
                f"min_setpoint {_q(self.min_setpoint, 'A')} must be below max_setpoint "
                f"{_q(self.max_setpoint, 'A')}"
            )
        for name, unit in (
            ("max_pulse", "V"),
            ("max_pulse_width", "s"),
            ("max_dip_depth", "m"),
            ("max_scan_speed", "m/s"),
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {_q(getattr(self, name), unit)}")


@functools.cache
def _limit_fields() -> tuple[FieldInfo, ...]:
    return tuple(fields_of(SafetyLimits))


def _check_field(info: FieldInfo, value: object, *, integer: bool) -> None:
    """Enforce a field's declared type and range on a value given in code (not through config)."""
    unit = info.quantity.unit if info.quantity else ""
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral if integer else numbers.Real
    ):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{info.name} must be {kind}, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{info.name} must be a finite number, got {value!r}")
    rng = info.range
    if rng is None:
        return
    word = "hard ceiling" if rng.ceiling else "maximum"
    if rng.high is not None and number > rng.high:
        raise ValueError(
            f"{info.name} {_q(number, unit)} is above the {word} of {_q(rng.high, unit)}"
        )
    word = "hard floor" if rng.ceiling else "minimum"
    if rng.low is not None and number < rng.low:
        raise ValueError(
            f"{info.name} {_q(number, unit)} is below the {word} of {_q(rng.low, unit)}"
        )


# --------------------------------------------------------------------------------------------
# What the envelope sees and says


@dataclass(frozen=True, slots=True)
class EnvelopeState:
    """What the envelope needs to know about the instrument right now.

    ``limits`` comes from the driver: x and y are centred on zero, z spans
    :meth:`~probepilot.model.InstrumentLimits.z_bounds` (the first value is the fully extended
    end, closest to the surface). ``tip``
    is the current tip position when known; without it a dip is checked against
    ``max_dip_depth`` only, not against the z range.
    """

    limits: InstrumentLimits
    tip: TipPosition | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The envelope's answer for one action.

    ``action`` is what may be executed: the requested action itself when it was within limits,
    the clamped copy when it was clamped, and the requested action (unexecutable) when rejected.
    ``reasons`` has one line per violated limit, naming the limit and the values with units;
    ``requested`` is the action exactly as asked.
    """

    accepted: bool
    action: Action
    reasons: tuple[str, ...] = ()
    clamped: bool = False
    requested: Action | None = None


@dataclass(frozen=True, slots=True)
class Intervention:
    """A rejection or clamp, kept for the dashboard: when (envelope clock, s) and the verdict."""

    time: float
    verdict: Verdict


# --------------------------------------------------------------------------------------------
# Number formatting for reasons


def _q(value: float, unit: str, digits: int = 6) -> str:
    """``2e-9, "m"`` -> ``"2 nm"``; ``"m/s"`` gets a prefix on the metre (``"1 µm/s"``)."""
    return format_quantity(value, unit, digits)


def _qq(value: float, limit: float, unit: str) -> tuple[str, str]:
    """Both numbers, with enough digits that a value just past its limit reads differently."""
    a, b = _q(value, unit), _q(limit, unit)
    digits = 6
    while a == b and value != limit and digits < 17:
        digits += 1
        a, b = _q(value, unit, digits), _q(limit, unit, digits)
    return a, b


def _span(lo: float, hi: float, unit: str) -> str:
    return f"{_q(lo, unit)} to {_q(hi, unit)}"


# --------------------------------------------------------------------------------------------
# Collecting violations for one action


class _Findings:
    """Violations found in one action: fatal ones (cannot be clamped) and clampable ones."""

    def __init__(self) -> None:
        self.fatal: list[str] = []
        self.fixes: list[tuple[str, str]] = []
        self._order: list[tuple[str, str | None, bool]] = []

    def reject(self, reason: str, *, clamp_note: bool = False) -> None:
        """A violation that cannot be clamped. A ``clamp_note`` only explains why clamping
        failed, so it is shown in clamp mode only."""
        self.fatal.append(reason)
        self._order.append((reason, None, clamp_note))

    def fix(self, reason: str, clamped_to: str) -> None:
        self.fixes.append((reason, clamped_to))
        self._order.append((reason, clamped_to, False))

    @property
    def clean(self) -> bool:
        return not self.fatal and not self.fixes

    def render(self, *, clamp_mode: bool, clamped: bool = False) -> tuple[str, ...]:
        return tuple(
            f"{reason}; clamped to {to}" if clamped and to is not None else reason
            for reason, to, note in self._order
            if clamp_mode or not note
        )


def _real(f: _Findings, what: str, value: object) -> float | None:
    """``value`` as a finite float, or None after recording why not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        f.reject(f"{what} is not a number ({value!r})")
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        f.reject(f"{what} is not a finite number ({value!r})")
        return None
    if not math.isfinite(number):
        f.reject(f"{what} is not a finite number ({number!r})")
        return None
    return number


def _integer(f: _Findings, what: str, value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        f.reject(f"{what} must be an integer, got {value!r}")
        return None
    return int(value)


def _xy(f: _Findings, what: str, value: object) -> tuple[float, float] | None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        f.reject(f"{what} must be (x, y) in metres, got {value!r}")
        return None
    x = _real(f, f"{what} x", value[0])
    y = _real(f, f"{what} y", value[1])
    if x is None or y is None:
        return None
    return (x, y)


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


def _finite_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _state_problem(state: object) -> str | None:
    """Why the instrument limits cannot be trusted, or None when they are usable."""
    if not isinstance(state, EnvelopeState):
        return f"no instrument state to check against (got {state!r})"
    limits: object = state.limits
    if not isinstance(limits, InstrumentLimits):
        return f"no instrument limits to check against (got {limits!r})"
    piezo: object = limits.piezo_range
    if not isinstance(piezo, tuple) or len(piezo) != 3:
        return f"instrument piezo_range {piezo!r} is not three lengths"
    for v in piezo:
        number = _finite_or_none(v)
        if number is None or not number > 0:
            return f"instrument piezo_range {piezo!r} is not three positive finite lengths"
    bias: object = limits.bias_range
    if not isinstance(bias, tuple) or len(bias) != 2:
        return f"instrument bias_range {bias!r} is not a (low, high) pair"
    lo, hi = _finite_or_none(bias[0]), _finite_or_none(bias[1])
    if lo is None or hi is None or not lo < hi:
        return f"instrument bias_range {bias!r} is not a finite (low, high) pair with low < high"
    max_setpoint = _finite_or_none(limits.max_setpoint)
    if max_setpoint is None or not max_setpoint > 0:
        return f"instrument max_setpoint {limits.max_setpoint!r} is not a positive finite current"
    z_limits: object = limits.z_limits
    if z_limits is not None:
        if not isinstance(z_limits, tuple) or len(z_limits) != 2:
            return f"instrument z_limits {z_limits!r} is not a (low, high) pair"
        zlo, zhi = _finite_or_none(z_limits[0]), _finite_or_none(z_limits[1])
        if zlo is None or zhi is None or not zlo < zhi:
            return f"instrument z_limits {z_limits!r} is not a finite pair with low < high"
    return None


_Rule = Callable[["SafetyEnvelope", _Findings, Any, EnvelopeState], Any]


# --------------------------------------------------------------------------------------------
# The envelope


class SafetyEnvelope:
    """Checks every action against the hard ceilings, the configured limits and the instrument.

    ``clock`` gives the time in seconds (monotonic) for the conditioning rate limit; tests pass a
    fake. The envelope is used from one thread (the session's event loop) and keeps state only
    for the rate limit and the recent interventions.
    """

    def __init__(
        self,
        limits: SafetyLimits,
        clock: Callable[[], float] = time.monotonic,
        *,
        history: int = 100,
    ) -> None:
        if not isinstance(limits, SafetyLimits):
            raise TypeError(f"limits must be SafetyLimits, got {type(limits).__name__}")
        self._limits = limits
        self._clock = clock
        self._conditioning: deque[float] = deque()
        #: Recent rejections (most recent last), for the dashboard.
        self.rejections: deque[Intervention] = deque(maxlen=history)
        #: Recent clamps (most recent last), for the dashboard.
        self.clamps: deque[Intervention] = deque(maxlen=history)

    @property
    def limits(self) -> SafetyLimits:
        """The configured limits (read-only; build a new envelope to change them)."""
        return self._limits

    # -- public API ----------------------------------------------------------------------------

    def check(self, action: Action, state: EnvelopeState, *, record: bool = True) -> Verdict:
        """Judge ``action`` against every limit and return the verdict.

        With ``record`` (the default) an accepted pulse or dip counts towards the conditioning
        rate limit, and a rejection or clamp is kept in :attr:`rejections` / :attr:`clamps` and
        logged: call it this way exactly once for an action that is about to be executed. With
        ``record=False`` nothing is counted or kept (a dry run: "would this pass?").
        """
        now = self._clock()
        verdict = self._judge(action, state, now)
        if record:
            if verdict.accepted and isinstance(verdict.action, CONDITIONING_ACTIONS):
                self._conditioning.append(now)
            if not verdict.accepted:
                self.rejections.append(Intervention(now, verdict))
                _log.info("safety envelope rejected %r: %s", action, "; ".join(verdict.reasons))
            elif verdict.clamped:
                self.clamps.append(Intervention(now, verdict))
                _log.warning(
                    "safety envelope clamped %r to %r: %s",
                    action,
                    verdict.action,
                    "; ".join(verdict.reasons),
                )
        return verdict

    def check_or_raise(
        self, action: Action, state: EnvelopeState, *, record: bool = True
    ) -> Action:
        """The action to execute (clamped in clamp mode), or :class:`SafetyError` with reasons."""
        verdict = self.check(action, state, record=record)
        if not verdict.accepted:
            raise SafetyError(action, verdict.reasons)
        return verdict.action

    def conditioning_count(self, now: float | None = None) -> int:
        """How many accepted pulses and dips fall inside the current 60 s window."""
        return len(self._window(self._clock() if now is None else now))

    # -- judging -------------------------------------------------------------------------------

    def _window(self, now: float) -> list[float]:
        """Times of the recorded conditioning actions still inside the window, oldest first.

        Older ones are forgotten. A time later than ``now`` (a clock that stepped back) stays
        and counts: the window errs on the side of fewer pulses.
        """
        self._conditioning = deque(t for t in self._conditioning if now - t < CONDITIONING_WINDOW)
        return sorted(self._conditioning)

    def _judge(self, action: Action, state: EnvelopeState, now: float) -> Verdict:
        rule = _RULES.get(type(action))
        if rule is None:
            if type(action) in (Withdraw, Approach, Stop):
                # Always allowed: they take the tip away from the surface or end the run.
                return Verdict(True, action, requested=action)
            reason = (
                f"unknown action type {type(action).__name__}; only the actions of "
                "probepilot.model can reach an instrument"
            )
            return Verdict(False, action, (reason,), requested=action)
        findings = _Findings()
        problem = _state_problem(state)
        candidate: Any = None
        if problem is not None:
            findings.reject(f"{problem}; only withdraw, approach and stop are allowed")
        else:
            candidate = rule(self, findings, action, state)
        if isinstance(action, CONDITIONING_ACTIONS):
            self._check_rate(findings, now)
        clamp = self._limits.on_violation == "clamp"
        if findings.clean:
            return Verdict(True, action, requested=action)
        if findings.fatal or not clamp or candidate is None:
            return Verdict(False, action, findings.render(clamp_mode=clamp), requested=action)
        # Clamp mode: prove the clamped action is inside every limit before letting it out.
        again = _Findings()
        rule(self, again, candidate, state)
        if not again.clean:
            problems = "; ".join(again.render(clamp_mode=False))
            reasons = (
                *findings.render(clamp_mode=True),
                f"could not clamp it into the limits: {problems}",
            )
            return Verdict(False, action, reasons, requested=action)
        return Verdict(
            True,
            candidate,
            findings.render(clamp_mode=True, clamped=True),
            clamped=True,
            requested=action,
        )

    def _check_rate(self, f: _Findings, now: float) -> None:
        limit = self._limits.max_conditioning_per_minute
        window = self._window(now)
        if len(window) < limit:
            return
        if limit == 0:
            f.reject("conditioning is disabled (max_conditioning_per_minute 0)")
            return
        wait = CONDITIONING_WINDOW - (now - window[len(window) - limit])
        f.reject(
            f"conditioning rate: {len(window)} pulses/dips in the last {CONDITIONING_WINDOW:g} s "
            f"reach max_conditioning_per_minute {limit}; next allowed in {max(wait, 0.0):.1f} s"
        )

    # -- one rule per action type ----------------------------------------------------------------
    # Each rule records every violation in ``f`` and returns the action with clamped values
    # substituted (or None when a fatal problem leaves nothing to clamp). Rules never look at
    # on_violation: _judge decides what to do with the findings.

    def _position(
        self, f: _Findings, what: str, value: object, state: EnvelopeState
    ) -> tuple[float, float] | None:
        xy = _xy(f, what, value)
        if xy is None:
            return None
        px, py, _ = state.limits.piezo_range
        return (
            self._inside(f, f"{what} x", xy[0], px / 2, "x"),
            self._inside(f, f"{what} y", xy[1], py / 2, "y"),
        )

    @staticmethod
    def _inside(f: _Findings, what: str, value: float, half: float, axis: str) -> float:
        if -half <= value <= half:
            return value
        to = _clamp(value, -half, half)
        f.fix(
            f"{what} {_q(value, 'm')} is outside the piezo {axis} range ±{_q(half, 'm')}",
            _q(to, "m"),
        )
        return to

    def _pulse(self, f: _Findings, action: Pulse, state: EnvelopeState) -> Pulse | None:
        lim = self._limits
        voltage = _real(f, "pulse voltage", action.voltage)
        width = _real(f, "pulse width", action.width)
        position = None
        if action.position is not None:
            position = self._position(f, "pulse position", action.position, state)
        if voltage is not None:
            blo, bhi = state.limits.bias_range
            lo, hi = max(-lim.max_pulse, blo), min(lim.max_pulse, bhi)
            problems = []
            if abs(voltage) > lim.max_pulse:
                v, m = _qq(abs(voltage), lim.max_pulse, "V")
                if voltage < 0:
                    v, m = f"-{v}", f"{m} in magnitude"
                problems.append(f"pulse {v} exceeds max_pulse {m}")
            if not blo <= voltage <= bhi:
                problems.append(
                    f"pulse {_q(voltage, 'V')} is outside the instrument bias range "
                    f"{_span(blo, bhi, 'V')}"
                )
            voltage = self._settle(f, problems, voltage, lo, hi, "V", "pulse voltage")
        if width is not None:
            if width <= 0:
                f.reject(f"pulse width {_q(width, 's')} must be positive")
                width = None
            elif width > lim.max_pulse_width:
                v, m = _qq(width, lim.max_pulse_width, "s")
                f.fix(f"pulse width {v} exceeds max_pulse_width {m}", _q(lim.max_pulse_width, "s"))
                width = lim.max_pulse_width
        if voltage is None or width is None or (action.position is not None and position is None):
            return None
        return dataclasses.replace(action, voltage=voltage, width=width, position=position)

    @staticmethod
    def _settle(
        f: _Findings,
        problems: list[str],
        value: float,
        lo: float,
        hi: float,
        unit: str,
        what: str,
    ) -> float | None:
        """Record ``problems`` with the value clamped into [lo, hi]; reject when that is empty."""
        if not problems:
            return value
        if lo > hi:
            for problem in problems:
                f.reject(problem)
            f.reject(f"no {what} satisfies all its limits ({_span(lo, hi, unit)} is empty)")
            return None
        to = _clamp(value, lo, hi)
        for problem in problems:
            f.fix(problem, _q(to, unit))
        return to

    def _dip(self, f: _Findings, action: Dip, state: EnvelopeState) -> Dip | None:
        lim = self._limits
        depth = _real(f, "dip depth", action.depth)
        bias = _real(f, "dip bias", action.bias)
        position = None
        if action.position is not None:
            position = self._position(f, "dip position", action.position, state)
        if depth is not None:
            if depth <= 0:
                f.reject(f"dip depth {_q(depth, 'm')} must be positive")
                depth = None
            else:
                depth = self._dip_depth(f, depth, state)
        if bias is not None:
            dlo, dhi = lim.dip_bias_range
            blo, bhi = state.limits.bias_range
            problems = []
            if not dlo <= bias <= dhi:
                problems.append(
                    f"dip bias {_q(bias, 'V')} is outside dip_bias_range {_span(dlo, dhi, 'V')}"
                )
            if not blo <= bias <= bhi:
                problems.append(
                    f"dip bias {_q(bias, 'V')} is outside the instrument bias range "
                    f"{_span(blo, bhi, 'V')}"
                )
            bias = self._settle(f, problems, bias, max(dlo, blo), min(dhi, bhi), "V", "dip bias")
        if depth is None or bias is None or (action.position is not None and position is None):
            return None
        return dataclasses.replace(action, depth=depth, bias=bias, position=position)

    def _dip_depth(self, f: _Findings, depth: float, state: EnvelopeState) -> float | None:
        lim = self._limits
        problems = []
        hi = lim.max_dip_depth
        if depth > lim.max_dip_depth:
            v, m = _qq(depth, lim.max_dip_depth, "m")
            problems.append(f"dip depth {v} exceeds max_dip_depth {m}")
        tip: object = state.tip
        if tip is not None:
            if not isinstance(tip, TipPosition):
                f.reject(f"the tip position {tip!r} is not a TipPosition; cannot check the dip")
                return None
            z = _real(f, "tip z", tip.z)
            if z is None:
                return None
            lowest, highest = state.limits.z_bounds()
            floor = lowest + lim.z_margin
            if z - depth < floor:
                where = (
                    f"z range {_q(lowest, 'm')} to {_q(highest, 'm')}, "
                    f"z_margin {_q(lim.z_margin, 'm')}"
                )
                room = _deepest(z, floor)
                if room <= 0:
                    for problem in problems:
                        f.reject(problem)
                    f.reject(
                        f"the tip at z {_q(z, 'm')} has no room for a dip above the z floor "
                        f"{_q(floor, 'm')} ({where})"
                    )
                    return None
                problems.append(
                    f"dip depth {_q(depth, 'm')} would take the tip from z {_q(z, 'm')} to "
                    f"{_q(z - depth, 'm')}, below the z floor {_q(floor, 'm')} ({where})"
                )
                hi = min(hi, room)
        if not problems:
            return depth
        to = min(depth, hi)
        for problem in problems:
            f.fix(problem, _q(to, "m"))
        return to

    def _move(self, f: _Findings, action: Move, state: EnvelopeState) -> Move | None:
        xy = self._position(f, "move", (action.x, action.y), state)
        if xy is None:
            return None
        return dataclasses.replace(action, x=xy[0], y=xy[1])

    def _coarse(self, f: _Findings, action: CoarseStep, state: EnvelopeState) -> CoarseStep | None:
        lim = self._limits
        axis: object = action.axis
        steps = _integer(f, "coarse steps", action.steps)
        if axis not in COARSE_AXES:
            f.reject(f"coarse step axis {axis!r} is not one of {', '.join(COARSE_AXES)}")
        if steps is None:
            return None
        if steps < 1:
            f.reject(f"coarse steps {steps} must be at least 1")
            return None
        problems = []
        hi = lim.max_coarse_steps
        if steps > lim.max_coarse_steps:
            problems.append(f"coarse steps {steps} exceed max_coarse_steps {lim.max_coarse_steps}")
        if axis == "z-" and steps > lim.max_coarse_approach_steps:
            hi = min(hi, lim.max_coarse_approach_steps)
            if lim.max_coarse_approach_steps == 0:
                for problem in problems:
                    f.reject(problem)
                f.reject(
                    "coarse steps towards the surface (z-) are disabled "
                    "(max_coarse_approach_steps 0); use Approach"
                )
                return None
            problems.append(
                f"coarse steps towards the surface (z-) {steps} exceed max_coarse_approach_steps "
                f"{lim.max_coarse_approach_steps}"
            )
        if hi < 1:
            for problem in problems:
                f.reject(problem)
            f.reject("coarse steps are disabled (max_coarse_steps 0)")
            return None
        for problem in problems:
            f.fix(problem, str(min(steps, hi)))
        return dataclasses.replace(action, steps=min(steps, hi))

    def _scan(self, f: _Findings, action: Scan, state: EnvelopeState) -> Scan | None:
        lim = self._limits
        settings: object = action.settings
        if not isinstance(settings, ScanSettings):
            f.reject(f"scan settings must be ScanSettings, got {settings!r}")
            return None
        area: object = settings.area
        if not isinstance(area, ScanArea):
            f.reject(f"scan area must be ScanArea, got {area!r}")
            return None
        centre = _xy(f, "scan centre", area.centre)
        size = _xy(f, "scan size", area.size)
        angle = _real(f, "scan angle", area.angle)
        line_time = _real(f, "scan line_time", settings.line_time)
        counts = []
        for what, value in (("pixels", area.pixels), ("lines", area.lines)):
            n = _integer(f, f"scan {what}", value)
            if n is not None and n < 1:
                f.reject(f"scan {what} {n} must be at least 1")
                n = None
            elif n is not None and n > HARD_MAX_SCAN_PIXELS:
                f.fix(
                    f"scan {what} {n} exceed the limit of {HARD_MAX_SCAN_PIXELS}",
                    str(HARD_MAX_SCAN_PIXELS),
                )
                n = HARD_MAX_SCAN_PIXELS
            counts.append(n)
        if size is not None:
            for what, length in (("width", size[0]), ("height", size[1])):
                if length <= 0:
                    f.reject(f"scan {what} {_q(length, 'm')} must be positive")
                    size = None
        if line_time is not None and line_time <= 0:
            f.reject(f"scan line_time {_q(line_time, 's')} must be positive")
            line_time = None
        pixels, lines = counts
        if (
            centre is None
            or size is None
            or angle is None
            or line_time is None
            or pixels is None
            or lines is None
        ):
            return None
        px, py, _ = state.limits.piezo_range
        asked = size[0] / line_time
        width = size[0]
        centre, size = self._fit_area(f, centre, size, angle, px / 2, py / 2)
        speed = size[0] / line_time
        if asked > lim.max_scan_speed or speed > lim.max_scan_speed:
            new_time = line_time
            if speed > lim.max_scan_speed:
                new_time = size[0] / lim.max_scan_speed
                while size[0] / new_time > lim.max_scan_speed:
                    new_time = math.nextafter(new_time, math.inf)
            v, m = _qq(asked, lim.max_scan_speed, "m/s")
            f.fix(
                f"scan speed {v} (width {_q(width, 'm')} / line_time "
                f"{_q(line_time, 's')}) exceeds max_scan_speed {m}",
                f"{_q(size[0] / new_time, 'm/s')} (line_time {_q(new_time, 's')})",
            )
            line_time = new_time
        new_area = dataclasses.replace(area, centre=centre, size=size, pixels=pixels, lines=lines)
        new_settings = dataclasses.replace(settings, area=new_area, line_time=line_time)
        return dataclasses.replace(action, settings=new_settings)

    @staticmethod
    def _fit_area(
        f: _Findings,
        centre: tuple[float, float],
        size: tuple[float, float],
        angle: float,
        half_x: float,
        half_y: float,
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """Check that all four (rotated) corners lie in the piezo range; if not, record it and
        return the area moved (and, only if it is too large, shrunk) into the range."""

        def outside(c: tuple[float, float], s: tuple[float, float]) -> bool:
            corners = ScanArea(c, s, 1, 1, angle).corners()
            return any(not (-half_x <= x <= half_x and -half_y <= y <= half_y) for x, y in corners)

        if not outside(centre, size):
            return centre, size
        corners = ScanArea(centre, size, 1, 1, angle).corners()
        xs = [x for x, _ in corners]
        ys = [y for _, y in corners]
        reason = (
            f"scan area spans x {_span(min(xs), max(xs), 'm')}, y {_span(min(ys), max(ys), 'm')}, "
            f"outside the piezo range ±{_q(half_x, 'm')} x ±{_q(half_y, 'm')}"
        )
        cos, sin = abs(math.cos(angle)), abs(math.sin(angle))

        def extents(s: tuple[float, float]) -> tuple[float, float]:
            return (s[0] / 2 * cos + s[1] / 2 * sin, s[0] / 2 * sin + s[1] / 2 * cos)

        ex, ey = extents(size)
        k = min(1.0, half_x / ex if ex > 0 else 1.0, half_y / ey if ey > 0 else 1.0)
        new_size = (size[0] * k, size[1] * k) if k < 1.0 else size
        new_centre = centre
        for _ in range(64):
            ex, ey = extents(new_size)
            new_centre = (
                _clamp(centre[0], -(half_x - ex), half_x - ex) if ex < half_x else 0.0,
                _clamp(centre[1], -(half_y - ey), half_y - ey) if ey < half_y else 0.0,
            )
            if not outside(new_centre, new_size):
                break
            new_size = (new_size[0] * (1 - 2**-40), new_size[1] * (1 - 2**-40))
        resized = new_size != size
        to = f"centre ({_q(new_centre[0], 'm')}, {_q(new_centre[1], 'm')})"
        if resized:
            to += f", size {_q(new_size[0], 'm')} x {_q(new_size[1], 'm')}"
        f.fix(reason, to)
        return new_centre, new_size

    def _drift(
        self, f: _Findings, action: CompensateDrift, state: EnvelopeState
    ) -> CompensateDrift | None:
        lim = self._limits
        v = [_real(f, f"drift compensation {n}", getattr(action, n)) for n in ("vx", "vy", "vz")]
        vx, vy, vz = v
        if vx is None or vy is None or vz is None:
            return None
        speed = math.hypot(vx, vy, vz)
        if speed <= lim.max_drift_compensation:
            return action
        new = _scale_to(vx, vy, vz, lim.max_drift_compensation)
        s, m = _qq(speed, lim.max_drift_compensation, "m/s")
        f.fix(
            f"drift compensation speed {s} exceeds max_drift_compensation {m}",
            "(" + ", ".join(_q(c, "m/s") for c in new) + ")",
        )
        return dataclasses.replace(action, vx=new[0], vy=new[1], vz=new[2])

    def _bias(self, f: _Findings, action: SetBias, state: EnvelopeState) -> SetBias | None:
        lim = self._limits
        voltage = _real(f, "bias", action.voltage)
        if voltage is None:
            return None
        clo, chi = lim.bias_range
        blo, bhi = state.limits.bias_range
        floor = lim.min_bias_magnitude
        problems = []
        if not clo <= voltage <= chi:
            problems.append(f"bias {_q(voltage, 'V')} is outside bias_range {_span(clo, chi, 'V')}")
        if not blo <= voltage <= bhi:
            problems.append(
                f"bias {_q(voltage, 'V')} is outside the instrument bias range "
                f"{_span(blo, bhi, 'V')}"
            )
        if abs(voltage) < floor:
            problems.append(
                f"bias {_q(voltage, 'V')} is below min_bias_magnitude {_q(floor, 'V')} "
                "(near 0 V the feedback drives the tip into the surface)"
            )
        if not problems:
            return action
        lo, hi = max(clo, blo), min(chi, bhi)
        to: float | None = _clamp(voltage, lo, hi) if lo <= hi else None
        if to is not None and abs(to) < floor:
            options = [b for b in (-floor, floor) if lo <= b <= hi]
            if voltage > 0 and floor in options:
                to = floor
            elif voltage < 0 and -floor in options:
                to = -floor
            elif len(options) == 1 and voltage != 0:
                to = options[0]
            else:
                to = None
        if to is None:
            for problem in problems:
                f.reject(problem)
            f.reject(f"no allowed bias near {_q(voltage, 'V')} to clamp to", clamp_note=True)
            return None
        for problem in problems:
            f.fix(problem, _q(to, "V"))
        return dataclasses.replace(action, voltage=to)

    def _setpoint(
        self, f: _Findings, action: SetSetpoint, state: EnvelopeState
    ) -> SetSetpoint | None:
        lim = self._limits
        current = _real(f, "setpoint", action.current)
        if current is None:
            return None
        if current <= 0:
            f.reject(f"setpoint {_q(current, 'A')} must be positive (a current magnitude)")
            return None
        instrument = float(state.limits.max_setpoint)
        problems = []
        if current < lim.min_setpoint:
            v, m = _qq(current, lim.min_setpoint, "A")
            problems.append(f"setpoint {v} is below min_setpoint {m}")
        if current > lim.max_setpoint:
            v, m = _qq(current, lim.max_setpoint, "A")
            problems.append(f"setpoint {v} exceeds max_setpoint {m}")
        if current > instrument:
            v, m = _qq(current, instrument, "A")
            problems.append(f"setpoint {v} exceeds the instrument maximum {m}")
        to = self._settle(
            f,
            problems,
            current,
            lim.min_setpoint,
            min(lim.max_setpoint, instrument),
            "A",
            "setpoint",
        )
        if to is None:
            return None
        return dataclasses.replace(action, current=to)

    # -- spectroscopy ------------------------------------------------------------------------

    def _sweep(self, f: _Findings, request: object, state: EnvelopeState) -> SpectrumRequest | None:
        """A bias sweep: both ends in the configured and the instrument's bias range, a sane
        number of points and per-point times."""
        if type(request) is not SpectrumRequest:
            f.reject(f"the sweep must be a SpectrumRequest, got {request!r}")
            return None
        lim = self._limits
        start = _real(f, "sweep start", request.start)
        stop = _real(f, "sweep end", request.stop)
        points = _integer(f, "sweep points", request.points)
        times = {
            name: _real(f, f"sweep {name}", getattr(request, name))
            for name in ("settle_time", "integration_time")
        }
        channels: object = request.channels
        if not isinstance(channels, tuple) or not all(isinstance(c, str) for c in channels):
            f.reject(f"sweep channels must be a tuple of names, got {channels!r}")
        if points is not None:
            if points < 2:
                f.reject(f"sweep points {points} must be at least 2")
                points = None
            elif points > HARD_MAX_SPECTRUM_POINTS:
                f.fix(
                    f"sweep points {points} exceed the limit of {HARD_MAX_SPECTRUM_POINTS}",
                    str(HARD_MAX_SPECTRUM_POINTS),
                )
                points = HARD_MAX_SPECTRUM_POINTS
        for name, value in times.items():
            if value is None:
                continue
            if value < 0:
                f.reject(f"sweep {name} {_q(value, 's')} must not be negative")
                times[name] = None
            elif value > HARD_MAX_SPECTRUM_TIME:
                v, m = _qq(value, HARD_MAX_SPECTRUM_TIME, "s")
                f.fix(f"sweep {name} {v} exceeds the limit of {m}", _q(HARD_MAX_SPECTRUM_TIME, "s"))
                times[name] = HARD_MAX_SPECTRUM_TIME
        clo, chi = lim.bias_range
        blo, bhi = state.limits.bias_range
        ends: list[float | None] = []
        for what, value in (("sweep start", start), ("sweep end", stop)):
            if value is None:
                ends.append(None)
                continue
            problems = []
            if not clo <= value <= chi:
                problems.append(
                    f"{what} {_q(value, 'V')} is outside bias_range {_span(clo, chi, 'V')}"
                )
            if not blo <= value <= bhi:
                problems.append(
                    f"{what} {_q(value, 'V')} is outside the instrument bias range "
                    f"{_span(blo, bhi, 'V')}"
                )
            ends.append(self._settle(f, problems, value, max(clo, blo), min(chi, bhi), "V", what))
        start, stop = ends
        if start is not None and stop is not None and start == stop:
            f.reject(f"the sweep starts and ends at {_q(start, 'V')}: nothing to sweep")
            return None
        settle, integration = times["settle_time"], times["integration_time"]
        if start is None or stop is None or points is None or settle is None:
            return None
        if integration is None:
            return None
        return dataclasses.replace(
            request,
            start=start,
            stop=stop,
            points=points,
            settle_time=settle,
            integration_time=integration,
        )

    @staticmethod
    def _didv(f: _Findings, didv: object) -> None:
        if didv not in get_args(DidvSource):
            f.reject(f"dI/dV source {didv!r} is not one of {', '.join(get_args(DidvSource))}")

    def _spectrum(
        self, f: _Findings, action: PointSpectrum, state: EnvelopeState
    ) -> PointSpectrum | None:
        request = self._sweep(f, action.request, state)
        position = None
        if action.position is not None:
            position = self._position(f, "spectrum position", action.position, state)
        self._didv(f, action.didv)
        target: object = action.target
        if not isinstance(target, str):
            f.reject(f"spectrum target must be a string, got {target!r}")
        if request is None or (action.position is not None and position is None):
            return None
        return dataclasses.replace(action, request=request, position=position)

    def _grid(
        self, f: _Findings, action: GridSpectrum, state: EnvelopeState
    ) -> GridSpectrum | None:
        request = self._sweep(f, action.request, state)
        self._didv(f, action.didv)
        area: object = action.area
        if type(area) is not ScanArea:
            f.reject(f"grid area must be ScanArea, got {area!r}")
            return None
        centre = _xy(f, "grid centre", area.centre)
        size = _xy(f, "grid size", area.size)
        angle = _real(f, "grid angle", area.angle)
        counts = []
        for what, value in (("points per row", area.pixels), ("rows", area.lines)):
            n = _integer(f, f"grid {what}", value)
            if n is not None and n < 1:
                f.reject(f"grid {what} {n} must be at least 1")
                n = None
            elif n is not None and n > HARD_MAX_GRID_SIDE:
                f.fix(
                    f"grid {what} {n} exceed the limit of {HARD_MAX_GRID_SIDE}",
                    str(HARD_MAX_GRID_SIDE),
                )
                n = HARD_MAX_GRID_SIDE
            counts.append(n)
        if size is not None and not (size[0] > 0 and size[1] > 0):
            f.reject(f"grid size {_q(size[0], 'm')} x {_q(size[1], 'm')} must be positive")
            size = None
        pixels, lines = counts
        if centre is None or size is None or angle is None or pixels is None or lines is None:
            return None
        px, py, _ = state.limits.piezo_range
        centre, size = self._fit_area(f, centre, size, angle, px / 2, py / 2)
        if request is None:
            return None
        new_area = dataclasses.replace(area, centre=centre, size=size, pixels=pixels, lines=lines)
        return dataclasses.replace(action, area=new_area, request=request)


def _deepest(z: float, floor: float) -> float:
    """The largest depth d with ``z - d >= floor`` in floating point (<= 0 when none)."""
    d = z - floor
    if not d > 0:
        return d
    for _ in range(64):
        if z - d >= floor:
            return d
        d = math.nextafter(d, 0.0)
    return 0.0


def _scale_to(vx: float, vy: float, vz: float, limit: float) -> tuple[float, float, float]:
    """(vx, vy, vz) scaled to magnitude ``limit`` (or just under), direction kept."""
    if limit <= 0:
        return (0.0, 0.0, 0.0)
    big = max(abs(vx), abs(vy), abs(vz))
    unit = (vx / big, vy / big, vz / big)  # avoids overflow in the norm of huge vectors
    k = limit / math.hypot(*unit)
    out = (unit[0] * k, unit[1] * k, unit[2] * k)
    for _ in range(64):
        if math.hypot(*out) <= limit:
            return out
        out = (out[0] * (1 - 2**-40), out[1] * (1 - 2**-40), out[2] * (1 - 2**-40))
    return (0.0, 0.0, 0.0)


_RULES: dict[type, _Rule] = {
    Pulse: SafetyEnvelope._pulse,
    Dip: SafetyEnvelope._dip,
    Move: SafetyEnvelope._move,
    CoarseStep: SafetyEnvelope._coarse,
    Scan: SafetyEnvelope._scan,
    CompensateDrift: SafetyEnvelope._drift,
    SetBias: SafetyEnvelope._bias,
    SetSetpoint: SafetyEnvelope._setpoint,
    PointSpectrum: SafetyEnvelope._spectrum,
    GridSpectrum: SafetyEnvelope._grid,
}
