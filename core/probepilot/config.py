"""One TOML file selects the driver, the analyzers, the policy and their options.

::

    driver = "nanonis"                 # which driver plugin
    policy = "rules"                   # which conditioning policy
    analyzers = ["double_tip", "drift"]
    [drivers.nanonis]                  # options of each plugin, under its kind and name
    host = "192.168.1.10"
    [safety]
    max_pulse = "4 V"
    [run]
    folder = "runs"

The core validates its own keys and, for every plugin the file selects or configures, that
plugin's option schema (see :mod:`probepilot.options`). Unit strings become SI floats here, once.
Every problem is a :class:`~probepilot.errors.ConfigError` naming the file, the key path, the
value and what was expected. With no file, the defaults run the simulated microscope.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w

from probepilot.errors import ConfigError, PluginError
from probepilot.options import Doc, Quantity, Range, build, to_table
from probepilot.plugins import PluginManager, make_plugin_manager
from probepilot.safety import SafetyLimits
from probepilot.spectroscopy import SpectroscopyOptions

#: Config section of each plugin kind -> the registry kind.
SECTIONS: dict[str, str] = {
    "drivers": "driver",
    "analyzers": "analyzer",
    "policies": "policy",
    "panels": "panel",
    "instruments": "instrument",
}

#: Sections that are both a selection (a list of names) and the options of what they select
#: (a table of tables, in order): ``analyzers = [...]`` or ``[analyzers.NAME]``.
SELECTING_SECTIONS: dict[str, str] = {"analyzers": "analyzer", "instruments": "instrument"}

DEFAULT_SOURCE = "<defaults>"


@dataclass(frozen=True)
class PluginsOptions:
    """The ``[plugins]`` table: which plugins to disable, load or insist on."""

    disable: Annotated[
        list[str], Doc("entry-point names not to load (also PROBEPILOT_DISABLE_PLUGINS)")
    ] = field(default_factory=list)
    load: Annotated[
        list[str], Doc("plugins to load even when PROBEPILOT_DISABLE_PLUGIN_AUTOLOAD is set")
    ] = field(default_factory=list)
    require: Annotated[
        list[str],
        Doc("plugins that must be installed, with optional versions: 'probepilot-noise>=0.1'"),
    ] = field(default_factory=list)


@dataclass(frozen=True)
class RunOptions:
    """The ``[run]`` table: where and how long runs go."""

    folder: Annotated[
        str,
        Doc(
            "where run folders are created; relative paths are relative to the config file's "
            "folder (the current directory when there is no file)"
        ),
    ] = "runs"
    frames: Annotated[
        int | None, Range(1, 10_000_000), Doc("stop after this many frames (default: no limit)")
    ] = None
    duration: Annotated[
        float | None,
        Quantity("s"),
        Range(0),
        Doc("stop after this much instrument time (simulated time on the simulator)"),
    ] = None
    frame_size: Annotated[
        float, Quantity("m"), Range(1e-10, 1e-5), Doc("side of each imaging frame")
    ] = 20e-9
    pixels: Annotated[int, Range(8, 4096), Doc("pixels and lines of each frame")] = 128
    line_time: Annotated[
        float, Quantity("s"), Range(1e-3, 100), Doc("time per line and direction")
    ] = 0.1
    frames_per_region: Annotated[
        int,
        Range(1, 1000),
        Doc("frames taken of one region before the next (two or more let drift be measured)"),
    ] = 2
    compensate_drift: Annotated[
        bool, Doc("feed the drift estimate into the driver's drift compensation")
    ] = True
    coarse_axis: Annotated[
        Literal["x+", "x-", "y+", "y-"], Doc("direction of the coarse move when the range is used")
    ] = "x+"
    coarse_steps: Annotated[int, Range(1, 100_000), Doc("coarse steps per coarse move")] = 100
    retries: Annotated[
        int, Range(0, 1000), Doc("driver errors in a row the run recovers from before failing")
    ] = 5
    retry_backoff: Annotated[
        float, Quantity("s"), Range(0, 600), Doc("first wait after a driver error; doubles")
    ] = 1.0
    publish: Annotated[
        str | None,
        Doc(
            "publish the run's events and frames on this ZeroMQ address for `probepilot watch`, "
            "e.g. 'tcp://127.0.0.1:5580' (stream on port + 1); `probepilot run --publish` "
            "overrides it"
        ),
    ] = None


@dataclass(frozen=True)
class CoreOptions:
    """The top-level keys of the config file."""

    driver: Annotated[str, Doc("the driver plugin to use, e.g. 'sim' or 'nanonis'")] = "sim"
    policy: Annotated[
        str, Doc("the tip-conditioning policy, e.g. 'rules', 'ga', 'rl', 'random'")
    ] = "rules"
    analyzers: Annotated[list[str], Doc("analyzers run on every frame, in this order")] = field(
        default_factory=lambda: [
            "double_tip",
            "drift",
            "tip_changes",
            "roughness",
            "resolution",
        ]
    )
    instruments: Annotated[
        list[str], Doc("auxiliary instruments a run uses (lock-in, coarse positioner, preamp)")
    ] = field(default_factory=list)
    safety: Annotated[SafetyLimits, Doc("limits every action must respect")] = field(
        default_factory=SafetyLimits
    )
    run: Annotated[RunOptions, Doc("run folder and length")] = field(default_factory=RunOptions)
    spectroscopy: Annotated[SpectroscopyOptions, Doc("spectra and grids after good frames")] = (
        field(default_factory=SpectroscopyOptions)
    )
    plugins: Annotated[PluginsOptions, Doc("plugin loading")] = field(
        default_factory=PluginsOptions
    )


@dataclass(frozen=True)
class Config:
    """The validated, effective configuration of one process.

    ``core`` holds the top-level keys; ``plugin_options`` maps ``(kind, name)`` to the validated
    options of every plugin the file selects or configures; ``source`` names the file.
    """

    core: CoreOptions
    plugin_options: Mapping[tuple[str, str], Any]
    source: str
    base_dir: Path

    @property
    def driver(self) -> str:
        return self.core.driver

    @property
    def policy(self) -> str:
        return self.core.policy

    @property
    def analyzers(self) -> list[str]:
        return self.core.analyzers

    @property
    def instruments(self) -> list[str]:
        return self.core.instruments

    @property
    def safety(self) -> SafetyLimits:
        return self.core.safety

    @property
    def spectroscopy(self) -> SpectroscopyOptions:
        return self.core.spectroscopy

    @property
    def run(self) -> RunOptions:
        return self.core.run

    def options(self, kind: str, name: str) -> Any:
        """Validated options of plugin ``name`` of ``kind`` (None if it declares none)."""
        return self.plugin_options.get((kind, name))

    def build(
        self,
        manager: PluginManager,
        kind: str,
        name: str,
        overrides: Mapping[str, Any] | None = None,
    ) -> Any:
        """Build plugin ``name`` of ``kind`` (``"driver"``, ``"analyzer"``, ``"policy"`` ...)
        with its validated options from this config, or its defaults when the file has none.

        ``overrides`` replaces single option keys (raw config values, unit strings allowed) on
        top of the file's table; benchmarks and episodes use it to seed a simulator.

        :raises PluginError: when no such plugin is installed.
        :raises ConfigError: when an override is invalid.
        """
        entry = manager.registry(kind).get(name)
        section = {v: k for k, v in SECTIONS.items()}.get(kind, f"{kind}s")
        options = self.options(kind, name)
        if entry.options is not None and (options is None or overrides):
            table = to_table(options) if options is not None else {}
            table.update(overrides or {})
            options = build(entry.options, table, source=self.source, key=f"{section}.{name}")
        return entry.factory(options)

    def run_folder(self) -> Path:
        """Where run folders go, resolved against :attr:`base_dir`."""
        return (self.base_dir / self.core.run.folder).resolve()

    def to_table(self) -> dict[str, Any]:
        """The effective configuration as a TOML-ready table, with defaults filled in."""
        table = to_table(self.core)
        kind_to_section = {kind: section for section, kind in SECTIONS.items()}
        for section, kind in SELECTING_SECTIONS.items():
            names = getattr(self.core, section)
            if names:
                table[section] = {
                    name: to_table(opts) if (opts := self.options(kind, name)) else {}
                    for name in names
                }
        for (kind, name), options in sorted(self.plugin_options.items()):
            if options is not None and kind not in SELECTING_SECTIONS.values():
                section = table.setdefault(kind_to_section[kind], {})
                section[name] = to_table(options)
        return table

    def to_toml(self) -> str:
        """:meth:`to_table` as TOML text; reading it back gives the same config."""
        return tomli_w.dumps(self.to_table())


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a one-line :class:`ConfigError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the config file: {exc.strerror or exc}",
            source=str(path),
            hint="check the path; `probepilot config show` prints a complete example",
        ) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})", source=str(path)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from None


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    extra_plugins: Mapping[str, object] | None = None,
) -> tuple[Config, PluginManager]:
    """Read ``path`` (or the defaults), load the plugins it allows, validate everything.

    :returns: the config and the plugin manager whose registries it was validated against.
    :raises ConfigError: for any invalid file, naming file and key.
    """
    source = str(path) if path is not None else DEFAULT_SOURCE
    raw = read_toml(path) if path is not None else {}
    base_dir = path.parent if path is not None else Path.cwd()
    plugins = build(PluginsOptions, raw.get("plugins"), source=source, key="plugins")
    manager = make_plugin_manager(
        disable=plugins.disable, load=plugins.load, env=env, extra=extra_plugins
    )
    try:
        manager.check_required(plugins.require)
    except PluginError as exc:
        raise ConfigError(str(exc), source=source, key="plugins.require") from None
    config = validate(raw, manager, source=source, base_dir=base_dir)
    manager.hook.probepilot_configure.call_historic(kwargs={"config": config})
    return config, manager


def validate(
    raw: Mapping[str, Any], manager: PluginManager, *, source: str, base_dir: Path
) -> Config:
    """Validate a parsed TOML table against the core schema and the plugins' schemas."""
    raw = dict(raw)
    selects = {section: section in raw for section in SELECTING_SECTIONS}  # absent: defaults
    tables: dict[str, Any] = {section: raw.pop(section, {}) for section in SECTIONS}
    # `analyzers` and `instruments` are both the selection and the options: a list of names,
    # or (TOML cannot have a key that is a list and a table at once) a table of [analyzers.NAME]
    # tables, in order.
    for section in SELECTING_SECTIONS:
        value = tables.pop(section)
        if not selects[section]:
            tables[section] = {}
        elif isinstance(value, dict):
            raw[section] = list(value)
            tables[section] = value
        else:
            raw[section] = value
            tables[section] = {}
    core_keys = {
        "driver",
        "policy",
        "analyzers",
        "instruments",
        "safety",
        "run",
        "spectroscopy",
        "plugins",
    }
    for key in raw:
        if key not in core_keys:
            raise ConfigError(
                f"unknown key {key!r}",
                source=source,
                key=key,
                expected=f"one of: {', '.join(sorted(core_keys | set(SECTIONS)))}",
            )
    core = build(CoreOptions, raw, source=source, key="")
    if core.run.publish is not None:
        from probepilot.bus.address import check_address  # no ZeroMQ: a regular expression

        check_address(core.run.publish, what="run.publish", source=source)

    selected: dict[str, list[tuple[str, str]]] = {
        "driver": [("driver", core.driver)],
        "policy": [("policy", core.policy)],
        "analyzer": [(f"analyzers[{i}]", name) for i, name in enumerate(core.analyzers)],
        "panel": [],
        "instrument": [(f"instruments[{i}]", name) for i, name in enumerate(core.instruments)],
    }
    for kind, picks in selected.items():
        registry = manager.registry(kind)
        for key, name in picks:
            if name not in registry:
                raise _unknown_plugin(kind, name, registry.names(), source, key)
    if len(set(core.analyzers)) != len(core.analyzers):
        raise ConfigError(
            "an analyzer is listed twice", source=source, key="analyzers", value=core.analyzers
        )
    if len(set(core.instruments)) != len(core.instruments):
        raise ConfigError(
            "an instrument is listed twice",
            source=source,
            key="instruments",
            value=core.instruments,
        )

    plugin_options: dict[tuple[str, str], Any] = {}
    for section, kind in SECTIONS.items():
        table = tables[section]
        if not isinstance(table, dict):
            raise ConfigError(
                f"{table!r} is not a table", source=source, key=section, expected="a table"
            )
        registry = manager.registry(kind)
        for name in table:
            if name not in registry:
                raise _unknown_plugin(kind, name, registry.names(), source, f"{section}.{name}")
        wanted = {name for _, name in selected[kind]} | set(table)
        if kind == "panel":
            wanted |= set(registry.names())  # every loaded panel is shown
        for name in sorted(wanted):
            entry = registry.get(name)
            if entry.options is None:
                if table.get(name):
                    raise ConfigError(
                        f"{kind} {name!r} takes no options",
                        source=source,
                        key=f"{section}.{name}",
                    )
                plugin_options[(kind, name)] = None
                continue
            sub = table.get(name, {})
            if not isinstance(sub, dict):
                raise ConfigError(
                    f"{sub!r} is not a table",
                    source=source,
                    key=f"{section}.{name}",
                    expected="a table",
                )
            plugin_options[(kind, name)] = build(
                entry.options, sub, source=source, key=f"{section}.{name}"
            )
    return Config(core, plugin_options, source, base_dir)


def _unknown_plugin(kind: str, name: str, known: list[str], source: str, key: str) -> ConfigError:
    return ConfigError(
        f"unknown {kind} {name!r}",
        source=source,
        key=key,
        value=name,
        expected=f"one of: {', '.join(known)}" if known else f"an installed {kind} (none is)",
        hint="`probepilot plugins` lists what is installed",
    )
