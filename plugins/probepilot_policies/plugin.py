"""Registers the built-in conditioning policies with probepilot."""

from __future__ import annotations

from typing import Any

from probepilot import hookimpl
from probepilot.registry import Registry
from probepilot_policies.random_policy import RandomOptions, RandomPolicy


@hookimpl
def probepilot_register_policies(registry: Registry[Any]) -> None:
    registry.register(
        "random",
        RandomPolicy,
        options=RandomOptions,
        description="uniformly random conditioning actions: the baseline every comparison needs",
    )
