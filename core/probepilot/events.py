"""Events: what a run tells the world, one record at a time.

Every step of a run (frame scanned, findings, decision, safety rejection, driver error, operator
command) is an :class:`Event`. The same records go to the journal, to ``probepilot_event``
observers, to the dashboard and, across machines, over ZeroMQ, so their payload is restricted to
msgpack-friendly values (numbers, strings, lists, dicts, bytes) with arrays carried separately.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One record of a run's event stream.

    ``type`` is a dotted name (``"frame.persisted"``, ``"policy.decided"``, ``"safety.rejected"``
    ...); ``seq`` increases by one per event within a run; ``time`` is a POSIX timestamp (s);
    ``data`` holds msgpack-friendly values in SI units.
    """

    type: str
    seq: int
    data: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


# --------------------------------------------------------------------------------------------
# Event types. The session emits exactly these names and the journal's readers
# (``probepilot inspect RUN``) rely on them; the ``data`` keys each carries are listed here.
# Paths in ``data`` are relative to the run folder, with ``/`` separators.

#: First event of every journal. data: ``run_id``, ``probepilot`` (version), ``journal_version``
#: (int), ``config`` (file name of the effective config, or None), ``driver``, ``policy``.
RUN_STARTED = "run.started"
#: Last event of a journal that was closed properly. data: ``outcome`` (``"completed"``,
#: ``"stopped"`` or ``"failed: <error>"``, as ``probepilot_session_finish`` is told).
RUN_FINISHED = "run.finished"
#: The session entered a state; it stays there until the next one (or the journal's end).
#: data: ``state`` (``"approach"``, ``"scan"``, ``"condition"`` ...: the session's names).
STATE_CHANGED = "session.state"
#: A frame is durable in the run folder (written before anything analyses it). data: ``file``,
#: ``index`` (1-based), ``complete``, ``lines_done``, ``lines``, ``pixels``, ``size`` [m, m],
#: ``centre`` [m, m], ``bias`` (V), ``setpoint`` (A), ``started_at``, ``finished_at``.
FRAME_PERSISTED = "frame.persisted"
#: A point spectrum is durable. data: ``file``, ``index``, ``points``, ``complete``,
#: ``position`` [m, m].
SPECTRUM_PERSISTED = "spectrum.persisted"
#: A spectroscopy grid is durable. data: ``file``, ``index``, ``shape`` [ny, nx], ``complete``.
GRID_PERSISTED = "grid.persisted"
#: The analyzers' verdict on a frame. data: ``frame`` (its ``file``), ``tip_state`` (a
#: :class:`~probepilot.model.TipState` value; ``"good"`` counts as a good frame), ``findings``
#: (list of :class:`~probepilot.model.Finding` fields as maps).
FRAME_ANALYSED = "frame.analysed"
#: The policy chose an action. data: ``action`` (the action's fields as a map, with ``kind``).
POLICY_DECIDED = "policy.decided"
#: The safety envelope refused an action. data: ``action`` (map), ``reasons`` (list of str).
SAFETY_REJECTED = "safety.rejected"
#: An action reached the instrument and returned. data: ``action`` (map), ``source``
#: (``"policy"`` or ``"operator"``), ``duration`` (s).
ACTION_EXECUTED = "action.executed"
#: The driver raised. data: ``error`` (exception class name), ``message``, ``operation``.
DRIVER_ERROR = "driver.error"
#: An operator command arrived (pause, resume, stop, an action ...). data: ``command``, plus
#: the command's own arguments.
OPERATOR_COMMAND = "operator.command"
#: A plugin's observer hook raised. data: ``plugin``, ``error``.
PLUGIN_ERROR = "plugin.error"
