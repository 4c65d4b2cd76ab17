"""The run folder: layout, effective config, data files named by journal events, and the
summary ``probepilot inspect RUN`` prints, worked out from the journal."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from store_helpers import (
    assert_same_frame,
    assert_same_grid,
    assert_same_spectrum,
    synthetic_frame,
    synthetic_grid,
    synthetic_spectrum,
)

from probepilot import events as ev
from probepilot.config import load_config
from probepilot.events import Event
from probepilot.model import Finding, Pulse, TipState
from probepilot.store import read_3ds, read_dat, read_sxm
from probepilot.store.journal import JournalError, read_journal
from probepilot.store.runfolder import RunFolder, is_run_folder, new_run_id
from probepilot.store.runsummary import render_run, summarise_run


def test_run_ids_sort_by_utc_start_time_and_never_collide() -> None:
    run_id = new_run_id(1_700_000_000.0)
    assert re.fullmatch(r"20231114T221320Z-[0-9a-f]{8}", run_id)
    assert len({new_run_id(0.0) for _ in range(50)}) == 50


def test_a_run_folder_holds_config_journal_and_data_files(tmp_path: Path) -> None:
    config, _ = load_config(None)
    frame, spectrum, grid = synthetic_frame(), synthetic_spectrum(), synthetic_grid()
    with RunFolder.create(tmp_path / "runs", config) as run:
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", run.run_id)
        first = run.add_frame(frame)
        second = run.add_frame(synthetic_frame(lines_done=5, seed=9))
        dat = run.add_spectrum(spectrum)
        grid_event = run.add_grid(grid)
    folder = run.path
    assert is_run_folder(folder) and folder.parent == tmp_path / "runs"
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [
        "config.toml",
        "frames/frame-000001.sxm",
        "frames/frame-000002.sxm",
        "grids/grid-000001.3ds",
        "journal.msgpack",
        "spectra/spectrum-000001.dat",
    ]
    text = (folder / "config.toml").read_text()
    assert text.startswith(f"# effective configuration of run {run.run_id}, from <defaults>\n")
    assert tomllib.loads(text) == tomllib.loads(config.to_toml())
    assert_same_frame(read_sxm(folder / first.data["file"]), frame, metadata=False)
    assert_same_spectrum(read_dat(folder / dat.data["file"]), spectrum, metadata=False)
    assert_same_grid(read_3ds(folder / grid_event.data["file"]), grid, metadata=False)
    assert first.data["index"] == 1 and second.data["index"] == 2
    assert second.data["complete"] is False and second.data["lines_done"] == 5
    assert first.data["size"] == list(frame.area.size) and first.data["bias"] == frame.bias
    assert grid_event.data["shape"] == list(grid.shape)
    journal = read_journal(folder / "journal.msgpack")
    assert journal.intact
    assert [e.type for e in journal.events] == [
        ev.RUN_STARTED,
        ev.FRAME_PERSISTED,
        ev.FRAME_PERSISTED,
        ev.SPECTRUM_PERSISTED,
        ev.GRID_PERSISTED,
        ev.RUN_FINISHED,
    ]
    started = journal.events[0].data
    assert started["run_id"] == run.run_id and started["journal_version"] == 1
    assert (started["config"], started["driver"], started["policy"]) == (
        "config.toml",
        config.driver,
        config.policy,
    )
    assert journal.events[-1].data == {"outcome": "completed"}


def test_closing_records_the_outcome_once(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RunFolder.create(tmp_path) as run:
        raise RuntimeError("driver fell over")
    events = read_journal(run.path / "journal.msgpack").events
    assert events[-1].data == {"outcome": "failed: RuntimeError: driver fell over"}
    run.close("completed")  # idempotent: nothing more is written
    assert len(read_journal(run.path / "journal.msgpack").events) == len(events)
    with pytest.raises(JournalError, match="closed"):
        run.add_frame(synthetic_frame())


def test_an_existing_run_folder_is_never_reused(tmp_path: Path) -> None:
    RunFolder.create(tmp_path, run_id="same").close()
    with pytest.raises(JournalError, match="cannot create the run folder"):
        RunFolder.create(tmp_path, run_id="same")


def test_a_failed_write_names_no_file(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, run_id="r")
    bad = synthetic_frame()
    bad.channels = {}  # a .sxm needs a channel: the writer refuses
    with pytest.raises(ValueError, match="at least one channel"):
        run.add_frame(bad)
    run.close()
    summary = summarise_run(run.path)
    assert summary["frames"]["count"] == 0 and summary["files"]["temporary"] == []


def _scripted_run(folder: Path) -> RunFolder:
    """A run with known times: 10 s approach, frames, verdicts, actions, a rejection."""
    run = RunFolder.create(folder, run_id="scripted")

    def record(kind: str, data: dict[str, object], at: float) -> None:
        run.record(Event(kind, (run.journal.last_seq or 0) + 1, data, time=at))

    record(ev.STATE_CHANGED, {"state": "approach"}, 100.0)
    record(ev.STATE_CHANGED, {"state": "scan"}, 110.0)
    states = [TipState.GOOD, TipState.DOUBLE, TipState.GOOD, TipState.BLUNT]
    for k, state in enumerate(states):
        frame = run.add_frame(synthetic_frame(seed=k))
        findings = [Finding("toy", "tip_state", 0.8), Finding("toy", "drift", 0.5)]
        record(
            ev.FRAME_ANALYSED,
            {"frame": frame.data["file"], "tip_state": state, "findings": findings},
            111.0 + k,
        )
    record(ev.POLICY_DECIDED, {"action": Pulse(4.0, 0.2)}, 120.0)
    record(ev.SAFETY_REJECTED, {"action": Pulse(12.0, 0.2), "reasons": ["too high"]}, 121.0)
    record(ev.STATE_CHANGED, {"state": "condition"}, 130.0)
    record(ev.ACTION_EXECUTED, {"action": Pulse(4.0, 0.2), "source": "policy"}, 131.0)
    record(ev.OPERATOR_COMMAND, {"command": "pause"}, 132.0)
    record(ev.DRIVER_ERROR, {"error": "DriverTimeoutError", "message": "x"}, 133.0)
    record(ev.STATE_CHANGED, {"state": "scan"}, 135.0)
    record(ev.RUN_FINISHED, {"outcome": "stopped"}, 140.0)
    run.journal.close()
    return run


def test_the_run_summary_comes_from_the_journal(tmp_path: Path) -> None:
    run = _scripted_run(tmp_path)
    (run.path / "frames" / ".frame-000009.sxm.123.tmp").write_bytes(b"half")
    (run.path / "frames" / "frame-000005.sxm").write_bytes(b"unnamed")
    (run.path / "frames" / "frame-000002.sxm").unlink()
    s = summarise_run(run.path)
    assert s["run_id"] == "scripted" and s["outcome"] == "stopped"
    assert s["frames"] == {"count": 4, "complete": 4}
    assert s["findings"] == {
        "frames_analysed": 4,
        "tip_states": {"blunt": 1, "double": 1, "good": 2},
        "kinds": {"drift": 4, "tip_state": 4},
    }
    assert s["good_frame_fraction"] == 0.5
    assert s["actions"] == {
        "decided": {"pulse": 1},
        "executed": {"pulse": 1},
        "rejected": {"pulse": 1},
    }
    assert (s["driver_errors"], s["operator_commands"]) == (1, {"pause": 1})
    assert s["time_in_state"] == {"approach": 10.0, "scan": 20.0 + 5.0, "condition": 5.0}
    assert s["files"] == {
        "missing": ["frames/frame-000002.sxm"],
        "not_in_journal": ["frames/frame-000005.sxm"],
        "temporary": ["frames/.frame-000009.sxm.123.tmp"],
    }
    assert s["journal"]["intact"]
    text = render_run(s)
    for expected in (
        "run scripted",
        "outcome    stopped",
        "good       50.0% of analysed frames",
        "scan",
        "1 file(s) named in the journal but missing: frames/frame-000002.sxm",
    ):
        assert expected in text


def test_an_interrupted_run_says_so(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, run_id="cut")
    run.add_frame(synthetic_frame())
    run.journal.sync()
    journal = run.path / "journal.msgpack"
    data = journal.read_bytes()
    journal.write_bytes(data + data[-7:-2])  # as if killed mid-record
    s = summarise_run(run.path)
    assert s["outcome"] is None and not s["journal"]["intact"]
    assert "cut short" in s["journal"]["tail"]
    assert "the run was interrupted" in render_run(s)
    run.journal.close()
