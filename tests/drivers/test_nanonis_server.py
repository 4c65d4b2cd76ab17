"""The virtual Nanonis itself: ports and connections sharing one instrument, scans that progress
line by line, saved files, the command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from nanonis_helpers import driver, raw_exchange, run, sim_factory, virtual_nanonis

from probepilot.errors import InstrumentError
from probepilot.model import LineProgress, ScanArea, ScanSettings
from probepilot.store import read_sxm
from probepilot_nanonis.cli import parse_ports
from probepilot_nanonis.connection import Connection
from probepilot_nanonis.server import NanonisServer


def test_ports_and_connections_share_one_instrument() -> None:
    with virtual_nanonis(ports=3) as server:
        a, b = driver(server), driver(server, ports=(server.ports[2],))

        async def body() -> None:
            await a.connect()
            await b.connect()
            extra = [Connection("127.0.0.1", server.ports[1]) for _ in range(3)]
            for conn in extra:
                await conn.open()
            await a.set_bias(-0.25)
            assert await b.get_bias() == -0.25
            # Several connections on one port, commands in flight at the same time.
            replies = await asyncio.gather(*(c.call("Bias.Get") for c in extra * 5))
            assert {r["bias"] for r in replies} == {-0.25}
            await b.set_tip_position(30e-9, 0.0)
            assert (await a.get_tip_position()).x == pytest.approx(30e-9)
            for conn in extra:
                await conn.close()
            await a.close()
            await b.close()

        run(body)


def test_a_server_on_the_drivers_own_event_loop_works_and_is_rarely_waited_for(
    tmp_path: Path,
) -> None:
    """The fast path blocks the loop briefly; a server on that same loop cannot answer then, so
    after a miss the connection backs off from trying (2, 4, 8 ... commands)."""
    factory = sim_factory()

    async def body() -> None:
        server = NanonisServer(factory(), ports=[0], save_dir=tmp_path)
        await server.start()
        conn = Connection("127.0.0.1", server.ports[0])
        await conn.open()
        for i in range(300):
            await conn.call("Bias.Set", {"bias": i / 1000})
            assert (await conn.call("Bias.Get"))["bias"] == pytest.approx(i / 1000)
        assert conn._misses <= 10  # about log2(600) attempts, each one a miss
        await conn.close()
        await server.close()

    run(body)


def test_a_grab_during_a_scan_returns_the_lines_so_far_and_nan_for_the_rest(
    tmp_path: Path,
) -> None:
    # 40 lines of 2 x 0.05 s simulated at 10x: 0.4 s of scanning.
    with virtual_nanonis(tmp_path, time_scale=10.0) as server:
        conn = Connection("127.0.0.1", server.ports[0])

        async def grab() -> np.ndarray:
            reply = await conn.call("Scan.FrameDataGrab", {"channel": 7, "direction": 1})
            return np.asarray(reply["data"], dtype=np.float64)

        def rows_done(data: np.ndarray) -> np.ndarray:
            return np.isfinite(data).all(axis=1)

        async def body() -> None:
            await conn.open()
            await conn.call("Scan.BufferSet", {"channels": [7], "pixels": 16, "lines": 40})
            speed = {"fwd_speed": 0, "bwd_speed": 0, "fwd_line_time": 0.05}
            speed.update(bwd_line_time=0.05, keep=2, ratio=1.0)
            await conn.call("Scan.SpeedSet", speed)
            for direction, first in ((0, 0), (1, 39)):  # down fills from the top, up from below
                await conn.call("Scan.Action", {"action": 0, "direction": direction})
                await asyncio.sleep(0.15)
                data = await grab()
                done = rows_done(data)
                assert 0 < done.sum() < 40
                assert done[first] and not done[39 - first]
                # One grab (the scan goes on between two): the lines not done are NaN.
                assert np.isnan(data[~done]).all()
                await asyncio.sleep(0.05)
                assert rows_done(await grab()).sum() > done.sum()  # it goes on meanwhile
                wait = await conn.call("Scan.WaitEndOfScan", {"timeout_ms": 5})
                assert wait == {"timed_out": 1, "path": ""}
                await conn.call("Scan.Action", {"action": 1, "direction": 0})
                assert (await conn.call("Scan.StatusGet"))["running"] == 0
                wait = await conn.call("Scan.WaitEndOfScan", {"timeout_ms": -1})
                assert wait == {"timed_out": 0, "path": ""}  # stopped: no file
            await conn.close()

        run(body)
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("direction", ["up", "down"])
def test_progress_arrives_line_by_line_and_frames_match_the_saved_file(
    tmp_path: Path, direction: str
) -> None:
    with virtual_nanonis(tmp_path, time_scale=4.0) as server:
        d = driver(server)
        settings = ScanSettings(ScanArea((0, 0), (8e-9, 6e-9), 32, 10), 0.02, direction)  # type: ignore[arg-type]
        seen: list[tuple[float, LineProgress]] = []

        async def body() -> None:
            await d.connect()
            frame = await d.scan(settings, lambda p: seen.append((time.perf_counter(), p)))
            assert frame.complete and frame.direction == direction
            saved = read_sxm(frame.metadata["nanonis_file"])  # type: ignore[arg-type]
            for name in ("Z", "Current"):
                assert np.array_equal(frame.channels[name].forward, saved.channels[name].forward)
                backward = frame.channels[name].backward
                assert backward is not None
                assert np.array_equal(backward, saved.channels[name].backward)
            await d.close()

        run(body)
        assert [p.index for _, p in seen] == list(range(10))
        # 10 ms per line: reports come spread over the scan, not all at the end.
        assert seen[-1][0] - seen[0][0] > 0.04


def test_a_scan_stopped_on_the_controller_returns_a_partial_frame() -> None:
    """An operator pressing stop on the controller: the driver hands back what was scanned."""
    with virtual_nanonis(time_scale=10.0) as server:
        d = driver(server)
        settings = ScanSettings(ScanArea((0, 0), (8e-9, 8e-9), 16, 40), 0.05, "up")
        operator = Connection("127.0.0.1", server.ports[1])

        async def stop_soon() -> None:
            await asyncio.sleep(0.15)
            await operator.call("Scan.Action", {"action": 1, "direction": 0})

        async def body() -> None:
            await d.connect()
            await operator.open()
            frame, _ = await asyncio.gather(d.scan(settings), stop_soon())
            assert 0 < frame.lines_done < 40 and not frame.complete
            z = frame.channels["Z"].forward
            assert np.isfinite(z[: frame.lines_done]).all()  # row 0 = first line scanned
            assert np.isnan(z[frame.lines_done :]).all()
            assert frame.metadata["nanonis_file"] == ""
            await operator.close()
            await d.close()

        run(body)


def test_actions_the_simulator_cannot_do_are_refused_and_go_to_centre_moves() -> None:
    with virtual_nanonis() as server:
        d = driver(server)

        async def body() -> None:
            await d.connect()
            frame = {"cx": 40e-9, "cy": -20e-9, "width": 1e-8, "height": 1e-8, "angle": 0.0}
            await d.call("Scan.FrameSet", frame)
            with pytest.raises(InstrumentError, match="pause"):
                await d.call("Scan.Action", {"action": 2, "direction": 0})
            await d.call("Scan.Action", {"action": 6, "direction": 0})
            pos = await d.get_tip_position()
            assert (pos.x, pos.y) == pytest.approx((40e-9, -20e-9), rel=1e-6)
            with pytest.raises(InstrumentError, match="piezo range"):
                await d.call("Scan.FrameSet", {**frame, "cx": 0.0, "width": 5e-6})
            with pytest.raises(InstrumentError, match="Z-controller is on"):
                await d.call("ZCtrl.ZPosSet", {"z": 1e-9})
            await d.close()

        run(body)


def test_a_short_frame_set_is_a_clear_error() -> None:
    with virtual_nanonis() as server:
        reply = raw_exchange(server.ports[0], b"Scan.FrameSet", b"\0" * 8)
        assert reply.endswith(b"needs 20 bytes at byte 0 but the body ends at byte 8")


# ---------------------------------------------------------------------- the command line


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "probepilot.cli", "sim-server", "nanonis", *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def test_the_sim_server_command_serves_until_stopped(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text('[drivers.sim]\nseed = 3\nbias = "0.5 V"\n', encoding="utf-8")
    proc, line = start(
        [
            *("--ports", "0,0", "--config", str(config), "--faults", "error:Bias.Set:nope"),
            *("--save-dir", str(tmp_path / "scans")),
        ],
        tmp_path,
    )
    try:
        found = re.search(r"127\.0\.0\.1 ports (\d+), (\d+); scans saved in (.+); Ctrl-C", line)
        assert found, line
        port = int(found.group(2))
        reply = raw_exchange(port, b"Bias.Get")
        assert reply[40:44] == bytes.fromhex("3f000000")  # 0.5 V from the config file
        assert reply[-8:] == bytes(8)
        assert reply[:8] == b"Bias.Get"
        failed = raw_exchange(port, b"Bias.Set", bytes(4))
        assert failed.endswith(b"nope")
    finally:
        proc.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_bad_command_line_options_are_reported(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_cli("sim-server", "nanonis", "--faults", "explode:Bias.Get")
    assert result.returncode == 2 and "unknown fault kind 'explode'" in result.stderr
    result = run_cli("sim-server", "nanonis", "--ports", "6501-9999")
    assert result.returncode == 2 and "at most 64 ports" in result.stderr
    assert parse_ports("6501-6504") == [6501, 6502, 6503, 6504]
    assert parse_ports("0,7000") == [0, 7000]
