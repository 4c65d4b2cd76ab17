"""Registers the serial instruments: the ANC300 coarse positioner and the SR570 preamplifier.

Kept light: pyserial is imported only when an instrument is built (the ``serial`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probepilot import hookimpl
from probepilot_serial.options import Anc300Options, Sr570Options

if TYPE_CHECKING:
    from probepilot.contracts import Instrument
    from probepilot.registry import Registry


def make_anc300(options: Anc300Options | None) -> Instrument:
    """Build an :class:`~probepilot_serial.anc300.Anc300` (no I/O yet)."""
    from probepilot_serial.anc300 import Anc300

    return Anc300(options)


def make_sr570(options: Sr570Options | None) -> Instrument:
    """Build an :class:`~probepilot_serial.sr570.Sr570` (no I/O yet)."""
    from probepilot_serial.sr570 import Sr570

    return Sr570(options)


@hookimpl
def probepilot_register_instruments(registry: Registry[Instrument]) -> None:
    registry.register(
        "anc300",
        make_anc300,
        options=Anc300Options,
        description="attocube ANC300 coarse positioner over RS-232/USB or Ethernet; 'sim' twin",
    )
    registry.register(
        "sr570",
        make_sr570,
        options=Sr570Options,
        description="SRS SR570 current preamplifier gain over RS-232 (listen-only); 'sim' twin",
    )
