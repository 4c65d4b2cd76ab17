"""What ``probepilot inspect RUN`` says about a run folder, worked out from its journal.

It relies only on the event types of :mod:`probepilot.events` and the ``data`` keys listed
there: frames from ``frame.persisted``, verdicts from ``frame.analysed`` (a frame is good when
its ``tip_state`` is ``"good"``; a frame analysed twice counts with its last verdict), actions
from ``policy.decided`` / ``action.executed`` / ``safety.rejected`` (by the action's ``kind``),
time per state from consecutive ``session.state`` events (the last state lasts until the last
event). It also checks the folder against the journal: files the journal names that are
missing, data files nothing names (written just before a crash), temporary files a killed write
left behind.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probepilot import events as ev
from probepilot.events import Event
from probepilot.store.journal import JournalContents, read_journal
from probepilot.store.runfolder import CONFIG_FILE, FRAMES, GRIDS, JOURNAL_FILE, SPECTRA

__all__ = ["render_run", "summarise_run"]

_PERSISTED = {ev.FRAME_PERSISTED: FRAMES, ev.SPECTRUM_PERSISTED: SPECTRA, ev.GRID_PERSISTED: GRIDS}


def summarise_run(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The run in ``folder`` as plain data (JSON-ready, SI units, times as POSIX seconds).

    :raises FormatError: the journal cannot be read at all (a torn tail is reported, not raised).
    """
    path = Path(folder)
    journal = read_journal(path / JOURNAL_FILE)
    events = journal.events
    started = _first(events, ev.RUN_STARTED)
    finished = _first(events, ev.RUN_FINISHED)
    named = {
        kind: [str(e.data.get("file")) for e in events if e.type == t]
        for t, kind in _PERSISTED.items()
    }
    frames = [e for e in events if e.type == ev.FRAME_PERSISTED]
    verdicts = {
        str(e.data.get("frame")): str(e.data.get("tip_state"))
        for e in events
        if e.type == ev.FRAME_ANALYSED
    }
    tip_states = Counter(verdicts.values())
    first_time = events[0].time if events else math.nan
    last_time = events[-1].time if events else math.nan
    return {
        "run": str(path),
        "run_id": started.data.get("run_id") if started else path.name,
        "probepilot": started.data.get("probepilot") if started else None,
        "config": CONFIG_FILE if (path / CONFIG_FILE).is_file() else None,
        "started_at": _num(first_time),
        "last_event_at": _num(last_time),
        "duration": _num(last_time - first_time),
        "outcome": str(finished.data.get("outcome")) if finished else None,
        "journal": _journal(journal),
        "frames": {
            "count": len(frames),
            "complete": sum(bool(e.data.get("complete")) for e in frames),
        },
        "instrument_time": _instrument_time(frames),
        "frames_per_instrument_hour": _per_hour(len(frames), _instrument_time(frames)),
        "spectra": len(named[SPECTRA]),
        "grids": len(named[GRIDS]),
        "findings": {
            "frames_analysed": len(verdicts),
            "tip_states": dict(sorted(tip_states.items())),
            "kinds": dict(sorted(_finding_kinds(events).items())),
        },
        "good_frame_fraction": tip_states["good"] / len(verdicts) if verdicts else None,
        "actions": {
            "decided": _action_kinds(events, ev.POLICY_DECIDED),
            "executed": _action_kinds(events, ev.ACTION_EXECUTED),
            "rejected": _action_kinds(events, ev.SAFETY_REJECTED),
        },
        "driver_errors": sum(e.type == ev.DRIVER_ERROR for e in events),
        "plugin_errors": sum(e.type == ev.PLUGIN_ERROR for e in events),
        "operator_commands": dict(
            sorted(
                Counter(
                    str(e.data.get("command")) for e in events if e.type == ev.OPERATOR_COMMAND
                ).items()
            )
        ),
        "time_in_state": _time_in_state(events),
        "files": _files(path, named),
    }


def _instrument_time(frames: list[Event]) -> float | None:
    """Seconds of instrument time the frames span (their own timestamps: simulated time on the
    simulator, which runs faster than the wall clock)."""
    starts = [float(t) for e in frames if isinstance(t := e.data.get("started_at"), int | float)]
    ends = [float(t) for e in frames if isinstance(t := e.data.get("finished_at"), int | float)]
    if not starts or not ends:
        return None
    return _num(max(ends) - min(starts))


def _per_hour(count: int, seconds: float | None) -> float | None:
    return count / seconds * 3600 if seconds else None


