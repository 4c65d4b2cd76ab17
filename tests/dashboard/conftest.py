"""Fixtures of the dashboard's tests: a fake link and a way to drive the app with the pilot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("textual")
pytest.importorskip("textual_plotext")

from textual.pilot import Pilot

from probepilot_dashboard.app import DashboardApp

from .fakes import T0, FakeLink

SIZE = (160, 50)


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


def fixed_app(link: Any, **kwargs: Any) -> DashboardApp:
    """An app on ``link`` with fixed clocks, so what it shows does not depend on when."""
    kwargs.setdefault("clock", lambda: T0 + 60.0)
    kwargs.setdefault("monotonic", lambda: 1000.0)
    return DashboardApp(link, **kwargs)


def drive(
    app: DashboardApp,
    scenario: Callable[[Pilot[Any]], Awaitable[None]],
    size: tuple[int, int] = SIZE,
) -> None:
    """Run ``app`` headless under the pilot and play ``scenario``."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await scenario(pilot)

    asyncio.run(main())


async def settle(pilot: Pilot[Any], app: DashboardApp) -> None:
    """Let the app hand everything received to the panels and draw it."""
    await pilot.pause()
    app.tick()
    await pilot.pause()
