"""The Nanonis driver against the independent client ``nanonisTCP``, same virtual Nanonis, same
run; prints one JSON line.

The virtual Nanonis (``probepilot sim-server nanonis``) runs in its own process, as a controller
would; both clients run in this process, taking turns in blocks so that background load hits
both alike.

Figures:

- ``bias_get_us``: median round trip of ``Bias.Get`` over 2,000 calls each, for the probepilot
  driver (``await driver.get_bias()``) and for ``nanonisTCP`` (``Bias.Get()``, its default
  200-byte receive buffer, its fastest setting for small replies); ``latency_ratio`` = probepilot
  / nanonisTCP (target <= 1.0).
- ``grab_1024_ms``: median time to grab one 1024 x 1024 float32 channel (``Scan.FrameDataGrab``)
  into a float64 numpy array, for probepilot (``driver.frame_data``, 10 grabs) and nanonisTCP
  (``Scan.FrameDataGrab``, 3 grabs, with ``max_buf_size`` at 8 MiB as its docs advise, "just
  make it big"; its default of 200 bytes makes a grab quadratic); ``grab_speedup`` = nanonisTCP /
  probepilot (target >= 20) and ``grab_mb_per_s`` for probepilot (4 MiB of data per grab,
  target >= 300). Both grabs are checked to return the same values.

Run: ``.venv/bin/python benchmarks/bench_nanonis.py``
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from nanonisTCP import nanonisTCP
from nanonisTCP.Bias import Bias
from nanonisTCP.Scan import Scan

from probepilot.model import ScanArea, ScanSettings
from probepilot_nanonis.driver import NanonisDriver
from probepilot_nanonis.options import NanonisOptions

CALLS = 2000
BLOCK = 250
PIXELS = 1024


def start_server(save_dir: str) -> tuple[subprocess.Popen[str], list[int]]:
    command = [sys.executable, "-m", "probepilot.cli", "sim-server", "nanonis"]
    command += ["--ports", "0,0,0", "--save-dir", save_dir]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"ports ([\d, ]+);", line)
    if found is None:
        proc.kill()
        raise SystemExit(f"the virtual Nanonis did not start: {line!r}")
    return proc, [int(p) for p in found.group(1).split(",")]


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


async def timed_async(driver: NanonisDriver, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await driver.get_bias()
        out.append(time.perf_counter() - t0)
    return out


async def measure(ports: list[int]) -> dict[str, object]:
    driver = NanonisDriver(NanonisOptions(ports=(ports[0], ports[1]), timeout=60.0))
    await driver.connect()
    # A 1024 x 1024 frame in the controller's buffer (the simulator renders it at full speed).
    area = ScanArea((0.0, 0.0), (100e-9, 100e-9), PIXELS, PIXELS)
    frame = await driver.scan(ScanSettings(area, 0.1, "down", ("Z",)))
    assert frame.complete
    z_index = driver.signal_index("Z")

    small = nanonisTCP("127.0.0.1", ports[2])  # defaults, as shipped
    bias = Bias(small)
    ours: list[float] = []
    theirs: list[float] = []
    await timed_async(driver, 200)  # warm up both
    timed(bias.Get, 200)
    for _ in range(CALLS // BLOCK):
        ours += await timed_async(driver, BLOCK)
        theirs += timed(bias.Get, BLOCK)
    small.close_connection()

    grabs_ours: list[float] = []
    for _ in range(10):
        t0 = time.perf_counter()
        data, _ = await driver.frame_data(z_index, forward=True)
        grabs_ours.append(time.perf_counter() - t0)
    big = nanonisTCP("127.0.0.1", ports[2], max_buf_size=1 << 23)
    scan = Scan(big)
    grabs_theirs: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        _, their_data, _ = scan.FrameDataGrab(z_index, 1)
        grabs_theirs.append(time.perf_counter() - t0)
    big.close_connection()
    await driver.close()
    assert np.array_equal(data, their_data), "the two clients grabbed different data"

    latency = {"probepilot": statistics.median(ours), "nanonisTCP": statistics.median(theirs)}
    grab = {"probepilot": statistics.median(grabs_ours), "nanonisTCP": min(grabs_theirs)}
    megabytes = PIXELS * PIXELS * 4 / 1e6
    return {
        "bench": "nanonis",
        "bias_get_us": {k: round(v * 1e6, 1) for k, v in latency.items()},
        "latency_ratio": round(latency["probepilot"] / latency["nanonisTCP"], 3),
        "grab_1024_ms": {k: round(v * 1e3, 2) for k, v in grab.items()},
        "grab_speedup": round(grab["nanonisTCP"] / grab["probepilot"], 1),
        "grab_mb_per_s": round(megabytes / grab["probepilot"], 1),
        "targets_met": {
            "latency": latency["probepilot"] <= latency["nanonisTCP"],
            "grab_speedup": grab["nanonisTCP"] / grab["probepilot"] >= 20,
            "grab_mb_per_s": megabytes / grab["probepilot"] >= 300,
        },
        "calls": CALLS,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-nanonis-") as save_dir:
        proc, ports = start_server(save_dir)
        try:
            result = asyncio.run(measure(ports))
        finally:
            proc.terminate()
            proc.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
