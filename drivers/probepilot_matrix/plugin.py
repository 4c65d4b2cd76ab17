"""Registers the MATRIX driver (``driver = "matrix"``) and ``probepilot matrix-check``.

Kept light: the driver, ctypes and the simulated MATRIX are imported only when a driver is
built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probepilot import hookimpl
from probepilot_matrix.options import MatrixOptions

if TYPE_CHECKING:
    from probepilot.contracts import Driver
    from probepilot.registry import Registry

DESCRIPTION = (
    "Scienta Omicron MATRIX through its remote-access library (RemoteAccess_API.dll), or a "
    "simulated MATRIX (transport = 'simulated')"
)


def make_driver(options: MatrixOptions | None) -> Driver:
    """Build a :class:`~probepilot_matrix.driver.MatrixDriver` from validated options."""
    from probepilot_matrix.driver import MatrixDriver

    return MatrixDriver(options)


@hookimpl
def probepilot_register_drivers(registry: Registry[Driver]) -> None:
    registry.register("matrix", make_driver, options=MatrixOptions, description=DESCRIPTION)


@hookimpl
def probepilot_register_commands(cli: Any) -> None:
    from probepilot_matrix.check import matrix_check

    cli.add_command(matrix_check)
