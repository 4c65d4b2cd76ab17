"""Endurance: a long unattended campaign on the simulator, headless, with injected driver faults.

The simulated microscope has thermal drift and creep, spontaneous tip changes during scans (the
tip degrades by itself every hour or so), conditioning that damages the surface, and a piezo
range small enough that the region grid is used up and the run must make coarse moves. A
:class:`~probepilot.testing.faults.FaultyDriver` makes a fraction of driver calls time out or
lose the connection. The run must finish its simulated duration without a crash or a person.

Prints one JSON line: simulated hours, frames and frames per simulated hour, good-frame fraction
(the analyzers' verdict, as ``probepilot inspect`` reports it) and the true one (the simulator's
own tip state, which the run never sees), conditioning actions, coarse moves, faults injected
and recovered, resident memory over the run (flat means no leak), wall time, run folder.

    python benchmarks/bench_endurance.py --hours 24 --policy rules
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probepilot import events as ev
from probepilot.config import load_config, validate
from probepilot.events import Event
from probepilot.model import Finding, Frame
from probepilot.session import ScanLine, Session
from probepilot.store.runsummary import summarise_run
from probepilot.testing.faults import FaultyDriver


def rss_mb() -> float | None:
    """Resident memory of this process now (Linux), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class TruthRecorder:
    """Not an analyzer a run would use: it records the simulator's own tip state of each frame
    (ground truth the session never sees) and finds nothing."""

    name = "truth"

    def __init__(self) -> None:
        self.states: list[str] = []

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        self.states.append(str(frame.metadata.get("sim_tip_state", "unknown")))
        return []


def campaign(
    *,
    hours: float,
    policy: str,
    fault_rate: float,
    seed: int,
    pixels: int,
    piezo: str,
    folder: Path,
    analyzers: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    _, manager = load_config(None)
    raw: dict[str, Any] = {
        "policy": policy,
        "drivers": {"sim": {"seed": seed, "tip": "good", "piezo_range": [piezo, piezo, "200 nm"]}},
        # Back off briefly: the simulator needs no time to recover, only the logic is exercised.
        "run": {
            "folder": str(folder),
            "duration": hours * 3600,
            "pixels": pixels,
            "retry_backoff": 0.01,
        },
    }
    if analyzers is not None:
        raw["analyzers"] = list(analyzers)
    if policy in manager.registry("policy") and manager.registry("policy").get(policy).options:
        fields = manager.registry("policy").get(policy).options.__dataclass_fields__
        if "seed" in fields:
            raw["policies"] = {policy: {"seed": seed}}
    config = validate(raw, manager, source="bench_endurance", base_dir=folder)
    driver = FaultyDriver(config.build(manager, "driver", "sim"), fault_rate, seed=seed)
    session = Session(config, manager, driver=driver)  # type: ignore[arg-type]
    truth = TruthRecorder()
    session.analyzers.append(truth)
    memory: list[tuple[int, float]] = []
    started = time.monotonic()

    def watch(item: Event | ScanLine) -> None:
        if isinstance(item, ScanLine) or item.type != ev.FRAME_ANALYSED:
            return
        n = session.stats.analysed
        if n % 50 == 1:
            mb = rss_mb()
            if mb is not None:
                memory.append((n, mb))
        if progress and n % 100 == 0:
            s = session.stats
            print(
                f"{s.instrument_time / 3600:6.2f} h  frames {s.frames}  good "
                f"{s.good_fraction or 0:.0%}  conditioning {s.conditioning}  "
                f"coarse {s.coarse_moves}  faults {sum(driver.injected.values())}  "
                f"rss {memory[-1][1] if memory else 0:.0f} MB",
                file=sys.stderr,
            )

    session.subscribe(watch)
    outcome = asyncio.run(session.run())
    wall = time.monotonic() - started
    summary = summarise_run(session.folder)
    s = session.stats
    true_good = truth.states.count("good") / len(truth.states) if truth.states else None
    # Memory after warm-up (the first 10 % of frames fill caches) against the end.
    settled = [m for n, m in memory if n >= 0.1 * s.analysed] or [m for _, m in memory]
    return {
        "benchmark": "endurance",
        "policy": policy,
        "analyzers": list(config.analyzers),
        "outcome": outcome,
        "simulated_hours": round(s.instrument_time / 3600, 3),
        "frames": s.frames,
        "frames_per_simulated_hour": round(s.frames / (s.instrument_time / 3600), 1)
        if s.instrument_time
        else None,
        "good_frame_fraction": summary["good_frame_fraction"],
        "true_good_frame_fraction": true_good,
        "target_good_frame_fraction": 0.8,
        "conditioning_actions": s.conditioning,
        "recoveries": len(s.recoveries),
        "median_actions_to_recover": sorted(s.recoveries)[len(s.recoveries) // 2]
        if s.recoveries
        else None,
        "coarse_moves": s.coarse_moves,
        "crashes": s.crashes,
        "faults_injected": sum(driver.injected.values()),
        "driver_errors_journaled": summary["driver_errors"],
        "safety_rejections": s.rejected,
        "rss_mb_after_warmup": round(settled[0], 1) if settled else None,
        "rss_mb_end": round(memory[-1][1], 1) if memory else None,
        "wall_seconds": round(wall, 1),
        "run_folder": str(session.folder),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    parser.add_argument("--policy", default="rules")
    parser.add_argument("--faults", type=float, default=0.002, help="fault rate per call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pixels", type=int, default=128)
    parser.add_argument("--piezo", default="400 nm", help="scanner range in x and y")
    parser.add_argument(
        "--analyzers", default=None, help="comma-separated analyzers (default: the config's)"
    )
    parser.add_argument("--folder", type=Path, default=None, help="where the run folder goes")
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="probepilot-endurance-"))
    result = campaign(
        hours=args.hours,
        policy=args.policy,
        fault_rate=args.faults,
        seed=args.seed,
        pixels=args.pixels,
        piezo=args.piezo,
        folder=folder,
        analyzers=args.analyzers.split(",") if args.analyzers else None,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
