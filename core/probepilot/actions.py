"""Carrying out an action on a driver.

Only actions the safety envelope accepted reach :func:`perform`; the session, the conditioning
episodes and the operator commands all go through it, so there is one mapping from
:mod:`probepilot.model` actions to :class:`~probepilot.contracts.Driver` calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probepilot.contracts import Driver
from probepilot.model import (
    Action,
    Approach,
    CoarseStep,
    CompensateDrift,
    Dip,
    Frame,
    GridSpectrum,
    KeepImaging,
    Move,
    PointSpectrum,
    Pulse,
    Scan,
    SetBias,
    SetSetpoint,
    Stop,
    Withdraw,
)
from probepilot.spectroscopy import measure_grid, measure_point

if TYPE_CHECKING:
    from probepilot.instruments import Instruments
    from probepilot.model import Spectrum
    from probepilot.store.grid import Grid


async def perform(
    driver: Driver, action: Action, instruments: Instruments | None = None
) -> Frame | Spectrum | Grid | None:
    """Execute ``action`` on ``driver``; a :class:`Scan` returns its frame, a
    :class:`PointSpectrum` its spectrum, a :class:`GridSpectrum` its grid, the rest None.

    A pulse or dip with a ``position`` first moves the tip there (the conditioning spot the
    region search chose). :class:`KeepImaging` and :class:`Stop` are decisions for the session,
    not instrument commands, and do nothing here. With ``instruments``, a coarse step goes to
    their coarse positioner when they have one (else to the driver), and lock-in spectra read
    their lock-in (see :mod:`probepilot.spectroscopy`).

    :raises DriverError: whatever the driver or an instrument raises; nothing is retried here.
    """
    match action:
        case Pulse(voltage=voltage, width=width, position=position):
            if position is not None:
                await driver.set_tip_position(*position)
            await driver.bias_pulse(voltage, width)
        case Dip(depth=depth, bias=bias, position=position):
            if position is not None:
                await driver.set_tip_position(*position)
            await driver.dip(depth, bias)
        case Move(x=x, y=y):
            await driver.set_tip_position(x, y)
        case CoarseStep(axis=axis, steps=steps):
            positioner = instruments.positioner if instruments is not None else None
            if positioner is not None:
                await positioner.step(axis, steps)
            else:
                await driver.coarse_move(axis, steps)
        case Scan(settings=settings):
            return await driver.scan(settings)
        case CompensateDrift(vx=vx, vy=vy, vz=vz):
            await driver.set_drift_compensation(vx, vy, vz)
        case SetBias(voltage=voltage):
            await driver.set_bias(voltage)
        case SetSetpoint(current=current):
            await driver.set_setpoint(current)
        case Withdraw():
            await driver.withdraw()
        case Approach():
            await driver.approach()
        case PointSpectrum():
            return await measure_point(driver, action, instruments)
        case GridSpectrum():
            return await measure_grid(driver, action, instruments)
        case KeepImaging() | Stop():
            pass
    return None
