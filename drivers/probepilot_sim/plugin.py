"""Registers the simulated microscope with probepilot: the ``sim`` driver and the
``probepilot sim-preview`` command.

Kept light: numpy/scipy-heavy modules are imported only when a driver is built or the command
runs, so ``probepilot plugins`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probepilot import hookimpl
from probepilot_sim.options import SimOptions

if TYPE_CHECKING:
    from probepilot.contracts import Driver
    from probepilot.registry import Registry

DESCRIPTION = (
    "simulated STM: real-unit surfaces, multi-apex tips, drift, creep, noise, stochastic "
    "tip conditioning and spectroscopy"
)


def make_driver(options: SimOptions | None) -> Driver:
    """Build a :class:`~probepilot_sim.driver.SimDriver` from validated options."""
    from probepilot_sim.driver import SimDriver

    return SimDriver(options)


@hookimpl
def probepilot_register_drivers(registry: Registry[Driver]) -> None:
    registry.register("sim", make_driver, options=SimOptions, description=DESCRIPTION)


@hookimpl
def probepilot_register_commands(cli: Any) -> None:
    import click

    @click.command("sim-preview")
    @click.option(
        "--out",
        "out",
        type=click.Path(dir_okay=False, writable=True),
        default="sim-preview.png",
        show_default=True,
        help="PNG file to write.",
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="Simulator seed.")
    @click.option(
        "--surface",
        type=click.Choice(["au111", "cu111", "si111_7x7", "hopg"]),
        default="au111",
        show_default=True,
        help="Surface preset.",
    )
    @click.option("--size", type=float, default=30.0, show_default=True, help="Frame side in nm.")
    @click.option(
        "--pixels", type=click.IntRange(8, 1024), default=128, show_default=True, help="Pixels."
    )
    def sim_preview(out: str, seed: int, surface: str, size: float, pixels: int) -> None:
        """Render one area with a good, a double, a blunt and an unstable tip, side by side."""
        from probepilot_sim.preview import write_preview

        if not 0.5 <= size <= 1000:
            raise click.BadParameter("the frame side must be 0.5-1000 nm", param_hint="--size")
        options = SimOptions(seed=seed, surface=surface)  # type: ignore[arg-type]
        labels = write_preview(out, options, size=size * 1e-9, pixels=pixels)
        click.echo(
            f"wrote {out}: {pixels} x {pixels} px, {size:g} nm; left to right: " + ", ".join(labels)
        )

    cli.add_command(sim_preview)
