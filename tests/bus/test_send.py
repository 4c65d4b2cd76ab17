"""Steering a published run without the dashboard: ``probepilot send`` against a real run on
127.0.0.1 (published through ``[run] publish``), its argument checks and its one-line errors,
CurveZMQ keys, and the ``[run] publish`` config key itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from probepilot.bus.cli import OPERATOR_COMMANDS
from probepilot.bus.keys import client_keys, generate, server_keys
from probepilot.bus.publisher import StreamPublisher
from probepilot.bus.watcher import send_command
from probepilot.config import load_config
from probepilot.errors import ConfigError, ProbepilotError, RemoteError
from probepilot.session import COMMANDS
from probepilot.store.runsummary import summarise_run

from .test_end_to_end import Proc, free_port_pair, processes, run_folder

pytestmark = pytest.mark.timeout(90)

CLI = Callable[..., subprocess.CompletedProcess[str]]


def test_the_command_line_knows_every_operator_command_of_the_session() -> None:
    assert tuple(OPERATOR_COMMANDS) == COMMANDS


def test_run_publish_is_read_from_the_config_and_checked(tmp_path: Path, run_cli: CLI) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[run]\npublish = "tcp://127.0.0.1:5580"\n', encoding="utf-8")
    cfg, _ = load_config(good)
    assert cfg.run.publish == "tcp://127.0.0.1:5580"
    assert load_config(None)[0].run.publish is None  # not published unless asked
    for bad_value in ("http://example.org", "tcp://127.0.0.1", "tcp://host:99999", ""):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'[run]\npublish = "{bad_value}"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=r"run\.publish: .* is not a ZeroMQ tcp address"):
            load_config(bad)
    bad.write_text("[run]\npublish = 5580\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"run\.publish"):
        load_config(bad)
    checked = run_cli("config", "check", str(bad))
    assert checked.returncode == 2
    assert checked.stderr.count("\n") == 1 and "run.publish" in checked.stderr


def test_send_steers_a_run_published_through_the_config(tmp_path: Path, run_cli: CLI) -> None:
    port = free_port_pair()
    address = f"tcp://127.0.0.1:{port}"
    (tmp_path / "run.toml").write_text(
        "analyzers = []\n"
        "[drivers.sim]\nseed = 3\ntime_scale = 4.0\n"
        f'[run]\nfolder = "runs"\npixels = 32\nline_time = "25 ms"\npublish = "{address}"\n',
        encoding="utf-8",
    )
    with processes() as started:
        # No --publish and no frame limit: the config publishes it, and only `send` ends it.
        run = Proc("run", "--headless", "--config", "run.toml", cwd=tmp_path)
        started.append(run)
        run.wait_for(f"publishing the run on {address}", stream="err")

        def send(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli("send", address, *args, "--timeout", "20 s")

        paused = send("pause")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout == "pause: pausing after the current frame\n"
        assert send("resume").stdout == "resume: resumed\n"
        bias = send("set_bias", "-250mV")  # a negative value is an argument, not an option
        assert (bias.returncode, bias.stdout) == (0, "set_bias: done: bias\n"), bias.stderr
        setpoint = send("set_setpoint", "current=50 pA")
        assert setpoint.stdout == "set_setpoint: done: setpoint\n", setpoint.stderr
        # Refusals: by the safety envelope, and by the run itself. One line, status 1.
        refused = send("set_bias", "50 V")
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr == "error: set_bias: refused by the safety envelope\n"
        unknown = send("switch_policy", "nosuch")
        assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
        assert unknown.stderr.startswith("error: switch_policy: ") and "nosuch" in unknown.stderr
        switched = send("switch_policy", "name=random")
        assert switched.stdout == "switch_policy: policy is now 'random'\n", switched.stderr
        stopped = send("stop")
        assert stopped.stdout == "stop: stopping after the current frame\n", stopped.stderr
        assert run.finish(60) == 0, run.log()
    assert run.out[-1].startswith("run stopped: ")
    summary = summarise_run(run_folder(run))
    assert summary["outcome"] == "stopped"
    assert summary["operator_commands"] == {
        "pause": 1,
        "resume": 1,
        "set_bias": 2,
        "set_setpoint": 1,
        "stop": 1,
        "switch_policy": 2,
    }
    assert summary["actions"]["rejected"].get("bias") == 1  # the 50 V asked for


def test_send_fails_in_one_line_without_a_run_or_with_bad_arguments(run_cli: CLI) -> None:
    nothing = run_cli("send", "tcp://127.0.0.1:9", "pause", "--timeout", "0.3 s")
    assert nothing.returncode == 1 and nothing.stderr.count("\n") == 1
    assert nothing.stderr.startswith(
        "error: pause: no reply from the run at tcp://127.0.0.1:9 within 0.3 s"
    )
    for args, problem in [
        (("pause", "now"), "pause takes no argument"),
        (("stop", "sideways"), "'sideways' is not a mode of stop; expected finish or abort"),
        (("set_bias",), "set_bias needs a voltage"),
        (("set_bias", "5 nA"), "voltage"),
        (("set_bias", "current=5 nA"), "set_bias takes no argument 'current'"),
        (("set_bias", "1 V", "2 V"), "takes one argument, its voltage"),
    ]:
        bad = run_cli("send", "tcp://127.0.0.1:9", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.count("\n") == 1 and problem in bad.stderr, (args, bad.stderr)
    address = run_cli("send", "http://example.org", "pause")
    assert address.returncode == 2 and "is not a ZeroMQ tcp address" in address.stderr
    command = run_cli("send", "tcp://127.0.0.1:9", "launch")
    assert command.returncode == 2 and "launch" in command.stderr


class Run:
    """What the publisher needs of a run, answering commands as a session does."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        return lambda: None

    def snapshot(self) -> dict[str, Any]:
        return {"state": "image"}

    async def command(self, name: str, /, **args: Any) -> str:
        if name == "stop" and args.get("mode") not in (None, "finish", "abort"):
            raise ProbepilotError(f"stop: mode {args['mode']!r} is not 'finish' or 'abort'")
        self.commands.append((name, args))
        return f"did {name}"


