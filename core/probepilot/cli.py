"""The ``probepilot`` command line.

Core commands live here; plugins add theirs through ``probepilot_register_commands``, loaded only
when a command that is not a core one is asked for (or ``--help`` lists them), so core commands
start fast. Every :class:`~probepilot.errors.ProbepilotError` becomes one line on stderr and the
error's exit status (2 for config errors); a traceback only ever means a bug in probepilot.
"""

from __future__ import annotations

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


@click.group(cls=ProbepilotGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """probepilot: an autopilot for scanning tunnelling microscopes."""


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
