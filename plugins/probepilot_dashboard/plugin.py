"""Registers the dashboard (a frontend) and its built-in panels with probepilot.

Kept light: nothing here imports Textual, so loading the plugin costs nothing for commands that
do not open the dashboard; the panels and the app are imported when they are built.
"""

from __future__ import annotations

from typing import Any

from probepilot import hookimpl
from probepilot.registry import Registry
from probepilot_dashboard.options import FrameOptions

#: name -> (class name in probepilot_dashboard.panels, options schema, description)
PANELS: dict[str, tuple[str, type | None, str]] = {
    "frame": ("FramePanel", FrameOptions, "the frame being scanned, line by line, with progress"),
    "history": ("HistoryPanel", None, "thumbnails of the recent frames with their tip state"),
    "tip": ("TipPanel", None, "tip state of every frame and double-tip probability over time"),
    "drift": ("DriftPanel", None, "drift velocity over time and the compensation applied"),
    "decisions": ("DecisionsPanel", None, "the policy's decisions, actions and their outcomes"),
    "stats": ("StatsPanel", None, "frames, good-frame fraction, recoveries, time per state"),
    "driver": ("DriverPanel", None, "driver status and connection health"),
    "safety": ("SafetyPanel", None, "the safety envelope's limits and rejections"),
    "log": ("LogPanel", None, "every event of the run"),
}


def _factory(class_name: str) -> Any:
    def build(options: Any) -> Any:
        from probepilot_dashboard import panels

        return getattr(panels, class_name)(options)

    return build


@hookimpl
def probepilot_register_panels(registry: Registry[Any]) -> None:
    for name, (class_name, options, description) in PANELS.items():
        registry.register(name, _factory(class_name), options=options, description=description)


@hookimpl
def probepilot_register_frontends(registry: Registry[Any]) -> None:
    from probepilot_dashboard.frontend import DashboardFrontend

    registry.register(
        "dashboard",
        lambda _options: DashboardFrontend(),
        description="the Textual terminal dashboard (probepilot run opens it)",
    )
