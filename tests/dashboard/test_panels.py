"""Panels come from plugins: a test plugin's panel appears and gets the run's events; broken
panels become placeholders and the dashboard goes on."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from probepilot import events as ev
from probepilot import hookimpl
from probepilot.config import load_config
from probepilot.plugins import make_plugin_manager
from probepilot.registry import Registry
from probepilot_dashboard.app import PanelBox, build_panels
from probepilot_dashboard.plugin import PANELS

from .conftest import drive, fixed_app, settle
from .fakes import FakeLink, scripted_run


class CounterPanel:
    """What a third-party analyzer might bring: a panel counting its kind of event."""

    name = "counter"
    title = "Frames analysed (test plugin)"

    def __init__(self, options: Any) -> None:
        self.seen: list[str] = []
        self.scans = 0
        self.snapshots = 0
        self.body = Static("no frame yet", id="counter-body")

    def widget(self) -> Static:
        return self.body

    def on_event(self, event: Any) -> None:
        self.seen.append(event.type)
        if event.type == ev.FRAME_ANALYSED:
            count = self.seen.count(ev.FRAME_ANALYSED)
            self.body.update(f"{count} frames analysed, last tip {event.data['tip_state']}")

    def on_scan(self, view: Any) -> None:
        self.scans += 1

    def on_snapshot(self, snapshot: Any) -> None:
        self.snapshots += 1


class BrokenWidget(CounterPanel):
    name = "broken_widget"
    title = "Broken widget"

    def widget(self) -> Static:
        raise RuntimeError("no widget today")


class BrokenEvents(CounterPanel):
    name = "broken_events"
    title = "Broken on events"

    def on_event(self, event: Any) -> None:
        if event.type == ev.FRAME_ANALYSED:
            raise KeyError("tip_state_v2")


def broken_factory(options: Any) -> Any:
    raise ValueError("cannot build")


class ExtraPanels:
    """A plugin registering panels, as a third-party package would."""

    @hookimpl
    def probepilot_register_panels(self, registry: Registry[Any]) -> None:
        registry.register("counter", CounterPanel, description="counts analysed frames")
        registry.register("broken_widget", BrokenWidget)
        registry.register("broken_events", BrokenEvents)
        registry.register("broken_factory", broken_factory)


def test_the_dashboard_plugin_registers_its_panels_through_the_hook() -> None:
    manager = make_plugin_manager()
    registry = manager.registry("panel")
    assert set(PANELS) <= set(registry.names())
    assert all(registry.get(name).plugin == "dashboard" for name in PANELS)
    assert "dashboard" in manager.registry("frontend")


def test_a_plugin_panel_appears_and_follows_the_run() -> None:
    manager = make_plugin_manager(extra={"test_panels": ExtraPanels()})
    config, _ = load_config(None)
    slots = build_panels(manager, config)
    names = [s.name for s in slots]
    assert names[: len(PANELS)] == list(PANELS), "built-in panels first, in layout order"
    assert {"counter", "broken_widget", "broken_events", "broken_factory"} <= set(names)
    link = FakeLink()
    app = fixed_app(link, panels=slots)

    async def scenario(pilot: Pilot[Any]) -> None:
        box = app.query_one("#panel-counter", PanelBox)
        assert box.border_title == "Frames analysed (test plugin)"
        link.play(scripted_run(frames=3, pixels=16))
        await settle(pilot, app)
        counter = next(s.panel for s in slots if s.name == "counter")
        assert counter.seen.count(ev.FRAME_ANALYSED) == 3
        assert counter.scans >= 1 and counter.snapshots >= 1
        assert "3 frames analysed, last tip double" in str(counter.body.render())
        # The broken ones are placeholders naming their error; the rest carry on.
        for name, error in [
            ("broken_widget", "no widget today"),
            ("broken_events", "tip_state_v2"),
            ("broken_factory", "cannot build"),
        ]:
            box = app.query_one(f"#panel-{name}", PanelBox)
            assert box.has_class("broken")
            text = " ".join(str(w.render()) for w in box.query(".panel-error"))
            assert error in text, name
        log = next(s.panel for s in slots if s.name == "log")
        assert len(log.events) == len([i for i in scripted_run(3, 16) if hasattr(i, "type")])
        assert app.is_running

    drive(app, scenario)
    assert any("broken_events" in text for _, text in app.notices)


def test_every_builtin_panel_draws_a_scripted_run() -> None:
    link = FakeLink()
    app = fixed_app(link)

    async def scenario(pilot: Pilot[Any]) -> None:
        link.play(scripted_run(frames=6, pixels=32))
        await settle(pilot, app)
        assert not [s.name for s in app.slots if s.error], app.notices
        panels = {s.name: s.panel for s in app.slots}
        assert panels["frame"].live.number == 6 and panels["frame"].image.renders >= 1
        assert list(panels["history"].recent) == [1, 2, 3, 4, 5, 6]
        assert [s for _, s in panels["tip"].states] == [
            "good",
            "double",
            "double",
            "good",
            "blunt",
            "good",
        ]
        assert len(panels["drift"].points) == 5
        rows = [(r.what, r.status, r.outcome) for r in panels["decisions"].rows]
        assert ("pulse -8 V 200 ms", "done 2 ms", "double") in rows
        assert ("pulse -8 V 200 ms", "refused", None) in rows
        assert len(panels["safety"].rejections) == 1
        assert panels["driver"].d.errors == 1
        assert "good frames" in str(panels["stats"].body.render())
        status = str(app.query_one("#status", Static).render())
        assert "frame 6/20" in status and "tip good" in status

    drive(app, scenario)
