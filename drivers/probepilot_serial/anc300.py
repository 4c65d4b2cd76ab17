"""The attocube ANC300 piezo stepper controller as a coarse positioner.

The ANC300 takes ASCII lines (RS-232/USB at 38400 baud, or Ethernet on port 7230 after a
password) and answers every one with some lines and then ``OK``, or a message and ``ERROR``
(the command set is summarised in :mod:`probepilot_serial.simulated`). On connect the driver
turns the echo off, reads the version, checks that the configured axes exist, and puts them in
step mode (``setm N stp``) with the configured amplitude and frequency. A move is ``stepu N C``
or ``stepd N C``; the driver waits ``C / frequency`` seconds and then ``stepw N``, which returns
when the axis has stopped; a move cancelled meanwhile stops the axis (``stop N``) at once.

Errors: values outside the controller's ranges are refused before anything is sent
(:class:`~probepilot.errors.LimitError`); what the controller answers with ``ERROR`` is an
:class:`~probepilot.errors.InstrumentError` carrying its message; timeouts, garbled replies and
a lost line are typed as in :mod:`probepilot_serial.link`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable
from typing import TypeVar

from probepilot.errors import LimitError, NotConnectedError, ProbepilotError, ProtocolError
from probepilot_serial.link import SerialLink
from probepilot_serial.options import Anc300Options
from probepilot_serial.simulated import Anc300Simulator, PtyDevice

T = TypeVar("T")

VOLTAGE_RANGE = (0.0, 150.0)
FREQUENCY_RANGE = (1.0, 10000.0)
_VALUE = re.compile(r"^\s*(\w+)\s*=\s*([-+0-9.eE]+|\w+)\s*(\w*)\s*$")


class Anc300:
    """An ANC300 controller (``instruments = ["anc300"]``): a
    :class:`~probepilot.contracts.Positioner`.

    :param options: the validated ``[instruments.anc300]`` table; ``port = "sim"`` serves a
        simulated ANC300 on a pseudo-terminal and connects to it.
    """

    name = "anc300"

    def __init__(self, options: Anc300Options | None = None) -> None:
        self.options = options or Anc300Options()
        self._device: PtyDevice | None = None
        self._link: SerialLink | None = None
        self._lock = threading.Lock()
        self._version = ""
        opts = self.options
        self._slots = {
            axis: slot
            for axis, slot in (("x", opts.axis_x), ("y", opts.axis_y), ("z", opts.axis_z))
            if slot
        }

    @property
    def where(self) -> str:
        return f"anc300 at {self.options.port}"

    def axes(self) -> tuple[str, ...]:
        return tuple(f"{axis}{sign}" for axis in self._slots for sign in "+-")

    # -- connection ----------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._link is not None and self._link.is_open:
            return
        await asyncio.to_thread(self._locked, self._open)

    def _open(self) -> None:
        opts = self.options
        port = opts.port
        if port == "sim":
            if self._device is None:
                self._device = PtyDevice(Anc300Simulator(time_scale=0.0))
            port = self._device.port
        link = SerialLink(port, name=self.where, baudrate=opts.baudrate, timeout=opts.timeout)
        link.open()
        self._link = link
        try:
            if opts.password:
                link.send(opts.password)
            link.transact("echo off")
            version = " ".join(link.transact("ver"))
            for slot in self._slots.values():
                self._mode(slot)  # raises InstrumentError for an axis with no stepper module
                link.transact(f"setm {slot} stp")
                if opts.voltage is not None:
                    link.transact(f"setv {slot} {opts.voltage:.3f}")
                if opts.frequency is not None:
                    link.transact(f"setf {slot} {opts.frequency:.0f}")
            self._version = version
        except BaseException:
            link.close()
            raise

    async def close(self) -> None:
        def work() -> None:
            if self._link is not None:
                if self._link.is_open:
                    # Ground the axes: an idle stepper should not sit at high voltage.
                    with contextlib.suppress(ProbepilotError):
                        for slot in self._slots.values():
                            self._link.transact(f"setm {slot} gnd")
                self._link.close()
            if self._device is not None:
                self._device.close()
                self._device = None

        await asyncio.to_thread(self._locked, work)

    async def identify(self) -> str:
        self._ready()
        return self._version

    def _ready(self) -> SerialLink:
        if self._link is None or not self._link.is_open:
            raise NotConnectedError(f"{self.where}: not connected", hint="call connect() first")
        return self._link

    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    async def _call(self, work: Callable[[], T]) -> T:
        self._ready()
        return await asyncio.to_thread(self._locked, work)

    # -- parsing -------------------------------------------------------------------------------

    def _value(self, command: str, key: str, unit: str = "") -> str:
        lines = self._ready().transact(command)
        for line in lines:
            match = _VALUE.match(line)
            if match and match.group(1) == key and match.group(3) == unit:
                return match.group(2)
        raise ProtocolError(
            f"{self.where}: {command} answered {lines!r}, expected '{key} = ...{unit}'"
        )

    def _float(self, command: str, key: str, unit: str) -> float:
        text = self._value(command, key, unit)
        try:
            return float(text)
        except ValueError:
            raise ProtocolError(f"{self.where}: {command}: {text!r} is not a number") from None

    def _mode(self, slot: int) -> str:
        return self._value(f"getm {slot}", "mode")

    def _slot(self, axis: str) -> int:
        if axis not in self._slots:
            raise LimitError(
                f"{self.where}: no axis {axis!r}; configured: {', '.join(self._slots) or 'none'}"
            )
        return self._slots[axis]

    # -- the Positioner contract ---------------------------------------------------------------

    async def step(self, axis: str, steps: int) -> None:
        if len(axis) != 2 or axis[1] not in "+-":
            raise LimitError(f"{self.where}: axis {axis!r} is not one of {', '.join(self.axes())}")
        slot = self._slot(axis[0])
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise LimitError(f"{self.where}: steps must be a positive integer, got {steps!r}")
        if steps > self.options.max_steps:
            raise LimitError(
                f"{self.where}: {steps} steps exceed max_steps {self.options.max_steps}"
            )
        up = (axis[1] == "+") != (axis[0] in self.options.invert)
        command = f"{'stepu' if up else 'stepd'} {slot} {steps}"

        def start() -> float:
            frequency = self._float(f"getf {slot}", "frequency", "Hz")
            self._ready().transact(command)
            return frequency

        frequency = await self._call(start)
        duration = steps / max(frequency, FREQUENCY_RANGE[0])
        try:
            # Wait here, where a cancellation can stop the axis at once; then let the
            # controller confirm the end of the move (stepw returns when the axis stops).
            await asyncio.sleep(duration)
            await self._call(lambda: self._ready().transact(f"stepw {slot}"))
        except asyncio.CancelledError:
            await asyncio.shield(self._call(lambda: self._ready().transact(f"stop {slot}")))
            raise

    async def stop(self) -> None:
        def work() -> None:
            for slot in self._slots.values():
                self._ready().transact(f"stop {slot}")

        await self._call(work)

    # -- settings ------------------------------------------------------------------------------

    async def get_mode(self, axis: str) -> str:
        """The controller mode of ``axis`` (``"x"``, ``"y"``, ``"z"``): ``stp``, ``gnd`` ..."""
        slot = self._slot(axis)
        return await self._call(lambda: self._mode(slot))

    async def get_voltage(self, axis: str) -> float:
        """Step amplitude of ``axis``, V."""
        slot = self._slot(axis)
        return await self._call(lambda: self._float(f"getv {slot}", "voltage", "V"))

    async def set_voltage(self, axis: str, volts: float) -> None:
        """Step amplitude of ``axis``, 0-150 V."""
        slot = self._slot(axis)
        _check(volts, VOLTAGE_RANGE, "step voltage", "V", self.where)
        await self._call(lambda: self._ready().transact(f"setv {slot} {volts:.3f}"))

    async def get_frequency(self, axis: str) -> float:
        """Step frequency of ``axis``, Hz."""
        slot = self._slot(axis)
        return await self._call(lambda: self._float(f"getf {slot}", "frequency", "Hz"))

    async def set_frequency(self, axis: str, hertz: float) -> None:
        """Step frequency of ``axis``, 1-10000 Hz."""
        slot = self._slot(axis)
        _check(hertz, FREQUENCY_RANGE, "step frequency", "Hz", self.where)
        await self._call(lambda: self._ready().transact(f"setf {slot} {hertz:.0f}"))

    async def command(self, line: str) -> list[str]:
        """Send any command line as it is; the reply lines before ``OK``."""
        return await self._call(lambda: self._ready().transact(line))


def _check(value: float, bounds: tuple[float, float], what: str, unit: str, where: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:  # False for NaN too
        raise LimitError(f"{where}: {what} {value!r} {unit} is outside {lo:g} to {hi:g} {unit}")
