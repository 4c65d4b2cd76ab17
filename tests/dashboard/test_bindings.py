"""Every key binding, driven with Textual's pilot against a fake link that records commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Footer, Input, Label

from probepilot import events as ev
from probepilot.errors import ProbepilotError
from probepilot.events import Event
from probepilot_dashboard.app import PolicyScreen, QuantityScreen

from .conftest import drive, fixed_app, settle
from .fakes import T0, FakeLink, scripted_run


def test_the_footer_shows_every_control(link: FakeLink) -> None:
    app = fixed_app(link)
    shown = {b.key for b in app.BINDINGS if getattr(b, "show", True)}  # type: ignore[union-attr]
    assert shown >= {"p", "s", "a", "w", "o", "b", "t", "f", "c", "x", "q"}

    async def scenario(pilot: Pilot[Any]) -> None:
        footer = app.query_one(Footer)
        keys = {w.key for w in footer.query("FooterKey")}  # type: ignore[attr-defined]
        assert keys >= shown

    drive(app, scenario)


@pytest.mark.parametrize(
    ("key", "command"),
    [
        ("p", ("pause", {})),
        ("s", ("stop", {"mode": "finish"})),
        ("a", ("stop", {"mode": "abort"})),
        ("w", ("withdraw", {})),
    ],
)
def test_run_controls_send_their_command(
    link: FakeLink, key: str, command: tuple[str, dict[str, Any]]
) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press(key)
        await pilot.pause()
        assert link.commands == [command]
        assert ("information", f"ok: {command[0]}") in app.notices

    drive(app, scenario)


def test_p_resumes_a_paused_run(link: FakeLink) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        link.emit(Event(ev.STATE_CHANGED, 1, {"state": "paused"}, T0))
        await settle(pilot, app)
        await pilot.press("p")
        await pilot.pause()
        assert link.commands == [("resume", {})]

    drive(app, scenario)


def test_o_switches_to_a_registered_policy(link: FakeLink) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        await settle(pilot, app)  # the snapshot lists the policies
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, PolicyScreen)
        assert app.screen.policies == ["ga", "random", "rl", "rules"]
        await pilot.press("down", "enter")  # from the current one, random, to rl
        await pilot.pause()
        assert not isinstance(app.screen, PolicyScreen)
        assert link.commands == [("switch_policy", {"name": "rl"})]
        await pilot.press("o")
        await pilot.press("escape")
        await pilot.pause()
        assert link.commands == [("switch_policy", {"name": "rl"})]

    drive(app, scenario)


def test_b_sets_the_bias_in_units_and_rejects_bad_input(link: FakeLink) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, QuantityScreen)
        app.screen.query_one(Input).value = "0.5 volts"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, QuantityScreen), "a bad unit keeps the dialog open"
        error = app.screen.query_one("#error", Label)
        assert "0.5 volts" in str(error.render())
        assert link.commands == []
        app.screen.query_one(Input).value = "-250 mV"
        await pilot.press("enter")
        await pilot.pause()
        assert link.commands == [("set_bias", {"voltage": -0.25})]
        # The safety envelope's refusal comes back as a warning, not an error dialog.
        await pilot.press("b")
        await pilot.pause()
        app.screen.query_one(Input).value = "5 V"
        await pilot.press("enter")
        await pilot.pause()
        assert ("warning", "refused by the safety envelope") in app.notices

    drive(app, scenario)


def test_t_sets_the_setpoint_and_escape_cancels(link: FakeLink) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, QuantityScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert link.commands == []
        await pilot.press("t")
        await pilot.pause()
        app.screen.query_one(Input).value = "50 pA"
        await pilot.press("enter")
        await pilot.pause()
        assert link.commands == [("set_setpoint", {"current": pytest.approx(50e-12)})]

    drive(app, scenario)


def test_the_bias_dialog_starts_from_the_bias_in_use(link: FakeLink) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        link.play(scripted_run(frames=1, pixels=16))
        await settle(pilot, app)
        await pilot.press("b")
        await pilot.pause()
        assert app.screen.query_one(Input).value == "1 V"

    drive(app, scenario)


def test_f_and_c_switch_direction_and_colours(link: FakeLink) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        link.play(scripted_run(frames=2, pixels=16))
        await settle(pilot, app)
        frame = next(s.panel for s in app.slots if s.name == "frame")
        before = frame.image.renders
        await pilot.press("f")
        await pilot.pause()
        assert app.view.direction == "backward"
        assert frame.view.direction == "backward"
        await pilot.press("f")
        assert app.view.direction == "forward"
        await pilot.press("c")
        await pilot.pause()
        assert app.view.colormap == "viridis"
        assert frame.image.renders > before
        await pilot.press("c", "c")
        assert app.view.colormap == "afmhot"

    drive(app, scenario)


def test_x_saves_a_screenshot(link: FakeLink, tmp_path: Path) -> None:
    app = fixed_app(link, screenshots=tmp_path)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("x")
        await pilot.pause()

    drive(app, scenario)
    [svg] = tmp_path.glob("probepilot-*.svg")
    assert "<svg" in svg.read_text(encoding="utf-8")
    assert any(text.startswith("screenshot saved") for _, text in app.notices)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
def test_quit_without_a_hosted_run_just_closes(link: FakeLink, key: str) -> None:
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press(key)
        await pilot.pause()

    drive(app, scenario)
    assert app.return_value is None
    assert link.commands == []  # watching a run elsewhere does not stop it


def test_a_failing_command_is_a_notification_and_the_app_goes_on(link: FakeLink) -> None:
    link.fail["withdraw"] = ProbepilotError("withdraw: the driver is not connected")
    link.fail["pause"] = ConnectionResetError("link lost")
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("w", "p")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert app.is_running

    drive(app, scenario)
    severities = [s for s, _ in app.notices]
    assert severities.count("error") == 2
    assert any("not connected" in text for _, text in app.notices)
    assert any("ConnectionResetError" in text for _, text in app.notices)
    assert link.commands[-1] == ("stop", {"mode": "finish"})
