"""Fixtures for the policies' tests: the default config and plugin manager, built once."""

from __future__ import annotations

import pytest

from probepilot.config import Config, load_config
from probepilot.plugins import PluginManager


@pytest.fixture(scope="session")
def loaded() -> tuple[Config, PluginManager]:
    """The built-in defaults (the simulator, the default analyzers) and their plugin manager."""
    return load_config(None)


@pytest.fixture
def config(loaded: tuple[Config, PluginManager]) -> Config:
    return loaded[0]


@pytest.fixture
def manager(loaded: tuple[Config, PluginManager]) -> PluginManager:
    return loaded[1]