def test_send_command_respects_curve_keys(tmp_path: Path) -> None:
    generate(tmp_path / "keys", "server")
    for name in ("alice", "mallory"):
        generate(tmp_path / name, name)
    (tmp_path / "keys" / "authorized").mkdir()
    shutil.copy(tmp_path / "alice" / "alice.key", tmp_path / "keys" / "authorized")
    server = tmp_path / "keys" / "server.key"
    alice = client_keys(server, tmp_path / "alice" / "alice.key_secret")
    mallory = client_keys(server, tmp_path / "mallory" / "mallory.key_secret")
    run = Run()

    async def main() -> None:
        publisher = StreamPublisher("tcp://127.0.0.1:0", keys=server_keys(tmp_path / "keys"))
        await publisher.start(run)
        try:

            def send(**options: Any) -> str:
                return send_command(publisher.address, "stop", {"mode": "abort"}, **options)

            assert await asyncio.to_thread(send, keys=alice, timeout=10) == "did stop"
            for intruder in (mallory, None):  # a key not on the allow-list, and no key
                with pytest.raises(RemoteError, match="no reply from the run"):
                    await asyncio.to_thread(send, keys=intruder, timeout=0.5)
            with pytest.raises(ProbepilotError, match="'sideways' is not 'finish' or 'abort'"):
                await asyncio.to_thread(
                    send_command, publisher.address, "stop", {"mode": "sideways"}, keys=alice
                )
        finally:
            await publisher.close(drain=0)

    asyncio.run(main())
    assert run.commands == [("stop", {"mode": "abort"})]  # only alice's command got through
