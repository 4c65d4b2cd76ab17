"""The driver operations a driver host serves, with their argument and result types.

Both ends use this one table: the host checks every incoming call against it before a driver
sees it (types, not only arity: a ``set_bias`` with a string never reaches the instrument), and
the remote driver checks every result against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from probepilot.model import (
    Frame,
    InstrumentLimits,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)


@dataclass(frozen=True, slots=True)
class Call:
    """One driver operation.

    ``args`` are the argument types, ``result`` the result type (None: returns nothing).
    ``read``: it changes nothing, so a client may send it again after a timeout. ``long``: it
    may take longer than a reply timeout (a scan, an approach), so the client waits as long as
    the host shows signs of life instead. ``abortable``: the host cancels it when its client
    disappears (the contract guarantees a cancelled scan leaves the instrument consistent);
    the others run to their end.
    """

    args: tuple[Any, ...] = ()
    result: Any = None
    read: bool = False
    long: bool = False
    abortable: bool = False


CALLS: dict[str, Call] = {
    "limits": Call(result=InstrumentLimits, read=True),
    "get_bias": Call(result=float, read=True),
    "set_bias": Call(args=(float,)),
    "get_setpoint": Call(result=float, read=True),
    "set_setpoint": Call(args=(float,)),
    "get_feedback": Call(result=bool, read=True),
    "set_feedback": Call(args=(bool,)),
    "withdraw": Call(long=True),
    "approach": Call(long=True),
    "get_tip_position": Call(result=TipPosition, read=True),
    "set_tip_position": Call(args=(float, float), long=True),
    "scan": Call(args=(ScanSettings,), result=Frame, long=True, abortable=True),
    "bias_pulse": Call(args=(float, float), long=True),
    "dip": Call(args=(float, float), long=True),
    "spectrum": Call(args=(SpectrumRequest,), result=Spectrum, long=True),
    "coarse_move": Call(args=(str, int), long=True),
    "set_drift_compensation": Call(args=(float, float, float)),
}
