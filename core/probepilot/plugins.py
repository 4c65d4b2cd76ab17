"""The plugin manager: finds plugins through the ``probepilot`` entry-point group and loads each
one under its own error capture.

Nothing is loaded at import time; :func:`make_plugin_manager` does the work when asked. A plugin
that fails to import, registers an invalid hook, or raises in a registration hook is recorded
with a one-line summary of its error and taken out; the others load as usual. Built-in plugins
are entry points of the ``probepilot`` distribution itself, found exactly like third-party ones.

Environment:

``PROBEPILOT_DISABLE_PLUGINS=a,b``
    do not load the plugins named ``a`` and ``b`` (entry-point names).
``PROBEPILOT_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry point except those named in ``PROBEPILOT_PLUGINS=a,b`` or the config's
    ``[plugins] load`` list.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from probepilot import hookspecs
from probepilot.errors import PluginError
from probepilot.registry import Registry

ENTRY_POINT_GROUP = "probepilot"
ENV_DISABLE = "PROBEPILOT_DISABLE_PLUGINS"
ENV_NO_AUTOLOAD = "PROBEPILOT_DISABLE_PLUGIN_AUTOLOAD"
ENV_LOAD = "PROBEPILOT_PLUGINS"

#: Registration hook name -> the kind of thing it registers (also the config table prefix).
REGISTRATION_HOOKS: dict[str, str] = {
    "probepilot_register_drivers": "driver",
    "probepilot_register_analyzers": "analyzer",
    "probepilot_register_policies": "policy",
    "probepilot_register_panels": "panel",
    "probepilot_register_formats": "format",
    "probepilot_register_frontends": "frontend",
    "probepilot_register_instruments": "instrument",
}


@dataclass
class PluginInfo:
    """What ``probepilot plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    disabled: bool = False

    @property
    def kinds(self) -> list[str]:
        """The kinds of thing it registered (``driver``, ``policy`` ...), sorted."""
        return sorted(kind for kind, names in self.provides.items() if names)

    @property
    def loaded(self) -> bool:
        return self.error is None and not self.disabled

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "kinds": self.kinds,
            "provides": {k: v for k, v in sorted(self.provides.items()) if v},
            "hooks": self.hooks,
            "error": self.error,
            "disabled": self.disabled,
        }


