"""Faults the virtual Nanonis can inject, for testing clients against a misbehaving controller.

A fault is ``KIND:COMMAND[:VALUE]``; ``COMMAND`` is a command name or ``*`` for any. Each fault
fires once, on the next matching request, in the order given. Kinds:

``drop``
    run the command, send the reply's header and half its body, then close the connection.
    A client sees a connection closed mid-reply (probepilot: ``DriverConnectionError``).
``stall``
    run the command, send the header and half the body, then send nothing more while keeping
    the connection open. A client sees a half-read reply that never ends (probepilot:
    ``DriverTimeoutError`` after its timeout).
``error``
    do not run the command; reply with the zero-filled return values and an error section whose
    description is ``VALUE`` (default ``injected fault``) (probepilot: ``InstrumentError`` with
    that message).
``delay``
    run the command, wait ``VALUE`` seconds (default 1), then send the whole reply (probepilot:
    ``DriverTimeoutError`` if that exceeds its timeout, otherwise just a slow reply).

On the command line: ``--faults drop:Bias.Get,delay:*:0.5`` (the option may also be repeated).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["drop", "stall", "error", "delay"]
KINDS: tuple[FaultKind, ...] = ("drop", "stall", "error", "delay")


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault; see the module docstring."""

    kind: FaultKind
    command: str = "*"
    value: str = ""

    def matches(self, name: str) -> bool:
        return self.command in ("*", name)

    @property
    def seconds(self) -> float:
        return float(self.value) if self.value else 1.0

    @property
    def message(self) -> str:
        return self.value or "injected fault"


def parse_fault(text: str) -> Fault:
    """``"delay:Bias.Get:0.5"`` -> ``Fault("delay", "Bias.Get", "0.5")``; ValueError if bad."""
    kind, _, rest = text.strip().partition(":")
    command, _, value = rest.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r} in {text!r}; use one of {', '.join(KINDS)}")
    if not command:
        raise ValueError(f"fault {text!r} names no command; use KIND:COMMAND[:VALUE] (or * )")
    if kind == "delay" and value:
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"fault {text!r}: the delay {value!r} is not seconds") from None
        if not seconds >= 0:
            raise ValueError(f"fault {text!r}: the delay must be >= 0 s")
    return Fault(kind, command, value)


def parse_faults(texts: str | list[str] | tuple[str, ...]) -> list[Fault]:
    """Comma-separated fault specs (or several such strings)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    return [parse_fault(part) for item in items for part in item.split(",") if part.strip()]


class FaultPlan:
    """Pending faults, consumed in order. Thread-safe: tests add faults from their own thread
    while the server's event loop takes them."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._faults = list(faults or [])
        self._lock = threading.Lock()
        #: Faults already fired, in order (for tests and logs).
        self.fired: list[tuple[Fault, str]] = []

    def add(self, *faults: Fault | str) -> None:
        with self._lock:
            self._faults += [parse_fault(f) if isinstance(f, str) else f for f in faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, name: str) -> Fault | None:
        """The first pending fault matching command ``name``, removed from the plan."""
        if not self._faults:  # the common case, without the lock
            return None
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(name):
                    del self._faults[i]
                    self.fired.append((fault, name))
                    return fault
        return None

    def __len__(self) -> int:
        return len(self._faults)
