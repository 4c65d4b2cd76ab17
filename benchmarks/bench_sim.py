"""How fast the simulated STM renders frames, on one core; prints one JSON line.

Figures:

- ``render_256_ms`` / ``render_64_ms``: median wall time to plan and render one frame of
  256 x 256 / 64 x 64 pixels, forward and backward, Z and Current, with a double tip, thermal
  drift (velocity and random walk), white, 1/f and line noise (targets: 50 ms and 2 ms);
- ``speedup_256_vs_realtime`` / ``speedup_64_vs_realtime``: how many times faster than the real
  instrument the driver delivers a whole frame at 1 s per line (``time_scale = 0``; the peer is
  the real instrument, which needs 2 x lines x 1 s), through the full async path with one
  progress callback per line.

Run: ``.venv/bin/python benchmarks/bench_sim.py``
"""

from __future__ import annotations

import os

# One core, as the targets are stated: pin the BLAS pools before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from probepilot.model import ScanArea, ScanSettings  # noqa: E402
from probepilot_sim import tip as tips  # noqa: E402
from probepilot_sim.driver import SimDriver  # noqa: E402
from probepilot_sim.microscope import Microscope  # noqa: E402
from probepilot_sim.options import SimOptions  # noqa: E402

SIZE = 30e-9  # frame side, m


def _microscope() -> Microscope:
    scope = Microscope(SimOptions(seed=0, tip="good"))  # default drift and noise on
    apex = tips.make_apex("double", np.random.default_rng(1))
    # No spontaneous tip changes: every repetition renders the same amount of work.
    scope.apex = dataclasses.replace(apex, change_rate=0.0)
    return scope


def render_ms(pixels: int, repeats: int) -> float:
    scope = _microscope()
    settings = ScanSettings(ScanArea((0.0, 0.0), (SIZE, SIZE), pixels, pixels), 0.1)
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        plan = scope.plan_scan(settings)
        result = scope.render(plan)
        times.append(time.perf_counter() - t0)
        scope.commit(plan, pixels, result)
    return 1e3 * statistics.median(times[2:])  # the first two warm caches up


def speedup(pixels: int, repeats: int) -> float:
    line_time = 1.0
    settings = ScanSettings(ScanArea((0.0, 0.0), (SIZE, SIZE), pixels, pixels), line_time)
    real = 2 * pixels * line_time  # forward and backward, one second each

    async def run() -> float:
        driver = SimDriver(SimOptions(seed=0, tip="double", time_scale=0.0))
        await driver.connect()
        lines = []
        await driver.scan(settings, lines.append)  # warm-up
        walls = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await driver.scan(settings, lines.append)
            walls.append(time.perf_counter() - t0)
        await driver.close()
        return statistics.median(walls)

    return real / asyncio.run(run())


def main() -> None:
    figures = {
        "benchmark": "sim",
        "render_256_ms": round(render_ms(256, 15), 2),
        "render_64_ms": round(render_ms(64, 60), 3),
        "target_256_ms": 50,
        "target_64_ms": 2,
        "speedup_256_vs_realtime": round(speedup(256, 5)),
        "speedup_64_vs_realtime": round(speedup(64, 20)),
        "peer": "real instrument at 1 s/line",
        "threads": 1,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
