"""The dashboard as a :class:`probepilot.contracts.Frontend`: what ``probepilot run`` opens."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any


class DashboardFrontend:
    """Opens the Textual dashboard on this terminal (needs ``probepilot[dashboard]``)."""

    name = "dashboard"

    def unavailable(self) -> str | None:
        for module in ("textual", "textual_plotext"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'probepilot[dashboard]')"
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return "not on a terminal"
        if os.environ.get("TERM", "") == "dumb":
            return "TERM=dumb cannot draw it"
        return None

    def show(
        self,
        link: Any,
        *,
        config: Any,
        manager: Any,
        main: Callable[[], Awaitable[str]] | None = None,
    ) -> str | None:
        from probepilot_dashboard.app import DashboardApp, build_panels

        app = DashboardApp(link, build_panels(manager, config), main=main)
        try:
            app.run()
        finally:
            # However the app ended (q, a crash of the UI), the run must end cleanly too.
            app.stop_run()
        return app.outcome if main is not None else None
