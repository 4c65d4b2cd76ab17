"""Registers the Nanonis driver (``driver = "nanonis"``) and ``probepilot sim-server nanonis``.

Kept light: the driver and the server are imported only when built or run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probepilot import hookimpl
from probepilot_nanonis.options import NanonisOptions

if TYPE_CHECKING:
    from probepilot.contracts import Driver
    from probepilot.registry import Registry

DESCRIPTION = "Nanonis SPM controller through its TCP programming interface"


def make_driver(options: NanonisOptions | None) -> Driver:
    """Build a :class:`~probepilot_nanonis.driver.NanonisDriver` from validated options."""
    from probepilot_nanonis.driver import NanonisDriver

    return NanonisDriver(options)


@hookimpl
def probepilot_register_drivers(registry: Registry[Driver]) -> None:
    registry.register("nanonis", make_driver, options=NanonisOptions, description=DESCRIPTION)


@hookimpl
def probepilot_register_commands(cli: Any) -> None:
    from probepilot_nanonis.cli import sim_server

    cli.add_command(sim_server)
