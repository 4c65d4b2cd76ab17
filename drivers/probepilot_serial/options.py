"""The ``[instruments.anc300]`` and ``[instruments.sr570]`` tables. Only the schemas (no pyserial),
so listing plugins stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from probepilot.options import Doc, Quantity, Range

_PORT_DOC = (
    "serial port ('/dev/ttyUSB0', 'COM3') or pyserial URL ('socket://host:7230', 'rfc2217://...'); "
    "'sim': the simulated twin on a pseudo-terminal (POSIX)"
)


@dataclass(frozen=True)
class Anc300Options:
    """Options of the attocube ANC300 coarse positioner controller (``anc300``)."""

    port: Annotated[str, Doc(_PORT_DOC)] = "sim"
    baudrate: Annotated[int, Range(300, 1_000_000), Doc("serial speed (the ANC300 uses 38400)")] = (
        38400
    )
    password: Annotated[
        str, Doc("password sent first over Ethernet (socket:// ports); '' for none")
    ] = ""
    timeout: Annotated[
        float, Quantity("s"), Range(0.01, 600), Doc("every reply must arrive within this")
    ] = 2.0
    axis_x: Annotated[int, Range(0, 7), Doc("controller axis (module slot) moving x; 0: none")] = 1
    axis_y: Annotated[int, Range(0, 7), Doc("controller axis (module slot) moving y; 0: none")] = 2
    axis_z: Annotated[int, Range(0, 7), Doc("controller axis (module slot) moving z; 0: none")] = 3
    invert: Annotated[
        list[Literal["x", "y", "z"]],
        Doc("axes whose '+' direction is the controller's step down (stepd); z+ must retract"),
    ] = field(default_factory=list)
    voltage: Annotated[
        float | None,
        Quantity("V"),
        Range(0, 150),
        Doc("step amplitude set on connect (default: leave the controller's)"),
    ] = None
    frequency: Annotated[
        float | None,
        Quantity("Hz"),
        Range(1, 10000),
        Doc("step frequency set on connect (default: leave the controller's)"),
    ] = None
    max_steps: Annotated[int, Range(1, 65535), Doc("most steps in one move")] = 10000


@dataclass(frozen=True)
class Sr570Options:
    """Options of the SRS SR570 current preamplifier (``sr570``)."""

    port: Annotated[str, Doc(_PORT_DOC)] = "sim"
    baudrate: Annotated[int, Range(300, 1_000_000), Doc("serial speed (the SR570 uses 9600)")] = (
        9600
    )
    timeout: Annotated[
        float, Quantity("s"), Range(0.01, 600), Doc("a command must be sent within this")
    ] = 2.0
    gain: Annotated[
        float | None,
        Quantity("V/A"),
        Range(1e3, 1e12),
        Doc("gain set on connect; the SR570 cannot be asked, so without it the gain is unknown"),
    ] = 1e9
