"""Events: what a run tells the world, one record at a time.

Every step of a run (frame scanned, findings, decision, safety rejection, driver error, operator
command) is an :class:`Event`. The same records go to the journal, to ``probepilot_event``
observers, to the dashboard and, across machines, over ZeroMQ, so their payload is restricted to
msgpack-friendly values (numbers, strings, lists, dicts, bytes) with arrays carried separately.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One record of a run's event stream.

    ``type`` is a dotted name (``"frame.scanned"``, ``"policy.decided"``, ``"safety.rejected"``
    ...); ``seq`` increases by one per event within a run; ``time`` is a POSIX timestamp (s);
    ``data`` holds msgpack-friendly values in SI units.
    """

    type: str
    seq: int
    data: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
