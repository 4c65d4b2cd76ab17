"""A line-based ASCII link over pyserial, with every failure turned into a typed error.

===============================  ==================================================================
what happens                     what is raised
===============================  ==================================================================
the port cannot be opened        :class:`~probepilot.errors.DriverConnectionError`
no complete reply in time        :class:`~probepilot.errors.DriverTimeoutError`
the line goes away (unplugged,   :class:`~probepilot.errors.DriverConnectionError`; the link
the peer hangs up)               closes itself, ``open()`` again reconnects
bytes that are not printable     :class:`~probepilot.errors.ProtocolError` ("garbled"); the input
ASCII, an endless reply          buffer is flushed before the next command
the device answers ``ERROR``     :class:`~probepilot.errors.InstrumentError` with its message
===============================  ==================================================================

Blocking: the instruments call it from a worker thread, one exchange at a time.
"""

from __future__ import annotations

import time
from typing import Any

from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    NotConnectedError,
    ProtocolError,
)

#: Longest reply line accepted, and most lines in one reply, before the reply is called garbled.
MAX_LINE = 512
MAX_LINES = 64
#: How long one read waits at most before the deadline is checked again.
POLL = 0.02


def _line_errors() -> tuple[type[BaseException], ...]:
    """What pyserial lets through when the line dies: its own exception, OS errors, and on
    POSIX ``termios.error`` (not an OSError) from flushing a dead terminal."""
    import serial

    errors: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
    try:
        import termios
    except ImportError:  # Windows
        return errors
    return (*errors, termios.error)


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" or c == "\t" for c in text)


class SerialLink:
    """One serial line to an instrument that takes ``command\\r\\n`` lines.

    :param url: a port (``/dev/ttyUSB0``, ``COM3``) or a pyserial URL (``socket://host:port``).
    :param name: what error messages call the instrument (``"anc300 at /dev/ttyUSB0"``).
    :param timeout: seconds a whole reply (or a write) may take.
    :param stopbits: 1 or 2.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        baudrate: int,
        timeout: float,
        stopbits: int = 1,
        terminator: str = "\r\n",
    ) -> None:
        self.url = url
        self.name = name
        self.baudrate = baudrate
        self.timeout = timeout
        self.stopbits = stopbits
        self.terminator = terminator
        self._port: Any | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        import serial

        if self._port is not None:
            return
        try:
            self._port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                stopbits=serial.STOPBITS_TWO if self.stopbits == 2 else serial.STOPBITS_ONE,
                timeout=POLL,
                write_timeout=self.timeout,
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise DriverConnectionError(
                f"{self.name}: cannot open {self.url}: {exc}",
                hint="check the port name, that the device is plugged in and that no other "
                "program holds the port",
            ) from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except _line_errors():
                pass  # the line is gone already; nothing left to release

    def _ready(self) -> Any:
        if self._port is None:
            raise NotConnectedError(f"{self.name}: not connected", hint="call connect() first")
        return self._port

    def _lost(self, exc: BaseException) -> DriverConnectionError:
        self.close()
        return DriverConnectionError(
            f"{self.name}: the serial line to {self.url} was lost ({exc})",
            hint="check the cable and the device; the next connect() reopens it",
        )

    # -- writing -----------------------------------------------------------------------------------

    def send(self, command: str) -> None:
        """Write one command line (ASCII only)."""
        import serial

        if not _printable(command):
            raise ValueError(f"command {command!r} is not printable ASCII")
        port = self._ready()
        try:
            port.write((command + self.terminator).encode("ascii"))
            port.flush()
        except serial.SerialTimeoutException:
            raise DriverTimeoutError(
                f"{self.name}: could not send {command!r} within {self.timeout:g} s",
                hint="the device is not reading (flow control, or switched off)",
            ) from None
        except _line_errors() as exc:
            raise self._lost(exc) from None

    # -- reading -----------------------------------------------------------------------------------

    def flush_input(self) -> None:
        """Throw away whatever arrived unasked (a late reply, garbage)."""
        port = self._ready()
        try:
            port.reset_input_buffer()
        except _line_errors() as exc:
            raise self._lost(exc) from None

    def read_line(self, deadline: float, command: str) -> str:
        """One reply line, without its terminator, by ``deadline`` (``time.monotonic``)."""
        port = self._ready()
        buffer = bytearray()
        while True:
            try:
                chunk = port.read_until(b"\n", MAX_LINE + 2 - len(buffer))
            except _line_errors() as exc:
                raise self._lost(exc) from None
            buffer += chunk
            if buffer.endswith(b"\n"):
                break
            if len(buffer) > MAX_LINE:
                raise ProtocolError(
                    f"{self.name}: garbled reply to {command!r}: a line longer than "
                    f"{MAX_LINE} bytes ({bytes(buffer[:40])!r}...)"
                )
            if time.monotonic() > deadline:
                got = f" (only {bytes(buffer)!r} arrived)" if buffer else ""
                raise DriverTimeoutError(
                    f"{self.name}: no complete reply to {command!r} within {self.timeout:g} s{got}",
                    hint="check the cable, the baud rate and that the device is on",
                )
        try:
            text = bytes(buffer).decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ProtocolError(
                f"{self.name}: garbled reply to {command!r}: {bytes(buffer)!r} is not ASCII",
                hint="check the baud rate; a noisy line or a wrong speed garbles replies",
            ) from None
        if not _printable(text):
            raise ProtocolError(
                f"{self.name}: garbled reply to {command!r}: {text!r} has control characters",
                hint="check the baud rate; a noisy line or a wrong speed garbles replies",
            )
        return text

    def transact(self, command: str, *, timeout: float | None = None) -> list[str]:
        """Send ``command`` and read its reply up to a line ``OK`` (returned: the lines before
        it) or ``ERROR`` (raised as :class:`InstrumentError` with the lines before it). An echo
        of the command is skipped."""
        self.flush_input()
        self.send(command)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: list[str] = []
        while len(lines) <= MAX_LINES:
            line = self.read_line(deadline, command).strip()
            if line == "OK":
                return lines
            if line == "ERROR":
                detail = " ".join(lines) or "ERROR (no message)"
                raise InstrumentError(f"{self.name}: {command}", detail)
            if line.endswith("ERROR") and line[:-5].strip():  # message and ERROR on one line
                raise InstrumentError(f"{self.name}: {command}", line[:-5].strip())
            if line and line != command:
                lines.append(line)
        raise ProtocolError(
            f"{self.name}: garbled reply to {command!r}: more than {MAX_LINES} lines without "
            "OK or ERROR"
        )
