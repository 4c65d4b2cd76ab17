"""Registers the SR830-class lock-in amplifier (``instruments = ["sr830"]``).

Kept light: pyvisa is imported only when the instrument is built (the ``visa`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probepilot import hookimpl
from probepilot_visa.options import Sr830Options

if TYPE_CHECKING:
    from probepilot.contracts import Instrument
    from probepilot.registry import Registry

DESCRIPTION = "SR830-class lock-in amplifier over VISA (GPIB, RS-232, Ethernet); '@sim' twin"


def make_sr830(options: Sr830Options | None) -> Instrument:
    """Build a :class:`~probepilot_visa.sr830.Sr830` from validated options (no I/O yet)."""
    from probepilot_visa.sr830 import Sr830

    return Sr830(options)


@hookimpl
def probepilot_register_instruments(registry: Registry[Instrument]) -> None:
    registry.register("sr830", make_sr830, options=Sr830Options, description=DESCRIPTION)
