"""Registers the remote driver (``driver = "remote"``).

Kept light: the driver and ZeroMQ are imported only when the driver is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probepilot import hookimpl
from probepilot_remote.options import RemoteOptions

if TYPE_CHECKING:
    from probepilot.contracts import Driver
    from probepilot.registry import Registry

DESCRIPTION = "a driver hosted by `probepilot serve` on another machine, over ZeroMQ"


def make_driver(options: RemoteOptions | None) -> Driver:
    """Build a :class:`~probepilot_remote.driver.RemoteDriver` from validated options."""
    from probepilot_remote.driver import RemoteDriver

    return RemoteDriver(options)


@hookimpl
def probepilot_register_drivers(registry: Registry[Driver]) -> None:
    registry.register("remote", make_driver, options=RemoteOptions, description=DESCRIPTION)
