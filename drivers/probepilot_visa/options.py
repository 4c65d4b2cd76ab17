"""The ``[instruments.sr830]`` table. Only the schema (no pyvisa), so listing plugins stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from probepilot.options import Doc, Quantity, Range


@dataclass(frozen=True)
class Sr830Options:
    """Options of the SR830-class lock-in amplifier (``instruments = ["sr830"]``)."""

    resource: Annotated[
        str,
        Doc("VISA resource name: 'GPIB0::8::INSTR', 'ASRL/dev/ttyUSB0::INSTR', 'TCPIP::...'"),
    ] = "GPIB0::8::INSTR"
    backend: Annotated[
        str,
        Doc(
            "pyvisa backend: '' (the installed VISA library), '@py' (pyvisa-py), '@sim' (the "
            "simulated SR830 shipped with probepilot), or 'file.yaml@sim' (your own twin)"
        ),
    ] = ""
    timeout: Annotated[
        float, Quantity("s"), Range(0.001, 600), Doc("every reply must arrive within this")
    ] = 2.0
    auto_gain_timeout: Annotated[
        float, Quantity("s"), Range(0.01, 600), Doc("time allowed for an auto-gain to finish")
    ] = 30.0
    interface: Annotated[
        Literal["auto", "gpib", "rs232"],
        Doc("where the SR830 sends replies (OUTX); 'auto': RS-232 for ASRL resources"),
    ] = "auto"
