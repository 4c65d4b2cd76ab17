"""Simulated twins of the serial instruments, served on a pseudo-terminal.

:class:`Anc300Simulator` and :class:`Sr570Simulator` implement the instruments' ASCII command
sets (what they answer, how they fail); :class:`PtyDevice` serves one on a POSIX pseudo-terminal
from a thread, so the drivers talk to it through pyserial exactly as to the real device on
``/dev/ttyUSB0`` (``port = "sim"`` in config, or ``PtyDevice(...).port`` in tests).

Faults for tests: :meth:`PtyDevice.garble` (the next replies come back as noise),
:meth:`PtyDevice.mute` (the next commands get no reply: timeouts) and :meth:`PtyDevice.hangup`
(the line goes dead: a disconnect).

The ANC300 command set (attocube ANC300 manual, "ASCII commands"): lines end in CR LF; every
reply ends with a line ``OK`` or, after a message line, ``ERROR``. ``echo off`` stops the echo of
commands; ``ver`` gives the version; per axis ``N`` (module slot 1-7): ``getm N`` /
``setm N gnd|stp|cap|...`` (mode: stepping needs ``stp``), ``getv N`` / ``setv N V`` (step
amplitude, 0-150 V: ``voltage = 30.000000 V``), ``getf N`` / ``setf N F`` (step frequency,
1-10000 Hz: ``frequency = 1000 Hz``), ``stepu N [C]`` / ``stepd N [C]`` (C steps up/down,
returns at once), ``stepw N`` (waits until the axis stops), ``stop N``, ``getc N``
(``capacitance = 1.234 nF``).

The SR570 is listen-only (it never answers): ``SENS n`` (sensitivity 0-27: 1 pA/V to 1 mA/V
in 1-2-5 steps), ``GNMD n``, ``IOON n``, ``FLTT n``, ``*RST`` ... lines end in CR or LF.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ANC300_VERSION = "attocube ANC300 controller version 1.1.0-1304 2013-10-17 08:16"
ANC300_MODES = ("gnd", "stp", "cap", "offs", "stp+", "stp-", "inp")


@dataclass
class Anc300Axis:
    """One positioner module of the simulated ANC300."""

    mode: str = "gnd"
    voltage: float = 0.0
    frequency: float = 100.0
    capacitance: float = 1.234e-9
    position: int = 0  # net steps taken (up minus down)
    busy_until: float = 0.0  # monotonic time when the current move ends


@dataclass
class Anc300Simulator:
    """The ANC300's command interpreter: ``handle(line)`` returns the reply bytes.

    ``axes`` holds the modules present (slots 1-3 by default). ``time_scale`` shortens moves
    (0: steps take no time). ``log`` records every command received.
    """

    axes: dict[int, Anc300Axis] = field(
        default_factory=lambda: {n: Anc300Axis() for n in (1, 2, 3)}
    )
    time_scale: float = 1.0
    echo: bool = True
    log: list[str] = field(default_factory=list)

    def handle(self, line: str) -> bytes:
        self.log.append(line)
        body = self._reply(line.strip())
        text = (line + "\r\n" if self.echo else "") + body
        if line.strip() == "echo off":
            text = line + "\r\n" + body  # the command that turns echo off is still echoed
        return text.encode("ascii")

    @staticmethod
    def _ok(*lines: str) -> str:
        return "".join(f"{line}\r\n" for line in lines) + "OK\r\n"

    @staticmethod
    def _error(message: str) -> str:
        return f"{message}\r\nERROR\r\n"

    def _reply(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        cmd, args = words[0], words[1:]
        if cmd == "echo" and args in (["on"], ["off"]):
            self.echo = args == ["on"]
            return self._ok()
        if cmd == "ver" and not args:
            return self._ok(ANC300_VERSION)
        if cmd == "getcser":
            return self._ok("ANC300B-C-1403-3000123")
        handler = _AXIS_COMMANDS.get(cmd)
        if handler is None:
            return self._error(f"Unknown command: {cmd}")
        if not args or not args[0].isdigit():
            return self._error("Missing or invalid axis argument")
        axis = self.axes.get(int(args[0]))
        if axis is None:
            return self._error("Wrong axis type")
        return handler(self, axis, args[1:])

    # -- per-axis commands -----------------------------------------------------------------------

    def _getm(self, axis: Anc300Axis, args: list[str]) -> str:
        return self._ok(f"mode = {axis.mode}")

    def _setm(self, axis: Anc300Axis, args: list[str]) -> str:
        if len(args) != 1 or args[0] not in ANC300_MODES:
            return self._error("Wrong mode")
        axis.mode = args[0]
        return self._ok()

    def _getv(self, axis: Anc300Axis, args: list[str]) -> str:
        return self._ok(f"voltage = {axis.voltage:.6f} V")

    def _setv(self, axis: Anc300Axis, args: list[str]) -> str:
        value = _number(args)
        if value is None or not 0 <= value <= 150:
            return self._error("Parameter out of range")
        axis.voltage = value
        return self._ok()

    def _getf(self, axis: Anc300Axis, args: list[str]) -> str:
        return self._ok(f"frequency = {axis.frequency:.0f} Hz")

    def _setf(self, axis: Anc300Axis, args: list[str]) -> str:
        value = _number(args)
        if value is None or not 1 <= value <= 10000:
            return self._error("Parameter out of range")
        axis.frequency = value
        return self._ok()

    def _getc(self, axis: Anc300Axis, args: list[str]) -> str:
        return self._ok(f"capacitance = {axis.capacitance * 1e9:.3f} nF")

    def _step(self, axis: Anc300Axis, args: list[str], sign: int) -> str:
        if axis.mode not in ("stp", "stp+", "stp-"):
            return self._error("Axis in wrong mode")
        if axis.voltage <= 0:
            return self._error("Axis not moving: step voltage is 0 V")
        if args and not args[0].isdigit():
            return self._error("Parameter out of range")
        count = int(args[0]) if args else 1
        if not 1 <= count <= 65535:
            return self._error("Parameter out of range")
        axis.position += sign * count
        axis.busy_until = time.monotonic() + self.time_scale * count / axis.frequency
        return self._ok()

    def _stepu(self, axis: Anc300Axis, args: list[str]) -> str:
        return self._step(axis, args, +1)

    def _stepd(self, axis: Anc300Axis, args: list[str]) -> str:
        return self._step(axis, args, -1)

    def _stepw(self, axis: Anc300Axis, args: list[str]) -> str:
        wait = axis.busy_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return self._ok()

    def _stop(self, axis: Anc300Axis, args: list[str]) -> str:
        axis.busy_until = 0.0
        return self._ok()


_AXIS_COMMANDS: dict[str, Callable[[Anc300Simulator, Anc300Axis, list[str]], str]] = {
    "getm": Anc300Simulator._getm,
    "setm": Anc300Simulator._setm,
    "getv": Anc300Simulator._getv,
    "setv": Anc300Simulator._setv,
    "getf": Anc300Simulator._getf,
    "setf": Anc300Simulator._setf,
    "getc": Anc300Simulator._getc,
    "stepu": Anc300Simulator._stepu,
    "stepd": Anc300Simulator._stepd,
    "stepw": Anc300Simulator._stepw,
    "stop": Anc300Simulator._stop,
}


def _number(args: list[str]) -> float | None:
    if len(args) != 1:
        return None
    try:
        return float(args[0])
    except ValueError:
        return None


@dataclass
class Sr570Simulator:
    """The SR570's listener: it records the settings it is sent and never answers. Commands
    it does not understand are counted in ``errors`` (the real one lights its ERR LED)."""

    sensitivity: int = 9  # index into the 1-2-5 table from 1 pA/V: 9 is 1 nA/V (1e9 V/A)
    settings: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    log: list[str] = field(default_factory=list)

    def handle(self, line: str) -> bytes:
        self.log.append(line)
        match = re.fullmatch(r"\s*([A-Z*]{3,4})\s*(-?\d+)?\s*", line)
        if match is None:
            self.errors += 1
            return b""
        cmd, arg = match.group(1), match.group(2)
        if cmd == "*RST":
            self.sensitivity, self.settings = 9, {}
        elif cmd == "SENS" and arg is not None and 0 <= int(arg) <= 27:
            self.sensitivity = int(arg)
        elif cmd in ("GNMD", "IOON", "FLTT", "LFRQ", "HFRQ", "INVT", "BSON", "SUCM") and arg:
            self.settings[cmd] = int(arg)
        else:
            self.errors += 1
        return b""


class PtyDevice:
    """Serves a simulator on a pseudo-terminal from a thread; ``port`` is the path a driver
    opens (``/dev/pts/N``). POSIX only. Use as a context manager or call :meth:`close`.

    :param simulator: answers each command line (CR or LF ends one) with its reply bytes.
    :param seed: for the noise :meth:`garble` sends.
    """

    def __init__(self, simulator: Anc300Simulator | Sr570Simulator, *, seed: int = 0) -> None:
        import tty

        self.simulator = simulator
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._garble = 0
        self._mute = 0
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="pty-device", daemon=True)
        self._thread.start()

    # -- faults ----------------------------------------------------------------------------------

    def garble(self, replies: int = 1) -> None:
        """The next ``replies`` replies arrive as random bytes (a wrong baud rate, a noisy line)."""
        with self._lock:
            self._garble += replies

    def mute(self, commands: int = 1) -> None:
        """The next ``commands`` commands get no reply at all."""
        with self._lock:
            self._mute += commands

    def hangup(self) -> None:
        """The line goes dead: the device closes its end (reads on the port fail)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def close(self) -> None:
        if self._master >= 0:
            self.hangup()

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.02)
                if not ready:
                    continue
                chunk = os.read(self._master, 4096)
            except OSError:
                return  # the port side went away, or we were closed
            pending += chunk
            while True:
                cut = min(
                    (i for i in (pending.find(b"\r"), pending.find(b"\n")) if i >= 0), default=-1
                )
                if cut < 0:
                    break
                line, pending = pending[:cut], pending[cut + 1 :]
                if not line.strip():
                    continue
                self._answer(line.decode("ascii", "replace"))

    def _answer(self, line: str) -> None:
        reply = self.simulator.handle(line)
        with self._lock:
            if self._mute:
                self._mute -= 1
                return
            if self._garble and reply:
                self._garble -= 1
                reply = bytes(self._random.randrange(128, 256) for _ in range(len(reply)))
                reply += b"\r\n"
        if reply:
            with contextlib.suppress(OSError):
                os.write(self._master, reply)
