"""The SRS SR570 low-noise current preamplifier: its gain over RS-232.

The SR570 is listen-only: it takes ``SENS n`` (and its other settings) at 9600 baud, 8 data bits,
no parity, 2 stop bits, and never answers, so nothing can be read back and a garbled or lost
command goes unnoticed by the driver (the instrument lights its ERR LED). The gain this driver
reports is therefore the one it last set; it sets ``[instruments.sr570] gain`` on connect so
that the two agree from the start. Sensitivities run from 1 pA/V (``SENS 0``, gain 1e12 V/A) to
1 mA/V (``SENS 27``, gain 1e3 V/A) in 1-2-5 steps.

Errors: a gain outside the range is a :class:`~probepilot.errors.LimitError`; a write that does
not complete in time (flow control, a dead adapter) a
:class:`~probepilot.errors.DriverTimeoutError`; a lost port a
:class:`~probepilot.errors.DriverConnectionError`.
"""

from __future__ import annotations

import asyncio
import math
import threading

from probepilot.errors import LimitError, NotConnectedError
from probepilot_serial.link import SerialLink
from probepilot_serial.options import Sr570Options
from probepilot_serial.simulated import PtyDevice, Sr570Simulator

#: Sensitivity of each ``SENS`` index, A/V (the gain is its inverse).
SENSITIVITIES: tuple[float, ...] = (
    *(round(m * 10.0**e, 14 - e) for e in range(-12, -3) for m in (1.0, 2.0, 5.0)),
    1e-3,
)


def sensitivity_index(gain: float) -> int:
    """The ``SENS`` index whose gain (1 / sensitivity) is closest to ``gain`` (V/A), on a log
    scale.

    :raises LimitError: ``gain`` is not finite or is outside 1e3-1e12 V/A by more than a step.
    """
    if not (math.isfinite(gain) and gain > 0):
        raise LimitError(f"sr570: gain {gain!r} V/A must be a positive number")
    target = math.log10(1.0 / gain)
    index = min(range(len(SENSITIVITIES)), key=lambda i: abs(math.log10(SENSITIVITIES[i]) - target))
    if abs(math.log10(SENSITIVITIES[index]) - target) > 0.2:
        raise LimitError(
            f"sr570: gain {gain:g} V/A is outside the SR570's 1e3-1e12 V/A",
            hint="sensitivities run from 1 pA/V to 1 mA/V",
        )
    return index


class Sr570:
    """An SR570 (``instruments = ["sr570"]``): a :class:`~probepilot.contracts.Preamplifier`.

    :param options: the validated ``[instruments.sr570]`` table; ``port = "sim"`` serves a
        simulated SR570 on a pseudo-terminal (:attr:`device` holds it).
    """

    name = "sr570"

    def __init__(self, options: Sr570Options | None = None) -> None:
        self.options = options or Sr570Options()
        self.device: PtyDevice | None = None
        self._link: SerialLink | None = None
        self._lock = threading.Lock()
        self._gain: float | None = None

    @property
    def where(self) -> str:
        return f"sr570 at {self.options.port}"

    async def connect(self) -> None:
        if self._link is not None and self._link.is_open:
            return
        await asyncio.to_thread(self._open)
        if self.options.gain is not None:
            await self.set_gain(self.options.gain)

    def _open(self) -> None:
        with self._lock:
            port = self.options.port
            if port == "sim":
                if self.device is None:
                    self.device = PtyDevice(Sr570Simulator())
                port = self.device.port
            link = SerialLink(
                port,
                name=self.where,
                baudrate=self.options.baudrate,
                timeout=self.options.timeout,
                stopbits=2,
            )
            link.open()
            self._link = link

    async def close(self) -> None:
        def work() -> None:
            with self._lock:
                if self._link is not None:
                    self._link.close()
                if self.device is not None:
                    self.device.close()
                    self.device = None

        await asyncio.to_thread(work)

    async def identify(self) -> str:
        self._ready()
        return "SRS SR570 (listen-only: no identification)"

    def _ready(self) -> SerialLink:
        if self._link is None or not self._link.is_open:
            raise NotConnectedError(f"{self.where}: not connected", hint="call connect() first")
        return self._link

    async def send(self, command: str) -> None:
        """Send a command line as it is (the SR570 answers nothing)."""
        link = self._ready()

        def work() -> None:
            with self._lock:
                link.send(command)

        await asyncio.to_thread(work)

    async def get_gain(self) -> float:
        """The gain last set, V/A (the SR570 cannot be asked).

        :raises NotConnectedError: before connect, or when no gain was set yet.
        """
        self._ready()
        if self._gain is None:
            raise NotConnectedError(
                f"{self.where}: the gain is unknown until it is set (the SR570 cannot be asked)",
                hint="set [instruments.sr570] gain",
            )
        return self._gain

    async def set_gain(self, gain: float) -> float:
        index = sensitivity_index(gain)
        await self.send(f"SENS {index}")
        self._gain = float(round(1.0 / SENSITIVITIES[index]))  # 1e3-1e12 V/A: whole numbers
        return self._gain
