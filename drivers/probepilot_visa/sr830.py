"""The SRS SR830 DSP lock-in amplifier (and its SR810/SR850 kin) over VISA.

Commands (SR830 manual, chapter 5), all ASCII, one per message:

=================  ============================================================================
``*IDN?``          identification, checked on connect (it must name an SR8x0)
``OUTX i``         where replies go: 0 RS-232, 1 GPIB (sent on connect)
``FMOD i``         reference source: 1 internal (set with the reference)
``FREQ f``         reference frequency, 0.001-102000 Hz
``SLVL a``         sine output amplitude, 0.004-5.000 V rms
``PHAS p``         reference phase, -360-729.99 deg
``ISRC i``         input: 0 A, 1 A-B (voltage), 2 I (1 MOhm), 3 I (100 MOhm) (current)
``SENS i``         sensitivity 0 (2 nV / fA) to 26 (1 V / uA) in 1-2-5 steps
``OFLT i``         time constant 0 (10 us) to 19 (30 ks) in 1-3 steps
``AGAN``           auto gain; bit 1 of the serial poll status (``*STB?``) is set again when done
``SNAP? 1,2,3,4``  X, Y, R (V or A) and theta (deg), sampled at the same instant
``LIAS?``          lock-in status, read and cleared: bit 0 input/reserve overload, 1 filter
                   overload, 2 output overload, 3 reference unlock
``*ESR?``          standard event status, read and cleared: bit 4 execution error (a parameter
                   out of range), bit 5 command error (unknown command or bad syntax), bit 2
                   query error, bit 0 input queue overflow
=================  ============================================================================

The SR830 never answers a command with an error message: it sets bits in ``*ESR?``. So after
every setting this driver reads ``*ESR?`` and raises :class:`~probepilot.errors.InstrumentError`
naming the bits, and after a query that timed out it reads it to tell "unknown command" from
"no answer". Values are checked against the instrument's ranges before anything is sent
(:class:`~probepilot.errors.LimitError`). VISA failures become
:class:`~probepilot.errors.DriverTimeoutError` (no reply in time) or
:class:`~probepilot.errors.DriverConnectionError`; a reply that is not what the command returns
is a :class:`~probepilot.errors.ProtocolError`.

pyvisa is blocking: every exchange runs in a worker thread (``asyncio.to_thread``), one at a time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    LimitError,
    NotConnectedError,
    ProtocolError,
)
from probepilot.model import LockInReading
from probepilot_visa.options import Sr830Options

T = TypeVar("T")

#: The pyvisa-sim twin shipped with this package (``backend = "@sim"``).
SIM_YAML = Path(__file__).with_name("sr830.yaml")

#: Full-scale sensitivity of each ``SENS`` index for a voltage input, V rms (x 1e-6: A rms for a
#: current input).
SENSITIVITIES: tuple[float, ...] = tuple(
    round(m * 10.0**e, 12 - e) for e in range(-9, 0) for m in (2.0, 5.0, 10.0)
)
#: Time constant of each ``OFLT`` index, s.
TIME_CONSTANTS: tuple[float, ...] = tuple(
    round(m * 10.0**e, 12 - e) for e in range(-5, 5) for m in (1.0, 3.0)
)
FREQUENCY_RANGE = (0.001, 102_000.0)
AMPLITUDE_RANGE = (0.004, 5.0)
PHASE_RANGE = (-360.0, 729.99)

ESR_BITS = {
    0: "input queue overflow",
    2: "query error (output queue overflow)",
    4: "execution error (a parameter was out of range)",
    5: "command error (unknown command or bad syntax)",
}
LIAS_OVERLOAD = {0: "input or reserve overload", 1: "filter overload", 2: "output overload"}
LIAS_UNLOCK = 3
#: Serial poll status bit set while no command is executing (cleared during an auto-gain).
STB_IDLE = 1
_REL = 1e-9  # relative tolerance when matching a value to a range table


def _bits(value: int, names: dict[int, str]) -> list[str]:
    return [name for bit, name in names.items() if value >> bit & 1]


def index_at_least(table: tuple[float, ...], value: float, what: str, unit: str) -> int:
    """The first index of ``table`` (ascending) whose entry is >= ``value``.

    :raises LimitError: ``value`` is not finite and positive, or above the largest entry.
    """
    if not (math.isfinite(value) and value > 0):
        raise LimitError(f"sr830: {what} {value!r} {unit} must be a positive number")
    i = bisect.bisect_left(table, value * (1 - _REL))
    if i >= len(table):
        raise LimitError(
            f"sr830: {what} {value:g} {unit} is above the largest, {table[-1]:g} {unit}",
            hint=f"the SR830's range is {table[0]:g} to {table[-1]:g} {unit}",
        )
    return i


def _check_range(value: float, bounds: tuple[float, float], what: str, unit: str) -> None:
    lo, hi = bounds
    if not (math.isfinite(value) and lo <= value <= hi):
        raise LimitError(
            f"sr830: {what} {value!r} {unit} is outside {lo:g} to {hi:g} {unit}",
            hint="that is the SR830's range",
        )


class Sr830:
    """An SR830-class lock-in amplifier (``instruments = ["sr830"]``): a
    :class:`~probepilot.contracts.LockIn`.

    :param options: the validated ``[instruments.sr830]`` table.
    :param resource_manager: a pyvisa ``ResourceManager`` to use (tests); default: one for
        ``options.backend``.
    """

    name = "sr830"

    def __init__(
        self, options: Sr830Options | None = None, *, resource_manager: Any | None = None
    ) -> None:
        self.options = options or Sr830Options()
        self._rm = resource_manager
        self._inst: Any | None = None
        self._lock = threading.Lock()
        self._idn = ""
        self._current_input = False

    # -- connection ----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"sr830 at {self.options.resource}"

    def _backend(self) -> str:
        backend = self.options.backend.strip()
        return f"{SIM_YAML}@sim" if backend == "@sim" else backend

    async def connect(self) -> None:
        if self._inst is None:
            await asyncio.to_thread(self._open)

    def _open(self) -> None:
        import pyvisa

        opts = self.options
        try:
            rm = self._rm or pyvisa.ResourceManager(self._backend())
            resource = opts.resource
            serial = resource.upper().startswith("ASRL")
            term = "\r" if serial else "\n"
            inst = rm.open_resource(
                resource,
                read_termination=term,
                write_termination=term,
                timeout=round(opts.timeout * 1000),
            )
        # pyvisa raises VisaIOError for VISA failures, ValueError/OSError for a missing or
        # broken VISA library or a malformed resource name, LookupError for unknown backends.
        except (pyvisa.errors.Error, ValueError, OSError, LookupError) as exc:
            raise DriverConnectionError(
                f"{self.where}: cannot open it: {exc}",
                hint="check the resource name and the VISA backend ([instruments.sr830] "
                "resource, backend; backend = '@sim' for the simulated one)",
            ) from None
        self._rm, self._inst = rm, inst
        try:
            idn = self._exchange("*IDN?", query=True)
            if ",SR8" not in idn.upper():
                raise DriverConnectionError(
                    f"{self.where}: answers *IDN? with {idn!r}, not an SR8x0 lock-in",
                    hint="check the resource name (GPIB address)",
                )
            interface = opts.interface
            if interface == "auto":
                interface = "rs232" if serial else "gpib"
            self._exchange(f"OUTX {0 if interface == 'rs232' else 1}")
            self._idn = idn
            self._current_input = self._integer("ISRC?") >= 2
        except BaseException:
            self._shut()
            raise

    def _shut(self) -> None:
        import pyvisa

        inst, self._inst = self._inst, None
        if inst is not None:
            # Closing a link that is already dead: there is nothing left to do.
            with contextlib.suppress(pyvisa.errors.Error, OSError):
                inst.close()

    async def close(self) -> None:
        await asyncio.to_thread(self._locked, self._shut)

    async def identify(self) -> str:
        self._ready()
        return self._idn

    def _ready(self) -> Any:
        if self._inst is None:
            raise NotConnectedError(f"{self.where}: not connected", hint="call connect() first")
        return self._inst

    # -- the wire ------------------------------------------------------------------------------

    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    async def _call(self, work: Callable[[], T]) -> T:
        self._ready()
        return await asyncio.to_thread(self._locked, work)

    def _exchange(self, command: str, *, query: bool = False) -> str:
        """Send ``command``; a query returns its reply, a setting is checked with ``*ESR?``."""
        import pyvisa

        inst = self._ready()
        try:
            if query:
                return str(inst.query(command)).strip()
            inst.write(command)
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                errors = self._events(command) if query else []
                if errors:
                    raise InstrumentError(f"{self.where}: {command}", "; ".join(errors)) from None
                raise DriverTimeoutError(
                    f"{self.where}: no reply to {command!r} within {self.options.timeout:g} s",
                    hint="check that it is on and connected; raise [instruments.sr830] timeout",
                ) from None
            raise DriverConnectionError(f"{self.where}: {command!r} failed: {exc}") from None
        except (pyvisa.errors.InvalidSession, OSError) as exc:
            raise DriverConnectionError(f"{self.where}: {command!r} failed: {exc}") from None
        errors = self._events(command)
        if errors:
            raise InstrumentError(f"{self.where}: {command}", "; ".join(errors))
        return ""

    def _events(self, after: str) -> list[str]:
        """Read (and so clear) ``*ESR?``; the error bits that are set, by name."""
        import pyvisa

        try:
            reply = str(self._ready().query("*ESR?")).strip()
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise DriverTimeoutError(
                    f"{self.where}: no reply to *ESR? (after {after!r}) within "
                    f"{self.options.timeout:g} s"
                ) from None
            raise DriverConnectionError(f"{self.where}: *ESR? failed: {exc}") from None
        try:
            value = int(reply)
        except ValueError:
            raise ProtocolError(f"{self.where}: *ESR? answered {reply!r}, not a number") from None
        return _bits(value, ESR_BITS)

    def _number(self, command: str) -> float:
        reply = self._exchange(command, query=True)
        try:
            return float(reply)
        except ValueError:
            raise ProtocolError(
                f"{self.where}: {command} answered {reply!r}, not a number"
            ) from None

    def _integer(self, command: str) -> int:
        value = self._number(command)
        if value != int(value):
            raise ProtocolError(f"{self.where}: {command} answered {value!r}, not an integer")
        return int(value)

    def _indexed(self, command: str, table: tuple[float, ...]) -> float:
        index = self._integer(command)
        if not 0 <= index < len(table):
            raise ProtocolError(f"{self.where}: {command} answered {index}, not 0-{len(table) - 1}")
        return table[index]

    # -- raw access ----------------------------------------------------------------------------

    async def write(self, command: str) -> None:
        """Send a command as it is (no range check) and raise what ``*ESR?`` reports."""
        await self._call(lambda: self._exchange(command))

    async def query(self, command: str) -> str:
        """Send a query as it is and return the reply."""
        return await self._call(lambda: self._exchange(command, query=True))

    # -- the LockIn contract -------------------------------------------------------------------

    @property
    def _scale(self) -> float:
        return 1e-6 if self._current_input else 1.0

    async def get_sensitivity(self) -> float:
        scale = self._scale
        return await self._call(lambda: self._indexed("SENS?", SENSITIVITIES) * scale)

    async def set_sensitivity(self, full_scale: float) -> float:
        scale = self._scale
        unit = "A" if self._current_input else "V"
        index = index_at_least(SENSITIVITIES, full_scale / scale, "sensitivity", unit)
        await self._call(lambda: self._exchange(f"SENS {index}"))
        return SENSITIVITIES[index] * scale

    async def get_time_constant(self) -> float:
        return await self._call(lambda: self._indexed("OFLT?", TIME_CONSTANTS))

    async def set_time_constant(self, seconds: float) -> float:
        index = index_at_least(TIME_CONSTANTS, seconds, "time constant", "s")
        await self._call(lambda: self._exchange(f"OFLT {index}"))
        return TIME_CONSTANTS[index]

    async def get_reference(self) -> tuple[float, float]:
        return await self._call(lambda: (self._number("FREQ?"), self._number("SLVL?")))

    async def set_reference(self, frequency: float, amplitude: float) -> None:
        _check_range(frequency, FREQUENCY_RANGE, "reference frequency", "Hz")
        _check_range(amplitude, AMPLITUDE_RANGE, "sine amplitude", "V")

        def work() -> None:
            self._exchange("FMOD 1")
            self._exchange(f"FREQ {frequency:.4f}")
            self._exchange(f"SLVL {amplitude:.3f}")

        await self._call(work)

    async def get_phase(self) -> float:
        """Reference phase, rad."""
        return await self._call(lambda: math.radians(self._number("PHAS?")))

    async def set_phase(self, radians: float) -> None:
        """Reference phase, rad (-360 to 729.99 deg)."""
        degrees = math.degrees(radians)
        _check_range(degrees, PHASE_RANGE, "phase", "deg")
        await self._call(lambda: self._exchange(f"PHAS {degrees:.2f}"))

    async def read(self) -> LockInReading:
        def work() -> LockInReading:
            reply = self._exchange("SNAP? 1,2,3,4", query=True)
            parts = reply.split(",")
            try:
                x, y, r, theta = (float(p) for p in parts)
            except ValueError:
                raise ProtocolError(
                    f"{self.where}: SNAP? 1,2,3,4 answered {reply!r}, not four numbers"
                ) from None
            status = self._integer("LIAS?")
            if status >> LIAS_UNLOCK & 1:
                raise InstrumentError(
                    f"{self.where}: SNAP? 1,2,3,4",
                    "reference unlock (LIAS bit 3)",
                    hint="check the reference input, or use the internal reference (FMOD 1)",
                )
            overloads = _bits(status, LIAS_OVERLOAD)
            return LockInReading(x, y, r, math.radians(theta), overload=bool(overloads))

        return await self._call(work)

    async def auto_gain(self) -> float:
        timeout = self.options.auto_gain_timeout

        def work() -> float:
            self._exchange("AGAN")
            deadline = time.monotonic() + timeout
            while not self._integer("*STB?") >> STB_IDLE & 1:
                if time.monotonic() > deadline:
                    raise DriverTimeoutError(
                        f"{self.where}: auto gain still running after {timeout:g} s",
                        hint="raise [instruments.sr830] auto_gain_timeout",
                    )
                time.sleep(0.05)
            return self._indexed("SENS?", SENSITIVITIES) * self._scale

        return await self._call(work)

    async def status(self) -> list[str]:
        """What ``LIAS?`` reports now (overloads, unlock), by name; reading clears it."""
        status = await self._call(lambda: self._integer("LIAS?"))
        return _bits(status, {**LIAS_OVERLOAD, LIAS_UNLOCK: "reference unlock"})
