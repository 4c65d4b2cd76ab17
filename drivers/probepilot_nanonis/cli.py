"""``probepilot sim-server nanonis``: the virtual Nanonis on the command line.

The served instrument is a registered driver (``sim`` by default), found by name in the plugin
registry and configured from the ``[drivers.<name>]`` table of ``--config``, so this package never
imports the simulator. Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import click

from probepilot.errors import ConfigError, ProbepilotError


def parse_ports(text: str) -> list[int]:
    """``"6501-6504"`` or ``"6501,6503"`` (0 = any free port) -> list of ports."""
    ports: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a port or a range like 6501-6504") from None
        if not (0 <= first <= last <= 65535) or last - first >= 64:
            raise click.BadParameter(f"{part!r} is not a range of at most 64 ports in 0-65535")
        ports += range(first, last + 1)
    return ports


def make_served_driver(name: str, config_file: Path | None) -> Any:
    """The driver ``name`` built from the config file's ``[drivers.<name>]`` (or defaults)."""
    from probepilot.config import load_config
    from probepilot.options import build

    config, manager = load_config(config_file)
    if name == "nanonis":
        raise ConfigError(
            "the virtual Nanonis cannot serve the nanonis driver itself", key="--driver"
        )
    entry = manager.registry("driver").get(name)
    options = config.options("driver", name)
    if options is None and entry.options is not None:
        options = build(entry.options, {}, source=config.source, key=f"drivers.{name}")
    return entry.factory(options)


@click.group("sim-server")
def sim_server() -> None:
    """Serve the simulated microscope over an instrument's own protocol."""


@sim_server.command("nanonis")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--ports",
    default="6501-6504",
    show_default=True,
    help="Ports: 6501-6504, 6501,6502 or 0 (any free).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="probepilot config whose [drivers.sim] table sets up the simulator.",
)
@click.option(
    "--driver", "driver_name", default="sim", show_default=True, help="Registered driver to serve."
)
@click.option(
    "--faults",
    multiple=True,
    help="Inject faults, KIND:COMMAND[:VALUE] with KIND drop, stall, error or delay; "
    "comma-separated or repeated.",
)
@click.option(
    "--save-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where completed scans are saved as .sxm (default: a new temporary folder).",
)
def nanonis(
    host: str,
    ports: str,
    config_file: Path | None,
    driver_name: str,
    faults: tuple[str, ...],
    save_dir: Path | None,
) -> None:
    """The virtual Nanonis: the simulated microscope behind the Nanonis TCP interface."""
    from probepilot_nanonis.faults import parse_faults
    from probepilot_nanonis.server import NanonisServer

    port_list = parse_ports(ports)
    try:
        fault_list = parse_faults(list(faults))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    try:
        driver = make_served_driver(driver_name, config_file)
    except ProbepilotError as exc:
        raise click.ClickException(str(exc)) from None
    server = NanonisServer(driver, host=host, ports=port_list, faults=fault_list, save_dir=save_dir)

    async def main() -> None:
        try:
            bound = await server.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host} ports {ports}: {exc}") from None
        click.echo(
            f"virtual Nanonis: driver {driver_name!r} on {host} ports "
            f"{', '.join(map(str, bound))}; scans saved in {server.save_dir}; Ctrl-C stops"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
