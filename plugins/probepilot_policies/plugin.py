"""Registers the built-in conditioning policies with probepilot, and ``probepilot bench
policies``.

Kept light: the benchmark (and with it the episode runner) is imported only when the command is
asked for. The gymnasium environment (``probepilot_policies.env``) is never imported here, so
the plugin loads without the ``rl`` extra. ``probepilot train ga`` and ``probepilot train rl``
(:mod:`probepilot_policies.train_cli`) likewise import their training code only when run.
"""

from __future__ import annotations

from typing import Any

from probepilot import hookimpl
from probepilot.registry import Registry
from probepilot_policies.ga import GaOptions, GaPolicy
from probepilot_policies.random_policy import RandomOptions, RandomPolicy
from probepilot_policies.rl import RlOptions, RlPolicy
from probepilot_policies.rules import RulesOptions, RulesPolicy


@hookimpl
def probepilot_register_policies(registry: Registry[Any]) -> None:
    registry.register(
        "random",
        RandomPolicy,
        options=RandomOptions,
        description="uniformly random conditioning actions: the baseline every comparison needs",
    )
    registry.register(
        "rules",
        RulesPolicy,
        options=RulesOptions,
        description="escalation tables per tip state: gentle pulses and dips first, then harsher, "
        "then a fresh area",
    )
    registry.register(
        "ga",
        GaPolicy,
        options=GaOptions,
        description="recipes of pulses and dips per tip state, evolved by a genetic algorithm "
        "on the simulator; can keep evolving online",
    )
    registry.register(
        "rl",
        RlPolicy,
        options=RlOptions,
        description="double DQN over the default actions with clean-area masking (numpy "
        "inference; learning online needs torch)",
    )


@hookimpl
def probepilot_register_commands(cli: Any) -> None:
    from probepilot_policies.bench import policies_command

    cli.commands["bench"].add_command(policies_command)
    from probepilot_policies.train_cli import ga_command, rl_command

    cli.commands["train"].add_command(ga_command)
    cli.commands["train"].add_command(rl_command)
