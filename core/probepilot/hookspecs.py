"""Every hook a probepilot plugin can implement.

Hooks are synchronous and do no I/O: the registration hooks put factories into registries, the
lifecycle and observer hooks are told what happens. Live work happens in the ``async`` methods of
the objects the plugins register (see :mod:`probepilot.contracts`).

A plugin is a module (or object) with functions marked ``@probepilot.hookimpl`` and named after
the specs below, registered through the ``probepilot`` entry-point group::

    [project.entry-points.probepilot]
    mydriver = "mypackage.plugin"

Every hook below is documented in the README's "Writing a plugin" section; a test keeps the two in
step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from probepilot.config import Config
    from probepilot.contracts import (
        Analyzer,
        Driver,
        FileFormat,
        Frontend,
        Instrument,
        Panel,
        Policy,
        RunInfo,
    )
    from probepilot.events import Event
    from probepilot.registry import Registry

PROJECT = "probepilot"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ------------------------------------------------------------------------------------------
# Registration: called once per plugin manager, on the main thread, before any config is read.


@hookspec
def probepilot_register_drivers(registry: Registry[Driver]) -> None:
    """Register instrument drivers.

    :param registry: call ``registry.register(name, factory, options=Schema)``; ``factory``
        receives the validated ``[drivers.<name>]`` table as a ``Schema`` instance and returns
        an object implementing :class:`probepilot.contracts.Driver`.
    :return: nothing; the registry is the result.

    Called for every plugin (not firstresult), on the main thread, once when the plugin manager
    collects its registries. A name clash with another plugin is reported as that plugin's load
    error.
    """


@hookspec
def probepilot_register_analyzers(registry: Registry[Analyzer]) -> None:
    """Register frame analyzers.

    :param registry: call ``registry.register(name, factory, options=Schema)``; the factory
        returns an :class:`probepilot.contracts.Analyzer`. Config selects analyzers by name in
        ``analyzers = [...]`` and configures them under ``[analyzers.<name>]``.
    :return: nothing.

    Called for every plugin, on the main thread, once per plugin manager.
    """


@hookspec
def probepilot_register_policies(registry: Registry[Policy]) -> None:
    """Register tip-conditioning policies.

    :param registry: call ``registry.register(name, factory, options=Schema)``; the factory
        returns a :class:`probepilot.contracts.Policy`. Config selects one with
        ``policy = "<name>"`` and configures it under ``[policies.<name>]``.
    :return: nothing.

    Called for every plugin, on the main thread, once per plugin manager.
    """


@hookspec
def probepilot_register_panels(registry: Registry[Panel]) -> None:
    """Register dashboard panels.

    :param registry: call ``registry.register(name, factory, options=Schema)``; the factory
        returns a :class:`probepilot.contracts.Panel`. The dashboard shows the panels of every
        loaded plugin, configured under ``[panels.<name>]``.
    :return: nothing.

    Called for every plugin, on the main thread, once per plugin manager.
    """


@hookspec
def probepilot_register_frontends(registry: Registry[Frontend]) -> None:
    """Register frontends: what ``probepilot run`` shows a person while the run goes on.

    :param registry: call ``registry.register(name, factory)``; the factory (called with
        ``None``) returns a :class:`probepilot.contracts.Frontend`. ``probepilot run`` opens the
        frontend called ``dashboard`` (else the first registered) unless ``--headless`` is given,
        and runs headless with a one-line note when none is installed or it cannot show here.
    :return: nothing.

    Called for every plugin, on the main thread, once per plugin manager. The core never
    imports a frontend's UI toolkit: it finds the frontend only through this registry.
    """


@hookspec
def probepilot_register_formats(registry: Registry[FileFormat]) -> None:
    """Register readers and writers of data files.

    :param registry: call ``registry.register(name, factory)``; the factory returns a
        :class:`probepilot.contracts.FileFormat` (file suffixes, ``read``, optional ``write``).
    :return: nothing.

    Called for every plugin, on the main thread, once per plugin manager.
    """


@hookspec
def probepilot_register_instruments(registry: Registry[Instrument]) -> None:
    """Register auxiliary instruments: lock-in amplifiers, coarse positioners, preamplifiers.

    :param registry: call ``registry.register(name, factory, options=Schema)``; the factory
        receives the validated ``[instruments.<name>]`` table and returns an
        :class:`probepilot.contracts.Instrument` that also implements
        :class:`~probepilot.contracts.LockIn`, :class:`~probepilot.contracts.Positioner` or
        :class:`~probepilot.contracts.Preamplifier`. Config selects instruments by name in
        ``instruments = [...]``; a run connects them after the driver and closes them at its end.
    :return: nothing.

    Called for every plugin, on the main thread, once per plugin manager. The factory must not
    open the connection (``connect`` does), so listing plugins never touches an instrument.
    """


@hookspec
def probepilot_register_commands(cli: Any) -> None:
    """Add sub-commands to the ``probepilot`` command line.

    :param cli: the root ``click.Group``; add commands with ``cli.add_command(...)``, and
        sub-commands of ``probepilot train`` and ``probepilot bench`` with
        ``cli.commands["train"].add_command(...)``. Typed ``Any`` so the core's hook module
        does not import click.
    :return: nothing.

    Called for every plugin, on the main thread, when the CLI starts. A plugin's commands may
    import their heavy dependencies inside the command function so ``--help`` stays fast.
    """


# ------------------------------------------------------------------------------------------
# Lifecycle and observers


@hookspec(historic=True)
def probepilot_configure(config: Config) -> None:
    """The effective, validated configuration is known.

    :param config: the :class:`probepilot.config.Config` of this process (read-only).
    :return: nothing.

    Historic: a plugin registered after the call still receives it. Called once per process on
    the main thread, after the config file was validated and before any run starts.
    """


@hookspec
def probepilot_session_start(session: RunInfo) -> None:
    """A run is starting.

    :param session: the run (a :class:`probepilot.contracts.RunInfo`: id, config, run folder).
    :return: nothing.

    Called for every plugin on the run's event-loop thread, after the run folder exists and the
    driver is connected, before the first action. Must return quickly and not block.
    """


@hookspec
def probepilot_session_finish(session: RunInfo, outcome: str) -> None:
    """A run has ended.

    :param session: the run that ended.
    :param outcome: ``"completed"`` (frame or time budget reached), ``"stopped"`` (operator),
        or ``"failed: <error>"``.
    :return: nothing.

    Called for every plugin on the run's event-loop thread, after the journal is flushed and
    the driver closed. Must return quickly and not block.
    """


@hookspec
def probepilot_event(event: Event) -> None:
    """Observe every event of a run (notifications, extra sinks, metrics).

    :param event: the :class:`probepilot.events.Event`, already journaled.
    :return: nothing.

    Called for every plugin on the run's event-loop thread for each event, in order. It must not
    block: hand slow work (network, disk) to a thread or queue. An exception is logged to the
    journal as ``plugin.error`` and never stops the run.
    """
