"""The command line as a user meets it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from probepilot import __version__

CLI = Callable[..., subprocess.CompletedProcess[str]]


def test_version(run_cli: CLI) -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout == f"probepilot {__version__}\n"


def test_help_lists_core_commands(run_cli: CLI) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("config", "plugins", "version"):
        assert f"  {command} " in result.stdout


def test_unknown_command_is_one_line_and_status_2(run_cli: CLI) -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_json_is_machine_readable(run_cli: CLI) -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert set(plugins["policies"]) == {
        "name",
        "module",
        "distribution",
        "version",
        "kinds",
        "provides",
        "hooks",
        "error",
        "disabled",
    }
    assert plugins["policies"]["kinds"] == ["policy"]
    assert plugins["sim"]["kinds"] == ["driver"]
