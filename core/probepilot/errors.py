"""The one exception tree of probepilot.

Every error a user can cause or an instrument can report is a :class:`ProbepilotError`. Its
``str()`` is one line that says what happened, where (file, key, command, byte offset), and what to
do about it, so the CLI can print it as it is and exit with :attr:`ProbepilotError.exit_code`.
"""

from __future__ import annotations


class ProbepilotError(Exception):
    """Base of every error probepilot raises on purpose.

    ``message`` says what happened and where; ``hint`` (optional) says what to do. The CLI prints
    ``str(error)`` on one line and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text}; {' '.join(self.hint.split())}"
        return text


class ConfigError(ProbepilotError):
    """A configuration file or value is invalid.

    ``source`` is the file (or ``<defaults>``/``<command line>``), ``key`` the dotted key path,
    ``value`` the offending value and ``expected`` what would have been accepted.
    """

    exit_code = 2

    def __init__(
        self,
        problem: str,
        *,
        source: str = "<config>",
        key: str | None = None,
        value: object = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.expected = expected
        where = f"{source}: {key}" if key else source
        text = f"{where}: {problem}"
        if expected:
            text = f"{text}; expected {expected}"
        super().__init__(text, hint=hint)


class PluginError(ProbepilotError):
    """A plugin could not be loaded, is missing, has the wrong version, or clashes with another."""


class DriverError(ProbepilotError):
    """Something went wrong talking to an instrument."""


class DriverConnectionError(DriverError):
    """The connection to the instrument could not be made, or was lost."""


class DriverTimeoutError(DriverError):
    """The instrument did not answer within the timeout."""


class LimitError(DriverError):
    """A value is outside what the instrument (or the simulated one) can do."""


class NotSupportedError(DriverError):
    """The driver does not implement this operation (see ``Driver.capabilities``)."""


class InstrumentError(DriverError):
    """The instrument itself reported an error; its own message is kept intact in ``detail``."""

    def __init__(self, command: str, detail: str, *, hint: str | None = None) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"{command}: the instrument reported: {detail}", hint=hint)


class TipCrashError(InstrumentError):
    """The tip touched the surface uncontrolled; the instrument withdrew it. The session
    withdraws (again, to be sure) before anything else and treats the tip as blunt."""


class NotConnectedError(DriverError):
    """An operation was called before ``connect()`` or after ``close()``."""


class ProtocolError(ProbepilotError):
    """A message on a wire (Nanonis TCP, ZeroMQ) is malformed, truncated or of the wrong version."""


class FormatError(ProbepilotError):
    """A data file is not what it claims to be (wrong magic, truncated, corrupt header)."""


class JournalError(ProbepilotError):
    """A run's journal or run folder could not be written (disk full, permissions, closed)."""


class SafetyError(ProbepilotError):
    """An action was rejected by the safety envelope; ``reasons`` lists every violated limit."""

    def __init__(self, action: object, reasons: tuple[str, ...]) -> None:
        self.action = action
        self.reasons = reasons
        super().__init__(f"safety envelope rejected {action!r}: {'; '.join(reasons)}")


class RemoteError(ProbepilotError):
    """A remote peer (driver host, run) failed or reported an error."""