def error_summary(exc: BaseException) -> str:
    """``"ModuleNotFoundError: No module named 'x' (broken/__init__.py:3)"``: one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        parts = last.filename.replace("\\", "/").split("/")
        where = f" ({'/'.join(parts[-2:])}:{last.lineno})"
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}{where}"


def _split_names(text: str | None) -> set[str]:
    return {n.strip() for n in (text or "").split(",") if n.strip()}


class PluginManager:
    """probepilot's view of its plugins: the pluggy manager, per-plugin records, registries."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry[Any]] = {
            kind: Registry(kind) for kind in REGISTRATION_HOOKS.values()
        }

    @property
    def hook(self) -> Any:
        """The pluggy hook relay: ``manager.hook.probepilot_event(event=...)``."""
        return self.pm.hook

    def registry(self, kind: str) -> Registry[Any]:
        """The registry of ``kind`` (``"driver"``, ``"analyzer"``, ``"policy"`` ...)."""
        return self.registries[kind]

    # -- loading ------------------------------------------------------------------------------

    def load_entry_point(self, ep: EntryPoint) -> PluginInfo:
        """Import and register one entry point; failures are recorded, never raised."""
        dist = ep.dist
        info = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist.name if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        self.infos[ep.name] = info
        try:
            plugin = ep.load()
        # A plugin is third-party code: whatever its import raises (even SystemExit) must not
        # take the others down. The error is recorded and shown by `probepilot plugins`.
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            info.error = error_summary(exc)
            return info
        self.add_plugin(plugin, info)
        return info

    def add_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Register an imported plugin object, validating its hooks on their own."""
        self.infos[info.name] = info
        if info.name in (self.pm.get_name(p) for p in self.pm.get_plugins()):
            info.error = f"PluginError: another plugin is already registered as {info.name!r}"
            return
        try:
            self.pm.register(plugin, name=info.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.error = error_summary(exc)
            return
        try:
            # check_pending always runs: a misspelled hook is an error, not a silent no-op.
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            info.error = error_summary(exc)
            return
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def collect_registrations(self) -> None:
        """Call every registration hook, one plugin at a time, under error capture."""
        for hook_name, kind in REGISTRATION_HOOKS.items():
            registry = self.registries[kind]
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                info = self.infos.get(impl.plugin_name)
                if info is None or info.error is not None:
                    continue
                registry.current_plugin = impl.plugin_name
                try:
                    impl.function(registry=registry)
                except (Exception, SystemExit) as exc:  # noqa: BLE001  (recorded, see above)
                    self._fail(impl.plugin_name, exc)
                    continue
                info.provides[kind] = registry.by_plugin(impl.plugin_name)
            registry.current_plugin = "<unknown>"

    def _fail(self, name: str, exc: BaseException) -> None:
        """Take a plugin that failed after registration out entirely."""
        info = self.infos[name]
        info.error = error_summary(exc)
        info.provides = {}
        for registry in self.registries.values():
            registry.remove_plugin(name)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)

    # -- queries ------------------------------------------------------------------------------

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin seen, loaded or not, sorted by name."""
        return sorted(self.infos.values(), key=lambda i: i.name)

    def find(self, requirement: str) -> PluginInfo | None:
        """The plugin whose entry-point name or distribution name is ``requirement``."""
        wanted = canonicalize_name(requirement)
        for info in self.plugin_infos():
            if info.name == requirement or (
                info.distribution and canonicalize_name(info.distribution) == wanted
            ):
                return info
        return None

    def check_required(self, requirements: Iterable[str]) -> None:
        """Raise :class:`PluginError` unless every requirement (``"name>=1.2"``) is loaded."""
        for text in requirements:
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                raise PluginError(
                    f"required plugin {text!r} is not a valid requirement: {exc}"
                ) from None
            info = self.find(req.name)
            if info is None:
                raise PluginError(
                    f"required plugin {req.name!r} is not installed",
                    hint=f"install it (pip install {req.name!r}) or remove it from the list",
                )
            if not info.loaded:
                state = "disabled" if info.disabled else f"broken: {info.error}"
                raise PluginError(f"required plugin {req.name!r} is {state}")
            if req.specifier and (info.version is None or info.version not in req.specifier):
                raise PluginError(
                    f"required plugin {req.name!r} has version {info.version}, which does not "
                    f"satisfy {req.specifier}",
                    hint="upgrade or downgrade it to a matching version",
                )


def make_plugin_manager(
    *,
    disable: Iterable[str] = (),
    load: Iterable[str] = (),
    autoload: bool | None = None,
    extra: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    discover: Callable[[], Iterable[EntryPoint]] | None = None,
) -> PluginManager:
    """Build a plugin manager and load plugins.

    :param disable: entry-point names not to load (added to ``PROBEPILOT_DISABLE_PLUGINS``).
    :param load: entry-point names to load even when autoloading is off.
    :param autoload: load every entry point; default: unless
        ``PROBEPILOT_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value other than ``0``.
    :param extra: plugin objects to register by name, e.g. a test's or a script's own hooks.
    :param env: environment to read (default ``os.environ``).
    :param discover: returns the entry points (default: the ``probepilot`` group).
    """
    env = os.environ if env is None else env
    disabled = set(disable) | _split_names(env.get(ENV_DISABLE))
    wanted = set(load) | _split_names(env.get(ENV_LOAD))
    if autoload is None:
        autoload = env.get(ENV_NO_AUTOLOAD, "") in ("", "0")
    manager = PluginManager()
    seen: set[str] = set()
    for ep in (discover or _entry_points)():
        if ep.name in seen:
            # The same distribution visible twice on sys.path (editable + installed) is one plugin.
            continue
        seen.add(ep.name)
        if ep.name in disabled or not (autoload or ep.name in wanted):
            dist = ep.dist
            manager.infos[ep.name] = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
                disabled=True,
            )
            continue
        manager.load_entry_point(ep)
    for name, plugin in (extra or {}).items():
        module = getattr(plugin, "__name__", type(plugin).__name__)
        manager.add_plugin(plugin, PluginInfo(name, module, None, None))
    manager.collect_registrations()
    return manager


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
