"""The auxiliary instruments of a run: lock-in amplifiers, coarse positioners, preamplifiers.

``instruments = ["sr830", "anc300"]`` in the config selects instruments registered through
``probepilot_register_instruments``; :meth:`Instruments.build` builds them with their
``[instruments.NAME]`` options. A run connects them after its driver and closes them at its end.
What each is used for follows from the protocol it implements
(:mod:`probepilot.contracts`):

* a :class:`~probepilot.contracts.LockIn` measures dI/dV for spectra whose ``didv`` is
  ``"lockin"`` (see :func:`probepilot.spectroscopy.lockin_sweep`);
* a :class:`~probepilot.contracts.Positioner` makes the coarse moves
  (:class:`~probepilot.model.CoarseStep`) instead of the STM controller;
* a :class:`~probepilot.contracts.Preamplifier` tells the lock-in conversion its gain (V/A).

The first instrument of each kind is the one used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probepilot.contracts import Instrument, LockIn, Positioner, Preamplifier
from probepilot.errors import NotSupportedError, PluginError, ProbepilotError

if TYPE_CHECKING:
    from probepilot.config import Config
    from probepilot.plugins import PluginManager

__all__ = ["Instruments", "LockInSetup", "kind_of"]

#: Settle time after each bias step of a lock-in sweep, in output time constants (a 24 dB/oct
#: filter settles to 0.1 % in about 10 time constants, a 12 dB/oct one to 1 % in about 7).
SETTLE_TIME_CONSTANTS = 5.0


def kind_of(instrument: object) -> str | None:
    """``"lockin"``, ``"positioner"``, ``"preamplifier"``, or None for none of them."""
    if isinstance(instrument, LockIn):
        return "lockin"
    if isinstance(instrument, Positioner):
        return "positioner"
    if isinstance(instrument, Preamplifier):
        return "preamplifier"
    return None


@dataclass(frozen=True, slots=True)
class LockInSetup:
    """What a lock-in sweep needs: the lock-in, the bias modulation at the junction (V rms), the
    preamplifier's gain (V/A) and the settle time after each bias step (s).

    dI/dV = X / (gain * modulation): the lock-in measures the preamplifier output's component at
    the reference frequency, whose rms amplitude is gain * dI/dV * modulation.
    """

    lockin: LockIn
    modulation: float
    gain: float
    settle: float


class Instruments:
    """The run's instruments by name, in config order.

    :param items: the instruments; ``{}`` for a run without any.
    :param modulation_ratio: junction volts per volt of the lock-in's sine output (a 1:100
        divider in the bias line is 0.01).
    :param preamp_gain: the current preamplifier's gain (V/A) when no
        :class:`~probepilot.contracts.Preamplifier` is among the instruments.
    """

    def __init__(
        self,
        items: Mapping[str, Instrument] | None = None,
        *,
        modulation_ratio: float = 1.0,
        preamp_gain: float = 1e9,
    ) -> None:
        self.items: dict[str, Instrument] = dict(items or {})
        self.modulation_ratio = modulation_ratio
        self.preamp_gain = preamp_gain
        self._connected: list[Instrument] = []

    @classmethod
    def build(cls, config: Config, manager: PluginManager) -> Instruments:
        """The instruments ``config.instruments`` names, built with their options.

        :raises PluginError: one is not installed, or builds something that is neither a
            lock-in, a positioner nor a preamplifier.
        """
        items: dict[str, Instrument] = {}
        for name in config.instruments:
            instrument = config.build(manager, "instrument", name)
            if kind_of(instrument) is None:
                raise PluginError(
                    f"instrument {name!r} is neither a LockIn, a Positioner nor a Preamplifier "
                    "(see probepilot.contracts)",
                    hint="the plugin that registers it must implement one of those protocols",
                )
            items[name] = instrument
        spectroscopy = config.spectroscopy
        return cls(
            items,
            modulation_ratio=spectroscopy.modulation_ratio,
            preamp_gain=spectroscopy.preamp_gain,
        )

    # -- by kind ---------------------------------------------------------------------------------

    def _first(self, kind: str) -> Instrument | None:
        return next((i for i in self.items.values() if kind_of(i) == kind), None)

    @property
    def lockin(self) -> LockIn | None:
        """The first lock-in amplifier, if any."""
        found = self._first("lockin")
        return found if isinstance(found, LockIn) else None

    @property
    def positioner(self) -> Positioner | None:
        """The first coarse positioner, if any."""
        found = self._first("positioner")
        return found if isinstance(found, Positioner) else None

    @property
    def preamplifier(self) -> Preamplifier | None:
        """The first current preamplifier, if any."""
        found = self._first("preamplifier")
        return found if isinstance(found, Preamplifier) else None

    async def lockin_setup(self) -> LockInSetup:
        """The lock-in sweep's parameters, read from the instruments now.

        :raises NotSupportedError: there is no lock-in among the instruments.
        """
        lockin = self.lockin
        if lockin is None:
            raise NotSupportedError(
                "a lock-in spectrum needs a lock-in amplifier among the run's instruments",
                hint='add one to `instruments` (e.g. instruments = ["sr830"]) or set '
                "[spectroscopy] didv to 'driver' or 'numerical'",
            )
        _, amplitude = await lockin.get_reference()
        tau = await lockin.get_time_constant()
        preamp = self.preamplifier
        gain = await preamp.get_gain() if preamp is not None else self.preamp_gain
        return LockInSetup(
            lockin, amplitude * self.modulation_ratio, gain, SETTLE_TIME_CONSTANTS * tau
        )

    # -- lifetime --------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect every instrument, in order; if one fails, close those already connected
        and re-raise its error."""
        for instrument in self.items.values():
            if instrument in self._connected:
                continue
            try:
                await instrument.connect()
            except BaseException:
                await self.close()
                raise
            self._connected.append(instrument)

    async def close(self) -> None:
        """Close every connected instrument (errors on closing are swallowed: the run is
        ending and each instrument's own close is idempotent)."""
        while self._connected:
            instrument = self._connected.pop()
            with contextlib.suppress(ProbepilotError, OSError):
                await instrument.close()

    def names(self) -> list[str]:
        return list(self.items)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self.items.values())

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)
