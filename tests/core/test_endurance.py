"""A short endurance campaign: simulated hours with drift, tip degradation, coarse moves and
injected driver faults finish without a crash or a person (benchmarks/bench_endurance.py runs
the 24-hour one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from probepilot.store.runsummary import summarise_run

REPO = Path(__file__).resolve().parents[2]


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_endurance", REPO / "benchmarks" / "bench_endurance.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulated_hours_with_faults_and_coarse_moves(tmp_path: Path) -> None:
    result = bench().campaign(
        hours=0.5,
        policy="random",
        fault_rate=0.05,
        seed=5,
        pixels=64,
        piezo="100 nm",
        folder=tmp_path,
        progress=False,
    )
    assert result["outcome"] == "completed"
    assert result["simulated_hours"] >= 0.5
    assert result["coarse_moves"] >= 1
    assert result["faults_injected"] >= 3
    # Every injected fault was journaled and recovered from.
    assert result["driver_errors_journaled"] == result["faults_injected"]
    summary = summarise_run(result["run_folder"])
    assert summary["outcome"] == "completed"
    assert summary["frames"]["count"] == result["frames"] == summary["frames"]["complete"]
    assert summary["files"] == {"missing": [], "not_in_journal": [], "temporary": []}
    assert "move_coarse" in summary["time_in_state"] and "recover" in summary["time_in_state"]
