"""``probepilot serve``, ``probepilot watch``, ``probepilot send`` and ``probepilot keys``: the
command line of the split across machines.

Only click is imported here; ZeroMQ and the rest load when a command runs, so ``probepilot
--help`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from probepilot.errors import ConfigError, ProbepilotError

F = TypeVar("F", bound=Callable[..., Any])

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _warn_if_exposed(address: str, keys: Path | None, what: str) -> None:
    from probepilot.bus.sockets import split

    host, _ = split(address)
    if keys is None and host not in LOOPBACK:
        click.echo(
            f"warning: {what} listens on {host} without --curve-keys: anyone who can reach "
            "this port can use it (see `probepilot keys generate`)",
            err=True,
        )


def _client_keys(server_key: Path | None, client_key: Path | None) -> Any:
    if (server_key is None) != (client_key is None):
        raise click.UsageError("--server-key and --client-key go together")
    if server_key is None:
        return None
    from probepilot.bus.keys import client_keys

    return client_keys(server_key, client_key)


# --------------------------------------------------------------------------------------------
# serve


@click.command()
@click.option(
    "--driver",
    "driver_name",
    default=None,
    help="The driver plugin to host (default: the config's driver), e.g. nanonis or sim.",
)
@click.option(
    "--bind",
    "address",
    default="tcp://127.0.0.1:5570",
    show_default=True,
    help="Where to listen (status on port + 1). tcp://0.0.0.0:5570 listens on every network: "
    "use --curve-keys then.",
)
@click.option(
    "--config",
    "file",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file with the driver's options ([drivers.NAME]).",
)
@click.option(
    "--curve-keys",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with server.key_secret and authorized/*.key: only those clients get in.",
)
@click.option(
    "--withdraw-on-loss",
    is_flag=True,
    help="Withdraw the tip when a client disappears mid-command (after its scan is aborted).",
)
@click.option(
    "--client-timeout",
    default="5 s",
    show_default=True,
    help="A client silent this long is gone.",
)
def serve(
    driver_name: str | None,
    address: str,
    file: Path | None,
    curve_keys: Path | None,
    withdraw_on_loss: bool,
    client_timeout: str,
) -> None:
    """Host a driver for runs on other machines (`driver = "remote"` there).

    Runs on the instrument PC and stays light: it relays calls to the driver, line-by-line
    scan progress back, and aborts a scan whose client disappears. Ctrl-C stops it.
    """
    from probepilot.bus.address import check_address
    from probepilot.bus.host import DriverHost
    from probepilot.bus.keys import server_keys
    from probepilot.config import load_config

    check_address(address, what="--bind")
    cfg, manager = load_config(file)
    name = driver_name or cfg.driver
    if name == "remote":
        raise ConfigError(
            "a driver host cannot host the remote driver", source="command line", key="--driver"
        )
    driver = cfg.build(manager, "driver", name)
    keys = server_keys(curve_keys) if curve_keys is not None else None
    _warn_if_exposed(address, curve_keys, "the driver host")
    host = DriverHost(
        driver,
        address,
        keys=keys,
        client_timeout=_seconds(client_timeout, "--client-timeout"),
        withdraw_on_loss=withdraw_on_loss,
        log=lambda line: click.echo(line, err=True),
    )

    async def main() -> None:
        await host.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: loop.create_task(host.stop()))
        secured = "CurveZMQ, allow-listed clients" if keys else "no encryption"
        click.echo(
            f"serving driver {name!r} on {host.address} (status on {host.status_address}; "
            f"{secured}); Ctrl-C stops",
        )
        sys.stdout.flush()
        await host.serve_forever()

    _run_loop(main())
    click.echo("driver host stopped", err=True)


def _run_loop(coro: Any) -> None:
    if sys.platform == "win32":  # ZeroMQ sockets need a selector loop (no add_reader on proactor)
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())  # type: ignore[attr-defined,unused-ignore]
    asyncio.run(coro)


def _seconds(text: str, key: str) -> float:
    from probepilot.units import UnitError, parse_quantity

    try:
        value = parse_quantity(text, "s")
    except UnitError as exc:
        raise ConfigError(str(exc), source="command line", key=key, value=text) from None
    if not value > 0:
        raise ConfigError("must be positive", source="command line", key=key, value=text)
    return value


def curve_client_options(who: str) -> Callable[[F], F]:
    """``--server-key`` and ``--client-key``, the CurveZMQ options of a command that connects
    to a run (``who``: what the help calls the connecting side)."""

    def apply(command: F) -> F:
        command = click.option(
            "--client-key",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=f"CurveZMQ: this {who}'s secret key file (NAME.key_secret).",
        )(command)
        return click.option(
            "--server-key",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="CurveZMQ: the run's public key file (server.key).",
        )(command)

    return apply


# --------------------------------------------------------------------------------------------
# watch


@click.command()
@click.argument("address")
@click.option("--headless", is_flag=True, help="No dashboard: print events and frames as lines.")
@curve_client_options("watcher")
@click.option(
    "--timeout",
    default="10 s",
    show_default=True,
    help="How long to wait for the run to answer (also after losing contact).",
)
@click.option(
    "--config",
    "file",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file for the dashboard's own options.",
)
def watch(
    address: str,
    headless: bool,
    server_key: Path | None,
    client_key: Path | None,
    timeout: str,
    file: Path | None,
) -> None:
    """Watch (and steer) a run published with `probepilot run --publish ADDRESS`.

    Opens the dashboard attached to the remote run; its commands (pause, stop, withdraw ...)
    go back to the run. With --headless, prints one line per event and per frame and exits
    when the run finishes; `probepilot send ADDRESS COMMAND` steers the run from a shell.
    """
    from probepilot.bus.address import check_address
    from probepilot.bus.watcher import RemoteLink
    from probepilot.config import load_config

    check_address(address, what="ADDRESS")
    seconds = _seconds(timeout, "--timeout")
    keys = _client_keys(server_key, client_key)
    frontend = None
    cfg = manager = None
    if not headless:
        from probepilot.cli import _frontend

        cfg, manager = load_config(file)
        frontend = _frontend(manager)
    link = RemoteLink(address, keys=keys, timeout=seconds)
    if frontend is None:
        _watch_headless(link, address, seconds)
        return
    link.start()
    try:
        frontend.show(link, config=cfg, manager=manager)
    finally:
        link.close()


def _watch_headless(link: Any, address: str, timeout: float) -> None:
    from probepilot.bus.watcher import RemoteFrame
    from probepilot.session import ScanLine

    # Callbacks come on the network thread; lines are printed from here, in order, after the
    # line that says what we attached to.
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def say(text: str) -> None:
        click.echo(text)
        sys.stdout.flush()

    def flush() -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                say(lines.get_nowait())

    def on_item(item: Any) -> None:
        if not isinstance(item, ScanLine):
            lines.put(f"event {item.seq} {item.type}{_summary(item.type, item.data)}")

    def on_frame(frame: RemoteFrame) -> None:
        z = frame.channels.get("Z", next(iter(frame.channels.values()), None))
        extent = ""
        if z is not None:
            import numpy as np

            done = z[0][: max(frame.lines_done, 1)]
            if np.isfinite(done).any():
                extent = f", Z {np.nanmin(done) * 1e9:.3f}..{np.nanmax(done) * 1e9:.3f} nm"
        lines.put(
            f"frame {frame.index}: {frame.area.lines}x{frame.area.pixels}, "
            f"{frame.lines_done}/{frame.area.lines} lines{extent}"
        )

    link.subscribe(on_item)
    link.subscribe_frames(on_frame)
    snapshot = link.start()
    stats = snapshot.get("stats") or {}
    say(
        f"attached to run {snapshot.get('run_id') or '(starting)'} at {address}: state "
        f"{snapshot.get('state') or '-'}, driver {snapshot.get('driver')}, policy "
        f"{snapshot.get('policy')}, {stats.get('frames', 0)} frames so far"
    )
    lost_since: float | None = None
    try:
        while not link.finished.is_set():
            time.sleep(0.1)
            flush()
            if link.connected.is_set():
                lost_since = None
                continue
            if lost_since is None:
                lost_since = time.monotonic()
                say(f"lost contact with the run at {address}; waiting up to {timeout:g} s")
            elif time.monotonic() - lost_since > timeout:
                raise ProbepilotError(f"lost the run at {address} (no answer for {timeout:g} s)")
        link.wait_finished(5.0)
        flush()
        say(f"run finished: {link.outcome} ({link.frames_received} frames received)")
    except KeyboardInterrupt:
        say("stopped watching (the run goes on)")
    finally:
        link.close()


def _summary(kind: str, data: Any) -> str:
    """A few words about an event for the headless watcher."""
    if not isinstance(data, dict):
        return ""
    if kind == "session.state":
        return f": {data.get('state')}"
    if kind == "frame.persisted":
        return f": {data.get('file')} ({data.get('lines_done')}/{data.get('lines')} lines)"
    if kind == "frame.analysed":
        return f": tip {data.get('tip_state')}"
    if kind in ("policy.decided", "action.executed", "safety.rejected"):
        action = data.get("action")
        return f": {getattr(action, 'kind', None) or action}"
    if kind == "driver.error":
        return f": {data.get('operation')}: {data.get('message')}"
    if kind == "operator.command":
        return f": {data.get('command')}"
    if kind == "run.finished":
        return f": {data.get('outcome')}"
    return ""


# --------------------------------------------------------------------------------------------
# send

#: The run's operator commands (``probepilot.session.COMMANDS``; a test keeps them equal) and
#: the one argument each takes: (name, unit of a quantity or None for text, allowed values).
OPERATOR_COMMANDS: dict[str, tuple[str, str | None, tuple[str, ...]] | None] = {
    "pause": None,
    "resume": None,
    "stop": ("mode", None, ("finish", "abort")),
    "withdraw": None,
    "switch_policy": ("name", None, ()),
    "set_bias": ("voltage", "V", ()),
    "set_setpoint": ("current", "A", ()),
}


# (ignore_unknown_options: a negative bias, "-250mV", is an argument, not an option)
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("address")
@click.argument("command", type=click.Choice(list(OPERATOR_COMMANDS)), metavar="COMMAND")
@click.argument("arguments", nargs=-1, metavar="[ARGUMENT]")
@curve_client_options("client")
@click.option(
    "--timeout",
    default="10 s",
    show_default=True,
    help="How long to wait for the run's reply.",
)
def send(
    address: str,
    command: str,
    arguments: tuple[str, ...],
    server_key: Path | None,
    client_key: Path | None,
    timeout: str,
) -> None:
    """Steer a run published with `probepilot run --publish ADDRESS`, without the dashboard:
    send one operator command and print the run's one-line reply.

    \b
    COMMAND and its ARGUMENT (the value alone, or NAME=VALUE):
      pause                       pause after the current frame
      resume                      resume (after a withdraw: approach again)
      stop [finish|abort]         stop after the current frame (default), or now
      withdraw                    withdraw the tip now; the run pauses
      switch_policy POLICY        switch the conditioning policy, e.g. random
      set_bias VOLTAGE            e.g. -250mV or "-250 mV" (the safety envelope checks it)
      set_setpoint CURRENT        e.g. 50pA

    Exits with status 1 and a one-line error when the run refuses the command (the safety
    envelope included) or does not answer within --timeout.
    """
    from probepilot.bus.address import check_address
    from probepilot.bus.watcher import send_command

    check_address(address, what="ADDRESS")
    args = _command_arguments(command, arguments)
    seconds = _seconds(timeout, "--timeout")
    keys = _client_keys(server_key, client_key)
    try:
        reply = send_command(address, command, args, keys=keys, timeout=seconds)
    except ProbepilotError as exc:  # the run's refusal, or no reply: say which command
        if not exc.message.startswith(f"{command}:"):
            exc.message = f"{command}: {exc.message}"
        raise
    if reply.startswith("refused"):  # the safety envelope's answer to an operator action
        raise ProbepilotError(f"{command}: {reply}")
    click.echo(f"{command}: {reply}")


def _command_arguments(command: str, arguments: tuple[str, ...]) -> dict[str, Any]:
    """The arguments of an operator command from the command line, checked and converted
    (quantities to SI floats) before anything is sent."""
    spec = OPERATOR_COMMANDS[command]
    if not arguments:
        if spec is not None and command != "stop":
            raise ConfigError(f"{command} needs a {spec[0]}", source="command line", key="ARGUMENT")
        return {}
    if spec is None or len(arguments) > 1:
        takes = "no argument" if spec is None else f"one argument, its {spec[0]}"
        raise ConfigError(
            f"{command} takes {takes}", source="command line", key="ARGUMENT", value=arguments
        )
    name, unit, allowed = spec
    text = arguments[0]
    key, sep, value = text.partition("=")
    if not sep:
        key, value = name, text
    elif key != name:
        raise ConfigError(
            f"{command} takes no argument {key!r}",
            source="command line",
            key="ARGUMENT",
            expected=f"{name}=VALUE or the value alone",
        )
    if allowed and value not in allowed:
        raise ConfigError(
            f"{value!r} is not a {name} of {command}",
            source="command line",
            key=name,
            expected=" or ".join(allowed),
        )
    if unit is None:
        if not value:
            raise ConfigError(f"{command}: empty {name}", source="command line", key=name)
        return {name: value}
    from probepilot.units import UnitError, parse_quantity

    try:
        return {name: parse_quantity(value, unit)}
    except UnitError as exc:
        raise ConfigError(str(exc), source="command line", key=name, value=value) from None


# --------------------------------------------------------------------------------------------
# keys


@click.group()
def keys() -> None:
    """CurveZMQ keys for a driver host or a published run on a lab network."""


@keys.command("generate")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--name",
    default="server",
    show_default=True,
    help="Key pair name: 'server' for a host or run, anything else for a client.",
)
def keys_generate(folder: Path, name: str) -> None:
    """Write a key pair FOLDER/NAME.key (public) and FOLDER/NAME.key_secret."""
    from probepilot.bus.keys import AUTHORIZED, SERVER, generate

    public, secret = generate(folder, name)
    click.echo(f"wrote {public} (public) and {secret} (secret: keep it on this machine)")
    if name == SERVER:
        (folder / AUTHORIZED).mkdir(exist_ok=True)
        click.echo(
            f"next: put each client's public NAME.key into {folder / AUTHORIZED}/, give "
            f"{public.name} to the clients, and start the server with --curve-keys {folder}"
        )
    else:
        click.echo(
            f"next: copy {public.name} into the server's authorized/ folder; use {secret} as "
            "client_key (remote driver) or --client-key (watch)"
        )


COMMANDS = (serve, watch, send, keys)
