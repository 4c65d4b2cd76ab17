"""Three processes on 127.0.0.1, as in a lab split across machines: ``probepilot serve`` hosting
the simulator, ``probepilot run`` driving it through ``driver = "remote"`` and publishing its
stream, ``probepilot watch --headless`` receiving every frame; and a driver host killed and
restarted in the middle of a run, which recovers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from probepilot.store.runsummary import summarise_run

pytestmark = pytest.mark.timeout(90)


def free_port_pair() -> int:
    """A port p with p and p + 1 free (the services bind both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


class Proc:
    """A probepilot subprocess whose output lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "probepilot.cli", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0, *, stream: str = "any") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = {"out": self.out, "err": self.err, "any": self.out + self.err}[stream]
            if any(text in line for line in lines):
                return
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the readers finish
                lines = self.out + self.err
                if any(text in line for line in lines):
                    return
                pytest.fail(f"exited ({self.popen.returncode}) before {text!r}: {self.log()}")
            time.sleep(0.02)
        pytest.fail(f"no {text!r} within {timeout} s: {self.log()}")

    def finish(self, timeout: float = 60.0) -> int:
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def log(self) -> str:
        return "\n".join(["--- stdout", *self.out[-20:], "--- stderr", *self.err[-20:]])


@contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()


def write_configs(tmp_path: Path, host_port: int, *, time_scale: float) -> Path:
    (tmp_path / "host.toml").write_text(
        f"[drivers.sim]\nseed = 4\ntip = 'good'\ntime_scale = {time_scale}\n", encoding="utf-8"
    )
    run = tmp_path / "run.toml"
    # No analyzers: this tests the transport and the session's recovery, not the analysis.
    run.write_text(
        'driver = "remote"\n'
        "analyzers = []\n"
        "[drivers.remote]\n"
        f'address = "tcp://127.0.0.1:{host_port}"\n'
        'timeout = "2 s"\n'
        'heartbeat = "0.2 s"\n'
        "[run]\n"
        'folder = "runs"\n'
        "pixels = 32\n"
        'line_time = "25 ms"\n'
        "retries = 12\n"
        'retry_backoff = "0.2 s"\n',
        encoding="utf-8",
    )
    return run


def serve(tmp_path: Path, port: int) -> Proc:
    host = Proc(
        "serve", "--driver", "sim", "--config", "host.toml",
        "--bind", f"tcp://127.0.0.1:{port}", "--client-timeout", "2 s",
        cwd=tmp_path,
    )  # fmt: skip
    host.wait_for("serving driver 'sim'", stream="out")
    return host


def run_folder(run: Proc) -> Path:
    line = next(line for line in run.out if line.startswith("run "))
    return Path(line.split(": ", 1)[1].strip())


def test_three_processes_a_host_a_run_and_a_watcher_that_gets_every_frame(
    tmp_path: Path,
) -> None:
    host_port, run_port = free_port_pair(), free_port_pair()
    write_configs(tmp_path, host_port, time_scale=2.0)
    frames = 3
    with processes() as started:
        # The watcher first: it waits for the run, and so sees it from its first frame.
        watcher = Proc(
            "watch", f"tcp://127.0.0.1:{run_port}", "--headless", "--timeout", "60 s",
            cwd=tmp_path,
        )  # fmt: skip
        started.append(watcher)
        started.append(serve(tmp_path, host_port))
        run = Proc(
            "run", "--headless", "--frames", str(frames), "--config", "run.toml",
            "--publish", f"tcp://127.0.0.1:{run_port}",
            cwd=tmp_path,
        )  # fmt: skip
        started.append(run)
        assert run.finish(60) == 0, run.log()
        assert watcher.finish(30) == 0, watcher.log()
    assert any("publishing the run on" in line for line in run.err)
    summary = summarise_run(run_folder(run))
    assert summary["outcome"] == "completed"
    assert summary["frames"] == {"count": frames, "complete": frames}
    assert summary["driver_errors"] == 0
    # Every frame reached the watcher, whole, and it saw the run end.
    frame_lines = [line for line in watcher.out if line.startswith("frame ")]
    assert [line.split(":")[0] for line in frame_lines] == [f"frame {i}" for i in range(1, 4)]
    assert all("32/32 lines" in line for line in frame_lines)
    assert watcher.out[0].startswith("attached to run ")
    assert watcher.out[-1] == f"run finished: completed ({frames} frames received)"
    events = [int(line.split()[1]) for line in watcher.out if line.startswith("event ")]
    assert events == list(range(events[0], events[0] + len(events)))  # in order, no gap
    assert any("event" in line and "run.finished" in line for line in watcher.out)


def test_the_run_recovers_when_the_driver_host_is_killed_and_restarted(tmp_path: Path) -> None:
    host_port = free_port_pair()
    write_configs(tmp_path, host_port, time_scale=4.0)
    frames = 5
    with processes() as started:
        host = serve(tmp_path, host_port)
        started.append(host)
        run = Proc(
            "run", "--headless", "--frames", str(frames), "--config", "run.toml", cwd=tmp_path
        )
        started.append(run)
        run.wait_for(f"frame 2/{frames}", stream="err")
        host.kill()  # SIGKILL mid-run: no goodbye, whatever was in flight is lost
        time.sleep(0.5)
        started.append(serve(tmp_path, host_port))  # back on the same address
        assert run.finish(60) == 0, run.log()
    summary = summarise_run(run_folder(run))
    assert summary["outcome"] == "completed"
    assert summary["frames"]["count"] == frames
    assert summary["driver_errors"] >= 1  # it noticed, backed off, reconnected, carried on
    assert any("driver error" in line for line in run.err)


def test_command_line_errors_are_one_line(
    tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    nothing = run_cli("watch", "tcp://127.0.0.1:9", "--headless", "--timeout", "0.3 s")
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("error: no run answers at tcp://127.0.0.1:9 within 0.3 s")
    bad = run_cli("serve", "--driver", "sim", "--bind", "http://example.org")
    assert bad.returncode == 2 and "is not a ZeroMQ tcp address" in bad.stderr
    remote = run_cli("serve", "--driver", "remote")
    assert remote.returncode == 2 and "cannot host the remote driver" in remote.stderr
    keys_alone = run_cli("run", "--headless", "--curve-keys", str(tmp_path))
    assert keys_alone.returncode == 2 and "--curve-keys goes with --publish" in keys_alone.stderr
    no_keys = run_cli("serve", "--driver", "sim", "--curve-keys", str(tmp_path))
    assert no_keys.returncode == 1 and "server.key_secret" in no_keys.stderr
