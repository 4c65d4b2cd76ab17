"""probepilot's built-in frame analyzers (a plugin like any other).

- ``double_tip`` (:mod:`~probepilot_analyzers.double_tip`): P(double), the second apex's offset
  and weight, from the ghost copy it draws of every feature; no training.
- ``drift`` (:mod:`~probepilot_analyzers.drift`): drift velocity and its uncertainty from the
  shift between overlapping frames, through a Kalman filter that also flags creep.
- ``tip_changes`` (:mod:`~probepilot_analyzers.tip_changes`): sudden apex changes during a
  frame (streaks, jumps, forward/backward disagreement), with their lines.
- ``roughness`` (:mod:`~probepilot_analyzers.roughness`): is the area flat and clean enough to
  image or to condition the tip on; the largest clean square.

:mod:`~probepilot_analyzers.plugin` registers them and the ``probepilot analyze`` and
``probepilot replay`` commands. Importing this package loads nothing heavy.
"""

from __future__ import annotations
