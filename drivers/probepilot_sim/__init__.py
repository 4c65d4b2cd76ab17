"""probepilot's simulated scanning tunnelling microscope (a built-in driver plugin).

Modules, from the physics up:

- :mod:`~probepilot_sim.surfaces` (with :mod:`~probepilot_sim.lattice`,
  :mod:`~probepilot_sim.features`, :mod:`~probepilot_sim.sxm_height`): what is imaged;
- :mod:`~probepilot_sim.tip`: the apex as mini-tips, the tip states;
- :mod:`~probepilot_sim.imaging`: constant-current height from the mini-tips;
- :mod:`~probepilot_sim.drift`, :mod:`~probepilot_sim.noise`,
  :mod:`~probepilot_sim.acquisition`: line-by-line acquisition with drift, creep, feedback lag,
  noise and tip changes;
- :mod:`~probepilot_sim.conditioning`: what pulses and dips do to the tip and the surface;
- :mod:`~probepilot_sim.spectroscopy`: I(V) and dI/dV;
- :mod:`~probepilot_sim.microscope`: the instrument's state and operations;
- :mod:`~probepilot_sim.driver`: :class:`SimDriver`, the asynchronous driver contract;
- :mod:`~probepilot_sim.plugin`: registration and ``probepilot sim-preview``.

Only the light parts are imported here; ``SimDriver`` loads numpy/scipy on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probepilot.model import DEFAULT_CONDITIONING_ACTIONS as DEFAULT_ACTIONS
from probepilot_sim.options import SimOptions

if TYPE_CHECKING:
    from probepilot_sim.driver import SimDriver

__all__ = ["DEFAULT_ACTIONS", "SimDriver", "SimOptions"]


def __getattr__(name: str) -> Any:
    if name == "SimDriver":
        from probepilot_sim.driver import SimDriver

        return SimDriver
    raise AttributeError(f"module 'probepilot_sim' has no attribute {name!r}")
