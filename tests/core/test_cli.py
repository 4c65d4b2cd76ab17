"""The command line as a user meets it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from probepilot import __version__
from probepilot.store.runsummary import summarise_run

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


def test_run_with_no_config_runs_the_simulator_headless(run_cli: CLI, tmp_path: Path) -> None:
    result = run_cli("run", "--headless", "--frames", "3")
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.removeprefix("run completed: ").strip())
    assert folder.parent == tmp_path / "runs"  # [run] folder, relative to the working dir
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [
        f"frame-00000{i}.sxm" for i in (1, 2, 3)
    ]
    assert "frame 3/3" in result.stderr
    inspected = run_cli("inspect", str(folder))
    assert "outcome    completed" in inspected.stdout
    assert "frames     3 (3 complete)" in inspected.stdout


def test_run_stops_after_a_duration_of_instrument_time(run_cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "short.toml").write_text('[run]\npixels = 32\nline_time = "0.1 s"\n')
    # 32 lines x 2 directions x 0.1 s = 6.4 s of simulated time per frame.
    result = run_cli("run", "--headless", "--duration", "15 s", "--config", "short.toml")
    assert result.returncode == 0, result.stderr
    assert "frame 3 " in result.stderr and "frame 4 " not in result.stderr


def test_run_rejects_bad_arguments_in_one_line(run_cli: CLI) -> None:
    both = run_cli("run", "--headless", "--frames", "2", "--duration", "1 h")
    assert both.returncode == 2 and "give --frames or --duration, not both" in both.stderr
    bad = run_cli("run", "--headless", "--duration", "soon")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "--duration" in bad.stderr


def test_ctrl_c_stops_a_run_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "probepilot.cli", "run", "--headless"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("runs/*/frames/frame-000002.sxm")):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.startswith("run stopped: ")
    folder = Path(out.removeprefix("run stopped: ").strip())
    summary = summarise_run(folder)
    assert summary["outcome"] == "stopped" and summary["journal"]["intact"]
    assert summary["files"]["missing"] == [] and summary["files"]["temporary"] == []
