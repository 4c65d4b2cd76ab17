"""How a dashboard (or any watcher) talks to a run: the event stream and the command interface.

A :class:`RunLink` is all a watcher may use. :class:`probepilot.session.Session` is one (the
embedded, in-process case); the ZeroMQ watcher of ``probepilot watch`` is another, so the same
dashboard works locally and from another machine (DESIGN.md §5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunLink(Protocol):
    """The event stream and command interface of one run."""

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`~probepilot.events.Event` of the run and every
        live :class:`~probepilot.session.ScanLine`, on the run's event loop; it must not block.
        Returns a function that unsubscribes."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The run's current state as msgpack-friendly values (a watcher that attaches late
        starts from it): ``run_id``, ``folder``, ``state``, ``driver``, ``policy``,
        ``policies`` (the registered names), ``stats`` (see ``Session.stats.as_dict``),
        ``limits`` (the safety limits, SI), ``tip_state``, ``budget`` (``frames`` and
        ``duration`` the run stops after, None for no limit)."""
        ...

    async def command(self, name: str, /, **args: Any) -> str:
        """Carry out an operator command (``pause``, ``resume``, ``stop``, ``withdraw``,
        ``switch_policy``, ``set_bias``, ``set_setpoint``); returns a one-line reply.
        Raises :class:`~probepilot.errors.ProbepilotError` for a bad command."""
        ...
