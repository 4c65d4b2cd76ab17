"""Registries: where plugins put what they provide (drivers, analyzers, policies, panels, formats).

Each registration hook receives one :class:`Registry`. A plugin calls :meth:`Registry.register`
with a name (what a config file selects), a factory that builds the object from its validated
options, and the options schema (a dataclass, see :mod:`probepilot.options`). The plugin manager
records which plugin registered each name, so a clash names both plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from probepilot.errors import PluginError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """One registered thing.

    ``factory(options)`` builds it; ``options`` is the schema dataclass of its config table
    (``None`` when it takes no options); ``plugin`` is the name of the plugin that registered it.
    """

    name: str
    factory: Callable[[Any], T]
    options: type | None
    description: str
    plugin: str


class Registry(Generic[T]):
    """Named factories of one kind (``"driver"``, ``"analyzer"``, ``"policy"`` ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        #: Set by the plugin manager while a plugin's registration hook runs.
        self.current_plugin = "<unknown>"

    def register(
        self,
        name: str,
        factory: Callable[[Any], T],
        *,
        options: type | None = None,
        description: str = "",
    ) -> None:
        """Register ``factory`` under ``name``.

        :param name: what config files use to select it, e.g. ``driver = "sim"``; lower case
            letters, digits and underscores.
        :param factory: called with the validated options instance (or ``None`` when
            ``options`` is ``None``) and returns the object.
        :param options: a frozen dataclass declaring the config table ``[<kind>s.<name>]``.
        :param description: one line for ``probepilot plugins``.
        :raises PluginError: if ``name`` is malformed or already registered by another plugin.
        """
        if not name or not name.replace("_", "").isalnum() or not name.islower():
            raise PluginError(
                f"plugin {self.current_plugin!r} registers {self.kind} {name!r}: names are "
                "lower case letters, digits and underscores"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered by both {other!r} and {self.current_plugin!r}",
                hint=f"disable one of them with PROBEPILOT_DISABLE_PLUGINS={self.current_plugin}",
            )
        self._entries[name] = Entry(name, factory, options, description, self.current_plugin)

    def get(self, name: str) -> Entry[T]:
        """The entry called ``name``; :class:`PluginError` listing the known names if absent."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise PluginError(
                f"no {self.kind} called {name!r} is installed (installed: {known})",
                hint="install the plugin that provides it, or check `probepilot plugins`",
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def by_plugin(self, plugin: str) -> list[str]:
        """Names registered by ``plugin``."""
        return sorted(n for n, e in self._entries.items() if e.plugin == plugin)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (used when its later hooks fail)."""
        for name in self.by_plugin(plugin):
            del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)
