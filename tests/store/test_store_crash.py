"""The run folder survives SIGKILL at any moment (DESIGN.md §7, issue 4): a writer process is
killed at random moments many times, and each time every frame and spectrum the journal names
reads back exactly as written, and the journal parses up to its last complete record."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from crash_writer import frame_for, spectrum_for
from store_helpers import assert_same_frame, assert_same_spectrum

from probepilot.events import (
    FRAME_ANALYSED,
    FRAME_PERSISTED,
    RUN_FINISHED,
    RUN_STARTED,
    SPECTRUM_PERSISTED,
)
from probepilot.store import read_dat, read_sxm
from probepilot.store.journal import read_journal
from probepilot.store.runfolder import JOURNAL_FILE
from probepilot.store.runsummary import summarise_run

WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = 40
PARALLEL = 2


def _kill_one(root: Path, number: int, delay: float) -> Path:
    """Start a writer, let it write for ``delay`` seconds after it is ready, SIGKILL it."""
    run_id = f"run-{number:03d}"
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.strip() == "ready", process.stderr.read() if process.stderr else ready
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL, "the writer stopped on its own"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return root / run_id


def _check(folder: Path) -> dict[str, int]:
    """Everything the journal names is complete; returns what the kill left behind."""
    journal = read_journal(folder / JOURNAL_FILE)  # never raises for a torn tail
    events = journal.events
    assert events and events[0].type == RUN_STARTED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.type != RUN_FINISHED for e in events)
    frames = [e for e in events if e.type == FRAME_PERSISTED]
    for event in frames:
        written = read_sxm(folder / event.data["file"])
        assert_same_frame(frame_for(event.data["index"]), written, metadata=False)
    for event in (e for e in events if e.type == SPECTRUM_PERSISTED):
        written = read_dat(folder / event.data["file"])
        assert_same_spectrum(spectrum_for(event.data["index"]), written, metadata=False)
    named = {e.data["file"] for e in frames}
    assert all(e.data["frame"] in named for e in events if e.type == FRAME_ANALYSED)
    files = summarise_run(folder)["files"]
    assert files["missing"] == []
    # A kill mid-write may leave one temporary file or one finished file the journal has not
    # named yet per kind of data, never more.
    assert len(files["temporary"]) <= 2 and len(files["not_in_journal"]) <= 2
    return {
        "frames": len(frames),
        "torn": int(not journal.intact),
        "temporary": len(files["temporary"]),
        "unnamed": len(files["not_in_journal"]),
    }


def test_sigkill_at_random_moments_never_loses_a_named_frame(tmp_path: Path) -> None:
    rng = random.Random(20250114)
    delays = [rng.uniform(0.0, 0.25) for _ in range(KILLS)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        folders = list(pool.map(lambda a: _kill_one(tmp_path, *a), enumerate(delays)))
    totals: dict[str, int] = {}
    for folder in folders:
        for key, value in _check(folder).items():
            totals[key] = totals.get(key, 0) + value
    print(f"{KILLS} kills: {totals}")  # shown with -s: how often a kill hit a write
    assert totals["frames"] > KILLS  # the writers did get to write
