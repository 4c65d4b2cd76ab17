"""``probepilot run`` opens the dashboard on a terminal, and runs headless with a one-line note
when it cannot (no terminal, dashboard not installed); ``--headless`` says so explicitly."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from probepilot.store.journal import read_journal

CLI = Callable[..., subprocess.CompletedProcess[str]]


def test_off_a_terminal_the_run_goes_headless_and_says_why(run_cli: CLI, tmp_path: Path) -> None:
    result = run_cli("run", "--frames", "2")
    assert result.returncode == 0, result.stderr
    assert "the dashboard cannot open: not on a terminal; running headless" in result.stderr
    assert result.stdout.startswith("run completed: ")


def test_without_the_dashboard_plugin_the_run_goes_headless(run_cli: CLI) -> None:
    result = run_cli("run", "--frames", "1", env={"PROBEPILOT_DISABLE_PLUGINS": "dashboard"})
    assert result.returncode == 0, result.stderr
    assert "no dashboard installed (pip install 'probepilot[dashboard]'); running headless" in (
        result.stderr
    )


ESCAPES = re.compile(
    r"\x1b(\[[0-9;?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Z0-9]|[=>78])"
)


def _read_until(fd: int, done: Callable[[str], bool], timeout: float) -> str:
    """Read the terminal until ``done(text so far, escape sequences removed)``; that text."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            seen += chunk
        text = ESCAPES.sub("", seen.decode("utf-8", "replace"))
        if done(text):
            return text
    return ESCAPES.sub("", seen.decode("utf-8", "replace"))


def _finished(runs: Path) -> bool:
    journals = list(runs.glob("*/journal.msgpack"))
    if not journals:
        return False
    events = read_journal(journals[0]).events
    return bool(events) and events[-1].type == "run.finished"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_on_a_terminal_probepilot_run_opens_the_dashboard(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "probepilot.cli", "run", "--frames", "3"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    runs = tmp_path / "runs"
    try:
        # The run (three frames) ends by itself; the dashboard stays open on its last state.
        screen = _read_until(
            master,
            lambda text: "Pause/Resume" in text and "q quits" in text and _finished(runs),
            timeout=60,
        )
        assert "Live frame" in screen and "Run statistics" in screen, screen[-2000:]
        assert "Pause/Resume" in screen  # the footer lists the keys
        os.write(master, b"q")
        rest = _read_until(master, lambda text: "run completed: " in text, timeout=30)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert re.search(r"run completed: \S+", rest)
    [folder] = runs.iterdir()
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [
        f"frame-00000{i}.sxm" for i in (1, 2, 3)
    ]
