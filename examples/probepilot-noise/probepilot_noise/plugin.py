"""Hook implementations: the only place probepilot looks into this package."""

from __future__ import annotations

from typing import Any

from probepilot import hookimpl
from probepilot.registry import Registry
from probepilot_noise.driver import NoiseDriver, NoiseOptions


@hookimpl
def probepilot_register_drivers(registry: Registry[Any]) -> None:
    registry.register(
        "noise",
        NoiseDriver,
        options=NoiseOptions,
        description="example third-party driver: frames of Gaussian noise",
    )
