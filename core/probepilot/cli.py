"""The ``probepilot`` command line.

Core commands live here; plugins add theirs through ``probepilot_register_commands``, loaded only
when a command that is not a core one is asked for (or ``--help`` lists them), so core commands
start fast. Every :class:`~probepilot.errors.ProbepilotError` becomes one line on stderr and the
error's exit status (2 for config errors); a traceback only ever means a bug in probepilot.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import click

from probepilot import __version__
from probepilot.errors import ProbepilotError
from probepilot.plugins import PluginInfo, make_plugin_manager


class ProbepilotGroup(click.Group):
    """A click group that also offers the commands plugins register."""

    _plugin_commands: dict[str, click.Command] | None = None

    def _load_plugin_commands(self) -> dict[str, click.Command]:
        if self._plugin_commands is None:
            group = click.Group()
            # Plugins add their sub-commands to these shared groups: cli.commands["train"].
            for name in EXTENSIBLE_GROUPS:
                group.add_command(self.commands[name])
            manager = make_plugin_manager()
            for impl in manager.hook.probepilot_register_commands.get_hookimpls():
                try:
                    impl.function(cli=group)
                # A plugin's broken command must not break the core commands.
                except Exception as exc:  # noqa: BLE001
                    click.echo(
                        f"warning: plugin {impl.plugin_name!r} failed to add its commands: "
                        f"{type(exc).__name__}: {exc}",
                        err=True,
                    )
            self._plugin_commands = {
                name: cmd for name, cmd in group.commands.items() if name not in self.commands
            }
        return self._plugin_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._load_plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            command = self._load_plugin_commands().get(cmd_name)
        return command


class PluginSubGroup(click.Group):
    """A core group (``train``, ``bench``) whose sub-commands come from plugins: listing or
    resolving one first loads the plugins' commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        cli._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cli._load_plugin_commands()
        return super().get_command(ctx, cmd_name)


#: Core groups that plugins extend with sub-commands.
EXTENSIBLE_GROUPS = ("train", "bench")


