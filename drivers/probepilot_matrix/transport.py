"""The transport boundary: what the MATRIX driver needs from MATRIX, and nothing more.

A transport gets and sets typed properties of MATRIX's experiment elements, calls their
functions, and delivers the events of observed entities (scan lines, spectra, "position
reached") to callbacks. Names are full MATRIX names, ``"<experiment>::<Element>.<Property>"``
(``"STM_AtomManipulation::XYScanner.Width"``), as the community clients pass them.

All methods block (the DLL's calls do) and are called by the driver from worker threads;
callbacks run on a thread of the transport's own, never on the caller's. Two transports exist:
:class:`~probepilot_matrix.dll.RemoteAccessTransport` (the real library, via ctypes) and
:class:`~probepilot_matrix.simulated.SimulatedMatrixTransport`. Both report failures through
:func:`error_for`, so the driver above them sees the same typed errors.

Return codes are those of MATRIX's remote-access API as the MATE/nOmicron clients define them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from probepilot.errors import (
    DriverConnectionError,
    DriverError,
    InstrumentError,
    NotSupportedError,
)


class ValueType(enum.IntEnum):
    """MATRIX value types (the ``vt_*`` codes of the remote-access API)."""

    INTEGER = 1
    DOUBLE = 2
    STRING = 3
    BOOLEAN = 4
    ENUM = 5
    PAIR = 6
    DOUBLE_ARRAY = 7


#: What a property or a function returns, in Python terms: ``int`` for INTEGER and ENUM,
#: ``float`` for DOUBLE, ``str``, ``bool``, ``(x, y)`` for PAIR, a float64 array for arrays.
Value: TypeAlias = int | float | str | bool | tuple[float, float] | npt.NDArray[np.float64]


class Code(enum.IntEnum):
    """Return codes of the remote-access API."""

    DEBUG = 0x00
    SUCCESS = 0x01
    UNEXPECTEDRESPONSE = 0x02
    LIBNOTLOADABLE = 0x04
    INTERNALFAILURE = 0x06
    NOSERVER = 0x10 | 0x02
    NOEVENT = 0x20 | 0x03
    INCOMPATIBLEPROTOCOL = 0x10 | 0x04
    DISCONNECTED = 0x10 | 0x06
    UNSUPPORTEDREQ = 0x20 | 0x05
    UNKNOWNOBJECT = 0x20 | 0x02
    UNKNOWNPROPERTY = 0x20 | 0x04
    INVALIDTYPE = 0x20 | 0x06
    REJECTED = 0x20 | 0x08


def code_name(code: int) -> str:
    """``"RMT_REJECTED (0x28)"`` for a known code, ``"unknown code 0x..."`` otherwise."""
    try:
        return f"RMT_{Code(code).name} (0x{code:02x})"
    except ValueError:
        return f"unknown code 0x{code:x}"


_CONNECTION = {Code.NOSERVER, Code.DISCONNECTED, Code.LIBNOTLOADABLE, Code.INCOMPATIBLEPROTOCOL}
_UNKNOWN = {Code.UNKNOWNOBJECT, Code.UNKNOWNPROPERTY, Code.UNSUPPORTEDREQ}
_MEANING = {
    Code.NOSERVER: "no MATRIX answers (is MATRIX running, with the experiment open?)",
    Code.DISCONNECTED: "MATRIX closed the connection (experiment closed or MATRIX ended)",
    Code.LIBNOTLOADABLE: "the remote-access library could not load its own dependencies",
    Code.INCOMPATIBLEPROTOCOL: "the library and the running MATRIX speak different versions",
    Code.UNKNOWNOBJECT: "MATRIX has no such object in this experiment",
    Code.UNKNOWNPROPERTY: "the object has no such property",
    Code.UNSUPPORTEDREQ: "MATRIX does not support this request",
    Code.INVALIDTYPE: "the property has another value type",
    Code.REJECTED: "MATRIX rejected the request (value out of range, or not now)",
    Code.UNEXPECTEDRESPONSE: "MATRIX answered unexpectedly",
    Code.INTERNALFAILURE: "internal failure of the remote-access library",
}


class MatrixRefused(InstrumentError):
    """MATRIX refused or failed a request; ``code`` is the API's return code."""

    def __init__(self, code: int, function: str, name: str, detail: str = "") -> None:
        self.code = code
        meaning = _MEANING.get(Code(code)) if code in Code._value2member_map_ else None
        text = f"{code_name(code)}: {detail or meaning or 'failed'}"
        super().__init__(
            f"{function}({name})" if name else function,
            text,
            hint="see the MATRIX section of the README for what to verify on your installation",
        )


class MatrixUnknownName(NotSupportedError):
    """MATRIX does not know a name the driver uses (another experiment, another version)."""

    def __init__(self, code: int, function: str, name: str, detail: str = "") -> None:
        self.code = code
        self.function = function
        self.name = name
        meaning = detail or _MEANING.get(Code(code), "unknown name")
        super().__init__(
            f"matrix: {function}({name}): {code_name(code)}: {meaning}",
            hint="check the experiment name ([drivers.matrix] experiment) and that this MATRIX "
            "version has the element; probepilot_matrix/names.py lists every name used",
        )


def error_for(code: int, function: str, name: str = "", detail: str = "") -> DriverError:
    """The probepilot error for a failed remote-access call.

    Connection codes become :class:`~probepilot.errors.DriverConnectionError`, unknown names
    and unsupported requests :class:`MatrixUnknownName` (a ``NotSupportedError``), everything
    else :class:`MatrixRefused` (an ``InstrumentError`` keeping the code).
    """
    known = Code(code) if code in Code._value2member_map_ else None
    if known in _CONNECTION:
        what = f"{function}({name})" if name else function
        return DriverConnectionError(
            f"matrix: {what}: {code_name(code)}: {detail or _MEANING[known]}",
            hint="start MATRIX, open the experiment, and connect again",
        )
    if known in _UNKNOWN:
        return MatrixUnknownName(code, function, name, detail)
    return MatrixRefused(code, function, name, detail)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of an observed entity.

    ``name`` is the entity's full name (``"STM_AtomManipulation::View.Z_Fw.Data"``),
    ``values`` what the event carries (a data event: one float64 array).
    """

    name: str
    values: tuple[Value, ...]


EventCallback: TypeAlias = Callable[[Event], None]


@runtime_checkable
class MatrixTransport(Protocol):
    """How the driver reaches MATRIX; see the module docstring."""

    #: One line saying what this transport talks to (for frame metadata and messages).
    description: str

    def open(self) -> None:
        """Connect (load the library, attach to the running MATRIX); idempotent.

        :raises DriverConnectionError: MATRIX or the library is not available.
        """
        ...

    def close(self) -> None:
        """Disconnect and stop delivering events; idempotent, never raises."""
        ...

    def get(self, name: str, kind: ValueType) -> Value:
        """The value of property ``name`` of type ``kind``."""
        ...

    def set(self, name: str, kind: ValueType, value: Value) -> None:
        """Write property ``name`` of type ``kind``."""
        ...

    def call(self, name: str, *args: Value) -> Value | None:
        """Call function ``name`` (``"...::XYScanner.execute"``) with ``args``; its return
        value, or None for a void function."""
        ...

    def observe(self, name: str, callback: EventCallback | None) -> None:
        """Deliver the events of entity ``name`` to ``callback`` (None: stop observing it).

        ``callback`` runs on a transport thread and must return quickly and not raise (an
        exception it raises is logged and dropped)."""
        ...
