"""Bad input gives the documented typed errors and leaves the simulator usable and unchanged."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import sim_helpers as h

from probepilot.errors import LimitError, NotConnectedError, NotSupportedError, ProbepilotError
from probepilot.model import ScanArea, ScanSettings, SpectrumRequest
from probepilot_sim.driver import SimDriver

GOOD = h.settings(20e-9, 16, 0.1)


def _scan(**area: Any) -> ScanSettings:
    fields = {"centre": (0.0, 0.0), "size": (20e-9, 20e-9), "pixels": 16, "lines": 16}
    fields.update(area)
    return ScanSettings(ScanArea(**fields), 0.1)


BAD: list[tuple[str, Callable[[SimDriver], Awaitable[Any]], type[ProbepilotError]]] = [
    ("frame outside the piezo range", lambda d: d.scan(_scan(centre=(0.495e-6, 0.0))), LimitError),
    ("frame larger than the range", lambda d: d.scan(_scan(size=(2e-6, 2e-6))), LimitError),
    (
        "rotated frame poking out",
        lambda d: d.scan(_scan(size=(0.99e-6, 0.99e-6), angle=0.3)),
        LimitError,
    ),
    ("zero pixels", lambda d: d.scan(_scan(pixels=0)), LimitError),
    ("zero lines", lambda d: d.scan(_scan(lines=0)), LimitError),
    ("negative size", lambda d: d.scan(_scan(size=(-1e-9, 1e-9))), LimitError),
    ("NaN centre", lambda d: d.scan(_scan(centre=(math.nan, 0.0))), LimitError),
    ("too fast", lambda d: d.scan(ScanSettings(GOOD.area, 1e-6)), LimitError),
    ("bad direction", lambda d: d.scan(ScanSettings(GOOD.area, 0.1, "sideways")), LimitError),  # type: ignore[arg-type]
    (
        "unknown channel",
        lambda d: d.scan(ScanSettings(GOOD.area, 0.1, channels=("Phase",))),
        NotSupportedError,
    ),
    ("pulse beyond the bias range", lambda d: d.bias_pulse(11.0, 0.2), LimitError),
    ("negative pulse beyond", lambda d: d.bias_pulse(-10.5, 0.2), LimitError),
    ("zero-width pulse", lambda d: d.bias_pulse(3.0, 0.0), LimitError),
    ("pulse too long", lambda d: d.bias_pulse(3.0, 5.0), LimitError),
    ("dip deeper than the z range", lambda d: d.dip(1e-6, 0.0), LimitError),
    ("negative dip", lambda d: d.dip(-1e-9, 0.0), LimitError),
    ("dip bias beyond the range", lambda d: d.dip(1e-9, 50.0), LimitError),
    ("bias beyond the range", lambda d: d.set_bias(12.0), LimitError),
    ("negative setpoint", lambda d: d.set_setpoint(-1e-12), LimitError),
    ("tip outside the range", lambda d: d.set_tip_position(0.6e-6, 0.0), LimitError),
    ("unknown coarse axis", lambda d: d.coarse_move("q+", 1), LimitError),
    ("zero coarse steps", lambda d: d.coarse_move("x+", 0), LimitError),
    ("absurd drift compensation", lambda d: d.set_drift_compensation(1.0, 0.0, 0.0), LimitError),
    ("sweep beyond the range", lambda d: d.spectrum(SpectrumRequest(-20.0, 1.0, 11)), LimitError),
    ("one-point sweep", lambda d: d.spectrum(SpectrumRequest(-1.0, 1.0, 1)), LimitError),
]


@pytest.mark.parametrize(("what", "call", "error"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_a_typed_error_and_changes_nothing(
    what: str, call: Callable[[SimDriver], Awaitable[Any]], error: type[ProbepilotError]
) -> None:
    async def body() -> None:
        d = SimDriver(h.options(seed=4, tip="double"))
        await d.connect()
        m = d.microscope
        state = (m.bias, m.setpoint, m.x, m.y, m.clock, m.apex, m.feedback, m.withdrawn, m.offset)
        with pytest.raises(error) as info:
            await call(d)
        assert str(info.value).startswith("sim:"), "messages say where the problem is"
        assert state == (
            m.bias,
            m.setpoint,
            m.x,
            m.y,
            m.clock,
            m.apex,
            m.feedback,
            m.withdrawn,
            m.offset,
        )
        frame = await d.scan(GOOD)  # still usable
        assert frame.complete and np.isfinite(frame.topography).all()
        await d.close()

    asyncio.run(body())


def test_calls_before_connect_and_after_close_raise_not_connected() -> None:
    async def body() -> None:
        d = SimDriver(h.options())
        for call in (d.get_bias(), d.scan(GOOD), d.bias_pulse(1.0, 0.1), d.limits()):
            with pytest.raises(NotConnectedError):
                await call
        with pytest.raises(NotConnectedError):
            _ = d.microscope
        await d.connect()
        await d.scan(GOOD)
        await d.close()
        with pytest.raises(NotConnectedError):
            await d.dip(1e-9, 0.0)
        await d.connect()  # reconnecting keeps the instrument's state
        assert d.microscope.clock > 0

    asyncio.run(body())
