"""Time per 256 x 256 frame for every default analyzer together, on one core; one JSON line.

Frames come from the simulated microscope (a double tip on Au(111), drift, every kind of noise),
each analysed with the previous one as history, as a run does, so ``drift`` registers every
frame against its predecessor. The analyzers are built through the plugin manager from the
default configuration, exactly as a session builds them.

Figures: ``ms_per_frame`` (median over the frames, all default analyzers together; target 50),
``ms_by_analyzer`` (median per analyzer), ``frames``, ``target_ms``, ``meets_target``.

Run: ``.venv/bin/python benchmarks/bench_analyzers_speed.py``
"""

from __future__ import annotations

import os

# One core, as the target is stated: pin the BLAS pools before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from probepilot.config import load_config  # noqa: E402
from probepilot.model import Channel, Frame, ScanArea, ScanSettings  # noqa: E402
from probepilot_sim import tip as tips  # noqa: E402
from probepilot_sim.microscope import Microscope  # noqa: E402
from probepilot_sim.options import SimOptions  # noqa: E402

TARGET_MS = 50.0
FRAMES = 24


def frames(n: int) -> list[Frame]:
    scope = Microscope(SimOptions(seed=3, surface="au111", tip="good", feature_density=2.0))
    scope.apex = dataclasses.replace(
        tips.make_apex("double", np.random.default_rng(4)), change_rate=0
    )
    area = ScanArea((0.0, 0.0), (30e-9, 30e-9), 256, 256)
    settings = ScanSettings(area, 0.05)
    out = []
    for _ in range(n):
        plan = scope.plan_scan(settings)
        result = scope.render(plan)
        scope.commit(plan, area.lines, result)
        out.append(
            Frame(
                channels={"Z": Channel("Z", "m", result.z_forward, result.z_backward)},
                area=area,
                direction="down",
                bias=scope.bias,
                setpoint=scope.setpoint,
                line_time=settings.line_time,
                started_at=plan.start,
                finished_at=scope.clock,
                lines_done=area.lines,
                source="sim",
            )
        )
    return out


def main() -> None:
    config, manager = load_config(None)
    registry = manager.registry("analyzer")
    analyzers = [
        registry.get(name).factory(config.options("analyzer", name)) for name in config.analyzers
    ]
    data = frames(FRAMES + 2)
    per: dict[str, list[float]] = {a.name: [] for a in analyzers}
    totals = []
    for i, frame in enumerate(data):
        history = data[max(0, i - 8) : i]
        start = time.perf_counter()
        for analyzer in analyzers:
            t0 = time.perf_counter()
            analyzer.analyze(frame, history)
            per[analyzer.name].append(time.perf_counter() - t0)
        totals.append(time.perf_counter() - start)
    # The first two frames warm caches (imports, FFT plans) and have no drift reference.
    median_ms = 1e3 * statistics.median(totals[2:])
    print(
        json.dumps(
            {
                "benchmark": "analyzers_speed",
                "ms_per_frame": round(median_ms, 2),
                "ms_by_analyzer": {
                    name: round(1e3 * statistics.median(times[2:]), 2)
                    for name, times in per.items()
                },
                "analyzers": config.analyzers,
                "frame": "256x256 Z, forward and backward",
                "frames": FRAMES,
                "target_ms": TARGET_MS,
                "meets_target": median_ms <= TARGET_MS,
                "python": platform.python_version(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
