"""A driver wrapper that injects driver faults, for endurance runs and fault-recovery tests.

:class:`FaultyDriver` forwards every call to the driver it wraps; before a call it may raise a
timeout or a lost connection instead, at a seeded random rate, as a flaky network or a busy
controller would. It injects nothing into ``connect``/``close`` (the recovery path itself) or
into the synchronous ``capabilities``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from probepilot.contracts import Capability, Driver
from probepilot.errors import DriverConnectionError, DriverTimeoutError

#: Calls that never fail here: the session's recovery uses them.
SPARED = frozenset({"connect", "close", "capabilities", "name"})


class FaultyDriver:
    """Wraps ``driver``; each call fails with probability ``rate`` (seeded).

    :param driver: the driver that does the work.
    :param rate: probability that a call raises instead of reaching ``driver``.
    :param seed: seed of the fault sequence.
    :param only: restrict faults to these operation names (e.g. ``{"scan"}``).
    """

    def __init__(
        self,
        driver: Driver,
        rate: float,
        *,
        seed: int = 0,
        only: frozenset[str] | None = None,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate {rate} is not a probability")
        self.inner = driver
        self.rate = rate
        self.only = only
        self.name = getattr(driver, "name", "driver")
        self._rng = np.random.default_rng([seed, 0xFA017])
        #: Faults injected so far, by operation.
        self.injected: Counter[str] = Counter()

    def capabilities(self) -> frozenset[Capability]:
        return self.inner.capabilities()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name in SPARED or name.startswith("_") or not callable(target):
            return target
        if self.only is not None and name not in self.only:
            return target
        return self._wrap(name, target)

    def _wrap(
        self, name: str, target: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._rng.random() < self.rate:
                self.injected[name] += 1
                if self._rng.random() < 0.5:
                    raise DriverTimeoutError(f"{name}: no reply in time (injected fault)")
                raise DriverConnectionError(f"{name}: connection lost (injected fault)")
            return await target(*args, **kwargs)

        return call
