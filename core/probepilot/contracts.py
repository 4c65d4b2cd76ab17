"""The contracts plugins implement: :class:`Driver`, :class:`Analyzer`, :class:`Policy`,
:class:`Panel`, and the auxiliary instruments (:class:`Instrument`, :class:`LockIn`,
:class:`Positioner`, :class:`Preamplifier`).

They are :class:`typing.Protocol`\\ s, so a plugin needs no base class; :class:`DriverBase` is
offered for drivers that support only part of the contract: everything they do not override
raises :class:`~probepilot.errors.NotSupportedError` naming the driver and the operation.

Live operations of a driver are ``async``. Blocking vendor SDKs run their calls in a thread
(``asyncio.to_thread``) so the session's event loop never stalls.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from probepilot.errors import LimitError, NotSupportedError
from probepilot.model import (
    Action,
    Finding,
    Frame,
    InstrumentLimits,
    LineProgress,
    LockInReading,
    Observation,
    Outcome,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)

if TYPE_CHECKING:
    from probepilot.config import Config
    from probepilot.link import RunLink
    from probepilot.plugins import PluginManager

ProgressCallback = Callable[[LineProgress], None]


class Capability(enum.StrEnum):
    """Optional parts of the driver contract. A driver lists those it implements."""

    SCAN = "scan"
    BIAS_PULSE = "bias_pulse"
    DIP = "dip"
    SPECTRUM = "spectrum"
    COARSE_MOVE = "coarse_move"
    DRIFT_COMPENSATION = "drift_compensation"
    APPROACH = "approach"
    TIP_MOVE = "tip_move"


@runtime_checkable
class Driver(Protocol):
    """An instrument (real, simulated or remote) as probepilot drives it.

    All quantities are SI. Methods that need a connection raise
    :class:`~probepilot.errors.NotConnectedError` before :meth:`connect`; operations outside
    :meth:`capabilities` raise :class:`~probepilot.errors.NotSupportedError`; values outside
    :meth:`limits` raise :class:`~probepilot.errors.LimitError`.
    """

    name: str

    async def connect(self) -> None:
        """Open the connection; idempotent."""
        ...

    async def close(self) -> None:
        """Close the connection; idempotent, never raises for an already closed driver."""
        ...

    def capabilities(self) -> frozenset[Capability]:
        """The optional operations this driver implements."""
        ...

    async def limits(self) -> InstrumentLimits:
        """Piezo range, bias range and setpoint ceiling of the instrument."""
        ...

    async def get_bias(self) -> float:
        """Tunnelling bias, V."""
        ...

    async def set_bias(self, voltage: float) -> None:
        """Set the tunnelling bias, V."""
        ...

    async def get_setpoint(self) -> float:
        """Current setpoint of the z-controller, A."""
        ...

    async def set_setpoint(self, current: float) -> None:
        """Set the current setpoint, A."""
        ...

    async def get_feedback(self) -> bool:
        """True when the z-controller is on."""
        ...

    async def set_feedback(self, on: bool) -> None:
        """Switch the z-controller on or off."""
        ...

    async def withdraw(self) -> None:
        """Switch feedback off and retract the tip fully."""
        ...

    async def approach(self) -> None:
        """Auto-approach until tunnelling with feedback on (``Capability.APPROACH``)."""
        ...

    async def get_tip_position(self) -> TipPosition:
        """Tip position, m."""
        ...

    async def set_tip_position(self, x: float, y: float) -> None:
        """Move the tip laterally within the piezo range (``Capability.TIP_MOVE``)."""
        ...

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        """Acquire one frame, calling ``progress`` after every line (``Capability.SCAN``).

        Cancelling the task aborts the scan; the driver stops the instrument's scan before the
        cancellation propagates.
        """
        ...

    async def bias_pulse(self, voltage: float, width: float) -> None:
        """Apply a bias pulse of ``voltage`` for ``width`` s (``Capability.BIAS_PULSE``)."""
        ...

    async def dip(self, depth: float, bias: float) -> None:
        """Controlled dip of ``depth`` m into the surface at ``bias`` V (``Capability.DIP``)."""
        ...

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        """Bias spectroscopy at the current position (``Capability.SPECTRUM``)."""
        ...

    async def coarse_move(self, axis: str, steps: int) -> None:
        """Coarse positioner steps along ``axis`` (``Capability.COARSE_MOVE``)."""
        ...

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        """Velocity the piezo adds to cancel drift, m/s (``Capability.DRIFT_COMPENSATION``)."""
        ...


def check_scan_geometry(
    settings: ScanSettings, piezo_range: tuple[float, float, float], driver: str
) -> None:
    """The checks every driver makes before it scans, whatever the instrument: a finite area
    of positive size whose corners are inside the piezo range (x and y centred on zero), a
    positive line time, and an ``up`` or ``down`` direction.

    :param driver: the driver's name, first word of every message.
    :raises LimitError: naming the driver, the offending value and the limit.
    """
    area = settings.area
    w, h = area.size
    if not all(math.isfinite(v) for v in (w, h, *area.centre, area.angle)) or w <= 0 or h <= 0:
        raise LimitError(f"{driver}: frame {area} is not a valid area")
    hx, hy = piezo_range[0] / 2, piezo_range[1] / 2
    for cx, cy in area.corners():
        if abs(cx) > hx * (1 + 1e-9) or abs(cy) > hy * (1 + 1e-9):
            raise LimitError(
                f"{driver}: the frame reaches ({cx:.4g}, {cy:.4g}) m, outside the piezo "
                f"range +-{hx:.4g} x +-{hy:.4g} m"
            )
    if not (math.isfinite(settings.line_time) and settings.line_time > 0):
        raise LimitError(f"{driver}: line time {settings.line_time} s must be positive")
    if settings.direction not in ("up", "down"):
        raise LimitError(f"{driver}: direction {settings.direction!r} is not up or down")


class DriverBase:
    """Optional base for drivers: every optional operation raises ``NotSupportedError``.

    A subclass sets ``name``, implements the mandatory methods and overrides those optional ones
    it supports, listing them in ``supported``.
    """

    name: str = "driver"
    supported: ClassVar[frozenset[Capability]] = frozenset()

    def capabilities(self) -> frozenset[Capability]:
        return self.supported

    def _unsupported(self, operation: str) -> NotSupportedError:
        return NotSupportedError(
            f"driver {self.name!r} does not support {operation}",
            hint="choose a driver whose capabilities include it (see `probepilot plugins`)",
        )

    async def approach(self) -> None:
        raise self._unsupported("approach")

    async def set_tip_position(self, x: float, y: float) -> None:
        raise self._unsupported("tip moves")

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        raise self._unsupported("scanning")

    async def bias_pulse(self, voltage: float, width: float) -> None:
        raise self._unsupported("bias pulses")

    async def dip(self, depth: float, bias: float) -> None:
        raise self._unsupported("dips")

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        raise self._unsupported("spectroscopy")

    async def coarse_move(self, axis: str, steps: int) -> None:
        raise self._unsupported("coarse moves")

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        raise self._unsupported("drift compensation")


@runtime_checkable
class Analyzer(Protocol):
    """Looks at a frame (and recent history) and returns findings.

    ``analyze`` is synchronous CPU work; the session runs it in a thread. It must not raise for a
    bad frame (all NaN, constant, one line): it returns a finding with confidence 0 instead.
    """

    name: str

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        """Findings about ``frame``; ``history`` holds earlier frames, newest last."""
        ...


@runtime_checkable
class SpectrumAnalyzer(Protocol):
    """An analyzer that also judges spectra (e.g. the tip from the Shockley surface state).

    An analyzer in the ``analyzers`` list that has ``analyze_spectrum`` sees every point
    spectrum a run takes, right after the spectrum is persisted; its findings join those of the
    frame the spectrum was taken after, so the policy sees them. Like ``analyze`` it is
    synchronous CPU work, run in a thread, and returns a zero-confidence finding instead of
    raising for a spectrum it cannot judge. Its ``analyze`` (frames) may return ``[]``.
    """

    name: str

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        """Findings about a frame (``[]`` when it only judges spectra)."""
        ...

    def analyze_spectrum(self, spectrum: Spectrum) -> list[Finding]:
        """Findings about one point spectrum (its ``metadata`` says where it was taken:
        ``"target"`` is ``"terrace"`` or ``"adsorbate"`` for spectra a run picked)."""
        ...


@runtime_checkable
class Policy(Protocol):
    """Decides the next action from an observation."""

    name: str

    def decide(self, observation: Observation) -> Action:
        """The next action. It goes through the safety envelope before any driver sees it."""
        ...

    def feedback(self, outcome: Outcome) -> None:
        """What happened after the last action; learning policies update from it."""
        ...


@runtime_checkable
class Panel(Protocol):
    """A dashboard panel a plugin contributes.

    ``widget()`` returns a Textual widget (typed ``Any`` here so the core never imports textual);
    ``on_event`` receives every event of the run's stream, on the dashboard's event loop. The
    dashboard also calls ``on_scan``, ``on_snapshot``, ``on_view`` and ``on_attach`` when a
    panel has them (see ``probepilot_dashboard.panels``).
    """

    name: str
    title: str

    def widget(self) -> Any:
        """A new Textual widget for this panel."""
        ...

    def on_event(self, event: Any) -> None:
        """Update the panel from an event of the run."""
        ...


@runtime_checkable
class Frontend(Protocol):
    """What ``probepilot run`` shows a person while a run goes on (the terminal dashboard).

    A frontend talks to the run only through a :class:`~probepilot.link.RunLink` (its event
    stream and command interface), so the same frontend can watch a run on another machine.
    """

    name: str

    def unavailable(self) -> str | None:
        """Why it cannot show here (``"stdout is not a terminal"``, a missing toolkit), or None.
        ``probepilot run`` then runs headless and prints this reason."""
        ...

    def show(
        self,
        link: RunLink,
        *,
        config: Config,
        manager: PluginManager,
        main: Callable[[], Awaitable[str]] | None = None,
    ) -> str | None:
        """Show the run behind ``link`` until the person closes the frontend (blocking).

        :param link: the run's event stream and commands.
        :param config: the effective configuration (the frontend's own options).
        :param manager: the local plugin manager (panels and other registries).
        :param main: when the run is in this process: the run itself. The frontend hosts it on
            an event loop of its own, never making it wait for the screen, and returns its
            outcome once it has ended. Without it the frontend only watches and returns None.
        """
        ...


# --------------------------------------------------------------------------------------------
# Auxiliary instruments: lock-in amplifiers, coarse positioners, current preamplifiers.


@runtime_checkable
class Instrument(Protocol):
    """An auxiliary instrument beside the STM controller (``instruments = [...]`` in config).

    Like a driver it is async, SI throughout, and raises the driver errors of
    :mod:`probepilot.errors`: :class:`~probepilot.errors.LimitError` for a value outside the
    instrument's ranges (before anything is sent), :class:`~probepilot.errors.InstrumentError`
    for an error the instrument reports, :class:`~probepilot.errors.DriverTimeoutError`,
    :class:`~probepilot.errors.DriverConnectionError`, and
    :class:`~probepilot.errors.ProtocolError` for a reply that cannot be parsed. What an instrument
    is for follows from the further protocols it implements (:class:`LockIn`,
    :class:`Positioner`, :class:`Preamplifier`).
    """

    name: str

    async def connect(self) -> None:
        """Open the connection and check that the instrument is the one expected; idempotent."""
        ...

    async def close(self) -> None:
        """Close the connection; idempotent, never raises for a closed instrument."""
        ...

    async def identify(self) -> str:
        """The instrument's own identification (``*IDN?``, a version string)."""
        ...


@runtime_checkable
class LockIn(Instrument, Protocol):
    """A lock-in amplifier (SR830 class) measuring dI/dV: its sine output modulates the bias, its
    input is the current preamplifier's output.

    Setters take the value wanted and return the value set: instruments with discrete ranges
    (sensitivity, time constant) choose the nearest range that is not smaller.
    """

    async def get_sensitivity(self) -> float:
        """Full-scale input, V rms (A rms for a current input)."""
        ...

    async def set_sensitivity(self, full_scale: float) -> float:
        """Choose the smallest range with full scale >= ``full_scale``; returns it."""
        ...

    async def get_time_constant(self) -> float:
        """Output filter time constant, s."""
        ...

    async def set_time_constant(self, seconds: float) -> float:
        """Choose the shortest time constant >= ``seconds``; returns it."""
        ...

    async def get_reference(self) -> tuple[float, float]:
        """(frequency Hz, sine output amplitude V rms) of the internal reference."""
        ...

    async def set_reference(self, frequency: float, amplitude: float) -> None:
        """Internal reference frequency (Hz) and sine amplitude (V rms): the bias modulation."""
        ...

    async def read(self) -> LockInReading:
        """X, Y, R and theta taken at the same instant, and whether anything overloaded."""
        ...

    async def auto_gain(self) -> float:
        """Let the instrument choose its sensitivity for the present signal; returns it."""
        ...


@runtime_checkable
class Positioner(Instrument, Protocol):
    """A coarse positioner controller (stick-slip piezo steppers), used for coarse moves instead
    of the STM controller's own when a run's instruments include one."""

    def axes(self) -> tuple[str, ...]:
        """The directions it can step, as in :class:`~probepilot.model.CoarseStep`
        (``"x+"``, ``"x-"``, ... ``"z-"``)."""
        ...

    async def step(self, axis: str, steps: int) -> None:
        """``steps`` steps along ``axis`` (``"x+"`` ...); returns when they are done."""
        ...

    async def stop(self) -> None:
        """Stop every axis now."""
        ...


@runtime_checkable
class Preamplifier(Instrument, Protocol):
    """A current preamplifier with a remotely set gain (V/A)."""

    async def get_gain(self) -> float:
        """Transimpedance gain, V/A."""
        ...

    async def set_gain(self, gain: float) -> float:
        """Choose the gain range closest to ``gain`` (V/A); returns it."""
        ...


@runtime_checkable
class FileFormat(Protocol):
    """Reads (and optionally writes) one kind of data file.

    ``suffixes`` are lower-case file suffixes including the dot (``(".sxm",)``). ``read`` returns
    a :class:`~probepilot.model.Frame` or :class:`~probepilot.model.Spectrum` (or a list of them
    for files that hold several) and raises :class:`~probepilot.errors.FormatError` for a file
    that is not valid.
    """

    name: str
    suffixes: tuple[str, ...]

    def read(self, path: Path) -> Any:
        """The data in ``path``."""
        ...


@runtime_checkable
class RunInfo(Protocol):
    """What lifecycle hooks are told about a run."""

    run_id: str
    folder: Path
    config: Config
