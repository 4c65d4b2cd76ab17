"""Snapshot tests (pytest-textual-snapshot) of the main screen at fixed seeds.

The frames come from a seeded, scripted run (tests/dashboard/fakes.py), the clocks are fixed,
so every machine draws the same picture. After a deliberate change of the look, review the new
pictures and accept them with ``pytest tests/dashboard --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from .conftest import SIZE, fixed_app, settle
from .fakes import FakeLink, scripted_run


def _playing(link: FakeLink, app: Any, frames: int, seed: int, keys: tuple[str, ...] = ()) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        link.play(scripted_run(frames=frames, pixels=48, seed=seed))
        await settle(pilot, app)
        for key in keys:
            await pilot.press(key)
        await settle(pilot, app)

    return run_before


def test_main_screen(snap_compare: Any) -> None:
    """Eight frames of a scripted run, seed 7: the live frame, recent frames with verdicts,
    tip state and P(double), drift, decisions with outcomes, a safety refusal, statistics,
    driver health and the event log."""
    link = FakeLink()
    app = fixed_app(link)
    assert snap_compare(app, terminal_size=SIZE, run_before=_playing(link, app, 8, 7))


def test_backward_channel_in_viridis(snap_compare: Any) -> None:
    """The same kind of run at seed 11, after f (backward) and c (viridis)."""
    link = FakeLink()
    app = fixed_app(link)
    run_before = _playing(link, app, 5, 11, keys=("f", "c"))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_bias_dialog(snap_compare: Any) -> None:
    """b opens the bias dialog with the bias in use and the envelope's range."""
    link = FakeLink()
    app = fixed_app(link)
    play = _playing(link, app, 3, 7, keys=("b",))

    async def run_before(pilot: Pilot[Any]) -> None:
        await play(pilot)
        app.screen.query_one(Input).cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