@click.group(cls=ProbepilotGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """probepilot: an autopilot for scanning tunnelling microscopes."""


@cli.group(cls=PluginSubGroup)
def train() -> None:
    """Train the learned components (classifier, policies) from a seed on the simulator."""


@cli.group(cls=PluginSubGroup)
def bench() -> None:
    """Measure components on the simulator and print one JSON line of figures."""


@cli.command()
def version() -> None:
    """Print the probepilot version."""
    click.echo(f"probepilot {__version__}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array for other tools.")
def plugins(as_json: bool) -> None:
    """List every plugin: name, distribution, version, what it provides, hooks, load error."""
    infos = make_plugin_manager().plugin_infos()
    if as_json:
        click.echo(json.dumps([info.as_dict() for info in infos], indent=2))
        return
    if not infos:
        click.echo("no plugins installed")
        return
    for info in infos:
        click.echo(_describe_plugin(info))


def _describe_plugin(info: PluginInfo) -> str:
    origin = f"{info.distribution} {info.version}" if info.distribution else "registered in-process"
    lines = [f"{info.name}  ({origin}; {info.module})"]
    if info.disabled:
        lines.append("  disabled")
    elif info.error:
        lines.append(f"  ERROR: {info.error}")
    else:
        provides = "; ".join(
            f"{kind} {', '.join(names)}" for kind, names in sorted(info.provides.items()) if names
        )
        lines.append(f"  provides: {provides or '-'}")
        lines.append(f"  hooks:    {', '.join(info.hooks) or '-'}")
    return "\n".join(lines)


@cli.group()
def config() -> None:
    """Check or show configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE against the core schema and the selected plugins' schemas."""
    from probepilot.config import load_config

    cfg, _ = load_config(file)
    analyzers = ", ".join(cfg.analyzers) or "none"
    click.echo(f"{file}: ok (driver {cfg.driver!r}, policy {cfg.policy!r}, analyzers: {analyzers})")


@config.command("show")
@click.option(
    "--config",
    "file",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file (default: the built-in defaults).",
)
def config_show(file: Path | None) -> None:
    """Print the effective configuration, defaults included, as TOML."""
    from probepilot.config import load_config

    cfg, _ = load_config(file)
    click.echo(f"# effective configuration from {cfg.source}")
    click.echo(cfg.to_toml(), nl=False)


# --------------------------------------------------------------------------------------------
# The autonomous run


@cli.command()
@click.option(
    "--config",
    "file",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file (default: the built-in defaults, i.e. the simulated microscope).",
)
@click.option(
    "--headless",
    is_flag=True,
    help="No dashboard: a progress line per frame (also what happens off a terminal).",
)
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option(
    "--duration",
    default=None,
    help="Stop after this much instrument time, e.g. '2 h' (simulated time on the simulator).",
)
@click.option(
    "--publish",
    default=None,
    metavar="ADDRESS",
    help="Publish the run's events and frames for `probepilot watch ADDRESS`, e.g. "
    "tcp://127.0.0.1:5580 (stream on port + 1). Overrides [run] publish.",
)
@click.option(
    "--curve-keys",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --publish (or [run] publish): CurveZMQ key folder; only allow-listed watchers "
    "get in.",
)
def run(
    file: Path | None,
    headless: bool,
    frames: int | None,
    duration: str | None,
    publish: str | None = None,
    curve_keys: Path | None = None,
) -> None:
    """Run the autopilot: approach, image, analyse, condition the tip when it goes bad.

    Opens the dashboard (when installed and on a terminal) to watch and steer the run; q in
    it stops the run. Everything goes into a new run folder under [run] folder; `probepilot
    inspect RUN` summarises it. Ctrl-C stops a headless run cleanly (the journal records
    "stopped").
    """
    from probepilot.config import load_config
    from probepilot.headless import run_headless
    from probepilot.session import Session

    if frames is not None and duration is not None:
        raise click.UsageError("give --frames or --duration, not both")
    seconds = _duration(duration) if duration is not None else None
    cfg, manager = load_config(file)
    published = _publish(publish if publish is not None else cfg.run.publish, curve_keys)
    frontend = None if headless else _frontend(manager)
    if frontend is None:
        outcome, folder = run_headless(
            cfg, manager, frames=frames, duration=seconds, publish=published
        )
    else:
        session = Session(cfg, manager, frames=frames, duration=seconds)
        hosted: Any = session.run
        if published is not None:
            from probepilot.bus.publisher import run_published

            hosted = functools.partial(run_published, session, published[0], keys=published[1])
        shown = frontend.show(session, config=cfg, manager=manager, main=hosted)
        outcome, folder = shown or "stopped", session.folder
    click.echo(f"run {outcome}: {folder}")
    if outcome.startswith("failed"):
        sys.exit(1)


def _publish(address: str | None, curve_keys: Path | None) -> tuple[str, Any] | None:
    """``--publish`` (or ``[run] publish``) and ``--curve-keys``, checked, as ``run_headless``
    takes them."""
    if address is None:
        if curve_keys is not None:
            raise click.UsageError("--curve-keys goes with --publish (or [run] publish)")
        return None
    from probepilot.bus.address import check_address
    from probepilot.bus.cli import _warn_if_exposed
    from probepilot.bus.keys import server_keys

    check_address(address, what="--publish")
    _warn_if_exposed(address, curve_keys, "the run's stream")
    return address, server_keys(curve_keys) if curve_keys is not None else None


def _frontend(manager: Any) -> Any:
    """The frontend a plugin registered (``dashboard`` first), or None after a one-line note
    saying why the run goes headless. The core finds it only through the registry."""
    registry = manager.registry("frontend")
    if not len(registry):
        click.echo(
            "no dashboard installed (pip install 'probepilot[dashboard]'); running headless",
            err=True,
        )
        return None
    name = "dashboard" if "dashboard" in registry else registry.names()[0]
    try:
        frontend = registry.get(name).factory(None)
        why = frontend.unavailable()
    # A plugin's broken frontend must not stop the run: it goes headless and says why.
    except Exception as exc:  # noqa: BLE001
        why = f"{type(exc).__name__}: {exc}"
    if why:
        click.echo(f"the {name} cannot open: {why}; running headless", err=True)
        return None
    return frontend


def _duration(text: str) -> float:
    from probepilot.errors import ConfigError
    from probepilot.units import UnitError, parse_quantity

    try:
        value = parse_quantity(text, "s")
    except UnitError as exc:
        raise ConfigError(str(exc), source="command line", key="--duration", value=text) from None
    if not value > 0:
        raise ConfigError("must be positive", source="command line", key="--duration", value=text)
    return value


# --------------------------------------------------------------------------------------------
# Data files and run folders. The store is imported inside the commands so that `probepilot
# --help` and the other commands do not load the readers.


def _formats() -> list[Any]:
    """Every file format the installed plugins register (the built-in ones come from the
    ``formats`` plugin, like any third-party format)."""
    from probepilot.store.formats import installed_formats

    registry = make_plugin_manager().registry("format")
    return installed_formats(registry, lambda line: click.echo(line, err=True))


def _echo_json(value: object) -> None:
    from probepilot.store._common import json_safe

    click.echo(json.dumps(json_safe(value), indent=2, allow_nan=False))


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for other tools.")
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a preview image (a frame's channel, a grid's map, a spectrum's plot).",
)
@click.option("--channel", default=None, help="Channel to preview (default: Z, else the first).")
@click.option(
    "--frame",
    type=click.IntRange(min=1),
    default=None,
    help="Which frame of a multi-frame file to preview (MATRIX up/down passes; default 1).",
)
def inspect(
    target: Path, as_json: bool, png: Path | None, channel: str | None, frame: int | None
) -> None:
    """Summarise a data file (.sxm, .dat, .3ds, MATRIX ...) or a run folder.

    For a file: header summary and channels with shape, min, max and mean in SI units. For a
    run folder: frames, findings, actions, time in each state, good-frame fraction.
    """
    from probepilot.errors import FormatError

    if target.is_dir():
        if png is not None or channel is not None or frame is not None:
            raise click.UsageError("--png, --channel and --frame apply to a data file, not a run")
        _inspect_run(target, as_json)
        return
    if not target.exists():
        raise FormatError(f"{target}: no such file or folder")
    from probepilot.store.convert import pick_frame
    from probepilot.store.formats import find_format
    from probepilot.store.png import write_png
    from probepilot.store.summary import preview, render, summarise

    fmt = find_format(target, _formats())
    data = fmt.read(target)
    summary = {"file": str(target), "format": fmt.name, **summarise(data)}
    if png is not None:
        shown, note = pick_frame(data, frame, str(target))
        try:
            write_png(png, preview(shown, channel, str(target)))
        except OSError as exc:
            raise FormatError(f"{png}: cannot be written: {exc.strerror or exc}") from None
        summary["png"] = str(png)
        if not as_json:
            click.echo(f"wrote {png}" + (f" ({note})" if note else ""), err=True)
    if as_json:
        _echo_json(summary)
    else:
        click.echo(f"{target}: {fmt.name}")
        click.echo(render(summary))


def _inspect_run(folder: Path, as_json: bool) -> None:
    from probepilot.errors import FormatError
    from probepilot.store.runfolder import is_run_folder
    from probepilot.store.runsummary import render_run, summarise_run

    if not is_run_folder(folder):
        runs = sorted(p.name for p in folder.iterdir() if is_run_folder(p))
        hint = f"it holds {len(runs)} runs; inspect one, e.g. {folder / runs[-1]}" if runs else None
        raise FormatError(f"{folder}: not a run folder (it has no journal.msgpack)", hint=hint)
    summary = summarise_run(folder)
    if as_json:
        _echo_json(summary)
    else:
        click.echo(render_run(summary))


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--frame",
    type=click.IntRange(min=1),
    default=None,
    help="Which frame of a multi-frame file to convert (MATRIX up/down passes; default 1).",
)
def convert(source: Path, target: Path, frame: int | None) -> None:
    """Convert SOURCE (any readable format) to TARGET, written as its suffix says: .sxm, .dat,
    .3ds or .npz (arrays in SI units plus a metadata.json entry)."""
    from probepilot.store.convert import convert as run_convert

    click.echo(run_convert(source, target, _formats(), frame=frame))


def _add_bus_commands() -> None:
    """``serve``, ``watch`` and ``keys``: the split across machines (probepilot.bus)."""
    from probepilot.bus.cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_bus_commands()


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``probepilot`` script."""
    try:
        return cli.main(args=argv, prog_name="probepilot", standalone_mode=False)
    except ProbepilotError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
