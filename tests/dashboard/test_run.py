"""The dashboard on real runs of the simulator: it hosts the run, steers it through the link,
and a slow dashboard does not slow the run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Static

from probepilot import events as ev
from probepilot.config import load_config
from probepilot.session import Session
from probepilot.store.journal import read_journal
from probepilot_dashboard.app import DashboardApp, PanelSlot, build_panels

from .conftest import SIZE, drive


def make_session(tmp_path: Path, frames: int | None, time_scale: float = 0.0) -> Session:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_file = tmp_path / "run.toml"
    config_file.write_text(
        "[run]\npixels = 32\nfolder = 'runs'\n"
        f"[drivers.sim]\nseed = 3\ntime_scale = {time_scale}\n",
        encoding="utf-8",
    )
    config, manager = load_config(config_file)
    return Session(config, manager, frames=frames)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def journal_types(session: Session) -> list[tuple[str, dict[str, Any]]]:
    contents = read_journal(session.folder / "journal.msgpack")
    return [(e.type, dict(e.data)) for e in contents.events]


def test_a_hosted_run_fills_every_panel_and_q_closes_after_it(tmp_path: Path) -> None:
    session = make_session(tmp_path, frames=3)
    app = DashboardApp(session, build_panels(session.manager, session.config), main=session.run)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.outcome is not None)
        await until(pilot, lambda: app.info.frames == 3 and app.info.outcome is not None)
        app.request_snapshot()
        await pilot.pause(0.2)
        panels = {s.name: s.panel for s in app.slots}
        assert not [s.name for s in app.slots if s.error]
        assert panels["frame"].live.number == 3 and panels["frame"].live.complete
        assert list(panels["history"].recent) == [1, 2, 3]
        assert len(panels["tip"].states) == 3
        assert panels["stats"].snapshot["stats"]["frames"] == 3
        assert panels["log"].events[-1].type == ev.RUN_FINISHED
        assert "run completed" in str(app.query_one("#status", Static).render())
        await pilot.press("q")

    drive(app, scenario)
    assert app.return_value == "completed"
    assert journal_types(session)[-1] == (ev.RUN_FINISHED, {"outcome": "completed"})


def test_pause_resume_and_quit_steer_a_real_run(tmp_path: Path) -> None:
    session = make_session(tmp_path, frames=None, time_scale=20.0)
    app = DashboardApp(session, build_panels(session.manager, session.config), main=session.run)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.info.frames >= 1)
        await pilot.press("p")
        await until(pilot, lambda: app.info.state == "paused")
        await pilot.press("p")
        await until(pilot, lambda: app.info.state not in ("paused", ""))
        await pilot.press("b")
        await pilot.pause()
        app.screen.query_one(Input).value = "250 mV"
        await pilot.press("enter")
        await until(pilot, lambda: any("bias" in text for _, text in app.notices))
        await pilot.press("q")  # stops the run, then closes when it has ended
        await until(pilot, lambda: not app.is_running)

    drive(app, scenario)
    assert app.return_value == "stopped"
    events = journal_types(session)
    commands = [d["command"] for t, d in events if t == ev.OPERATOR_COMMAND]
    assert commands == ["pause", "resume", "set_bias", "stop"]
    assert {"command": "set_bias", "voltage": 0.25} in [d for t, d in events]
    assert events[-1] == (ev.RUN_FINISHED, {"outcome": "stopped"})


class SlowPanel:
    """A panel that takes 50 ms for everything it is given, as a terminal over a bad SSH link
    might: if the run waited for the screen, every line would cost it 50 ms."""

    name = "slow"
    title = "Slow"
    delay = 0.05

    def __init__(self) -> None:
        self.calls = 0
        self.body = Static("slow")

    def widget(self) -> Static:
        return self.body

    def on_event(self, event: Any) -> None:
        self.calls += 1
        time.sleep(self.delay)

    def on_scan(self, view: Any) -> None:
        self.calls += 1
        time.sleep(self.delay)


def run_seconds(session: Session) -> float:
    events = read_journal(session.folder / "journal.msgpack").events
    return events[-1].time - events[0].time


def test_a_slow_dashboard_does_not_slow_the_run(tmp_path: Path) -> None:
    frames, lines = 6, 32
    # The simulator paces itself like an instrument (6.4 s of scanning per frame, 200x faster):
    # the run takes the same time unless something makes it wait.
    alone = make_session(tmp_path / "alone", frames=frames, time_scale=200.0)
    assert asyncio.run(alone.run()) == "completed"
    baseline = run_seconds(alone)

    session = make_session(tmp_path / "slow", frames=frames, time_scale=200.0)
    slow = SlowPanel()
    slots = [*build_panels(session.manager, session.config), PanelSlot("slow", "Slow", slow)]
    app = DashboardApp(session, slots, main=session.run)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.outcome is not None, within=60)

    drive(app, scenario, size=SIZE)
    with_dashboard = run_seconds(session)
    produced = sum(1 for t, _ in journal_types(session) if t == ev.FRAME_PERSISTED)
    assert produced == frames
    # Waiting for the slow panel would have cost at least 50 ms per line.
    # (Compared with that, not with the baseline: on a loaded machine the UI thread's share
    # of the CPU alone can double the run's time, which is not waiting.)
    blocked = frames * lines * SlowPanel.delay
    assert with_dashboard < blocked / 2, (with_dashboard, baseline, blocked)
    # Lines arrived far faster than the slow panel could take them: it saw the newest only.
    assert slow.calls < frames * lines / 2, slow.calls