def _first(events: list[Event], kind: str) -> Event | None:
    return next((e for e in events if e.type == kind), None)


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _journal(journal: JournalContents) -> dict[str, Any]:
    return {
        "events": len(journal.events),
        "bytes": journal.size,
        "last_seq": journal.events[-1].seq if journal.events else None,
        "intact": journal.intact,
        "tail": str(journal.tail) if journal.tail else None,
    }


def _finding_kinds(events: list[Event]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for e in events:
        if e.type == ev.FRAME_ANALYSED:
            for finding in e.data.get("findings") or []:
                if isinstance(finding, dict):
                    kinds[str(finding.get("kind"))] += 1
    return kinds


def _action_kinds(events: list[Event], kind: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for e in events:
        if e.type == kind:
            action = e.data.get("action")
            counts[str(action.get("kind")) if isinstance(action, dict) else "?"] += 1
    return dict(sorted(counts.items()))


def _time_in_state(events: list[Event]) -> dict[str, float]:
    """Seconds spent in each session state: from each ``session.state`` event to the next,
    the last one until the journal's last event."""
    spent: dict[str, float] = {}
    changes = [e for e in events if e.type == ev.STATE_CHANGED]
    if not changes:
        return spent
    ends = [e.time for e in changes[1:]] + [events[-1].time]
    for change, end in zip(changes, ends, strict=True):
        state = str(change.data.get("state"))
        spent[state] = spent.get(state, 0.0) + max(end - change.time, 0.0)
    return spent


def _files(path: Path, named: dict[str, list[str]]) -> dict[str, list[str]]:
    """The folder checked against the journal (paths relative to the run folder)."""
    missing = [f for files in named.values() for f in files if not (path / f).is_file()]
    known = {f for files in named.values() for f in files}
    unnamed: list[str] = []
    temporary: list[str] = []
    for sub in (FRAMES, SPECTRA, GRIDS, "."):
        folder = path / sub
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            relative = entry.relative_to(path).as_posix()
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                temporary.append(relative)
            elif sub != "." and entry.is_file() and relative not in known:
                unnamed.append(relative)
    return {"missing": missing, "not_in_journal": unnamed, "temporary": temporary}


# --------------------------------------------------------------------------------------------
# Text


def render_run(s: dict[str, Any]) -> str:
    """The run summary as text for a terminal."""
    j = s["journal"]
    outcome = s["outcome"] or "none recorded: the run was interrupted (or is still running)"
    frames = s["frames"]
    findings = s["findings"]
    fraction = s["good_frame_fraction"]
    lines = [
        f"run {s['run_id']}  ({s['run']})",
        f"  started    {_when(s['started_at'])}, lasted {_duration(s['duration'])}",
        f"  outcome    {outcome}",
        f"  journal    {j['events']} events, {j['bytes']} bytes"
        + ("" if j["intact"] else f"; after the last complete record: {j['tail']}"),
        f"  frames     {frames['count']} ({frames['complete']} complete); "
        f"spectra {s['spectra']}; grids {s['grids']}",
        f"  instrument {_duration(s['instrument_time'])} of frames"
        + (
            f", {s['frames_per_instrument_hour']:.1f} frames per hour"
            if s["frames_per_instrument_hour"]
            else ""
        ),
        f"  analysed   {findings['frames_analysed']} frames: {_counts(findings['tip_states'])}",
        "  good       "
        + (f"{fraction:.1%} of analysed frames" if fraction is not None else "- (none analysed)"),
        f"  findings   {_counts(findings['kinds'])}",
    ]
    for label, key in (("decided", "decided"), ("executed", "executed"), ("rejected", "rejected")):
        lines.append(f"  {label:<10} {_counts(s['actions'][key])}")
    lines.append(
        f"  errors     driver {s['driver_errors']}, plugin {s['plugin_errors']}; "
        f"operator commands: {_counts(s['operator_commands'])}"
    )
    if s["time_in_state"]:
        total = sum(s["time_in_state"].values()) or 1.0
        lines.append("  time in state")
        for state, seconds in sorted(s["time_in_state"].items(), key=lambda kv: -kv[1]):
            lines.append(f"    {state:<16} {_duration(seconds):>10}  {seconds / total:6.1%}")
    problems = s["files"]
    for key, what in (
        ("missing", "named in the journal but missing"),
        ("not_in_journal", "not named in the journal (written as the run stopped)"),
        ("temporary", "left over from an interrupted write"),
    ):
        if problems[key]:
            lines.append(f"  {len(problems[key])} file(s) {what}: {', '.join(problems[key][:5])}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02.0f}s"
    if minutes:
        return f"{minutes}m{secs:04.1f}s"
    return f"{secs:.2f}s"
