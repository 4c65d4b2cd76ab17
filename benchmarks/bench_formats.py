"""Read every real ``.sxm`` with probepilot and with nanonispy2 in the same run; print one JSON
line: per-file best-of-N times, their ratio (target: probepilot at least as fast, ratio <= 1)
and whether the arrays are identical.

The two readers do not return the same thing: nanonispy2 returns the file's big-endian float32
images as they are stored (backward traces mirrored, phases in degrees); probepilot returns the
model's float64 SI arrays, backward traces un-mirrored. "Identical" means nanonispy2's arrays,
put through exactly that mapping, equal probepilot's bit for bit. ``nanonispy2_float64_s`` also
times nanonispy2 followed by that conversion, the like-for-like figure.

Usage: ``python benchmarks/bench_formats.py [--repeat N] [--data DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.store import read_sxm

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "stm-data"


def _nanonispy2_read(path: Path) -> dict[str, dict[str, np.ndarray]]:
    from nanonispy2.read import Scan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scan(str(path)).signals  # type: ignore[no-any-return]


def _as_model(signals: dict[str, dict[str, np.ndarray]], units: dict[str, str]) -> dict[str, Any]:
    """nanonispy2's raw images mapped as probepilot maps them: float64, un-mirrored, SI."""
    out = {}
    for name, traces in signals.items():
        factor = math.pi / 180 if units.get(name) == "rad" else 1.0
        forward = traces["forward"].astype(np.float64)
        backward = traces["backward"].astype(np.float64)[:, ::-1]
        if factor != 1.0:
            forward *= factor
            backward *= factor
        out[name] = (forward, backward)
    return out


def _seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _identical(path: Path) -> bool:
    frame = read_sxm(path)
    units = {name: channel.unit for name, channel in frame.channels.items()}
    mapped = _as_model(_nanonispy2_read(path), units)
    if list(mapped) != list(frame.channels):
        return False
    return all(
        np.array_equal(forward, frame.channels[name].forward, equal_nan=True)
        and np.array_equal(backward, frame.channels[name].backward, equal_nan=True)
        for name, (forward, backward) in mapped.items()
    )


def run(data: Path, repeat: int) -> dict[str, Any]:
    files = sorted(data.rglob("*.sxm"))
    if not files:
        return {"benchmark": "formats", "skipped": f"no .sxm files under {data}"}
    results = []
    for path in files:
        units = {name: channel.unit for name, channel in read_sxm(path).channels.items()}
        # interleave the readers so that both see the same machine state
        ours = theirs = theirs64 = math.inf
        for _ in range(repeat):
            ours = min(ours, _seconds(lambda p=path: read_sxm(p)))
            theirs = min(theirs, _seconds(lambda p=path: _nanonispy2_read(p)))
            theirs64 = min(
                theirs64, _seconds(lambda p=path, u=units: _as_model(_nanonispy2_read(p), u))
            )
        results.append(
            {
                "file": str(path.relative_to(data)),
                "bytes": path.stat().st_size,
                "probepilot_s": round(ours, 6),
                "nanonispy2_s": round(theirs, 6),
                "nanonispy2_float64_s": round(theirs64, 6),
                "ratio": round(ours / theirs, 3),
                "identical": _identical(path),
            }
        )
    total_ours = sum(r["probepilot_s"] for r in results)
    total_theirs = sum(r["nanonispy2_s"] for r in results)
    total_theirs64 = sum(r["nanonispy2_float64_s"] for r in results)
    return {
        "benchmark": "formats",
        "what": "read every real .sxm: probepilot vs nanonispy2, best of N, seconds",
        "files": results,
        "probepilot_s": round(total_ours, 6),
        "nanonispy2_s": round(total_theirs, 6),
        "nanonispy2_float64_s": round(total_theirs64, 6),
        "ratio": round(total_ours / total_theirs, 3),
        "ratio_vs_nanonispy2_float64": round(total_ours / total_theirs64, 3),
        "target": "ratio <= 1 (probepilot at least as fast)",
        "all_identical": all(r["identical"] for r in results),
        "repeat": repeat,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nanonispy2": metadata.version("nanonispy2"),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="reads per file and reader")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of real files")
    args = parser.parse_args(argv)
    try:
        import nanonispy2  # noqa: F401
    except ImportError:
        print(json.dumps({"benchmark": "formats", "skipped": "nanonispy2 is not installed"}))
        return 0
    print(json.dumps(run(args.data, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
