"""The driver-contract conformance suite every driver's tests run.

Subclass :class:`DriverConformance` in a test module (its name must start with ``Test`` for pytest
to collect it) and provide a ``driver`` fixture that returns a **fresh, not yet connected**
driver::

    import pytest
    from probepilot.testing import DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver(self):
            return MyDriver(MyOptions(host="127.0.0.1", port=free_port))

Each test connects the driver itself, inside the event loop that runs the test, and closes it at
the end: drivers built on asyncio streams bind their sockets to the loop that opened them, so a
driver connected in a fixture's loop could not be used from the test's. It also lets the suite
check what happens *before* ``connect()``.

The suite checks the whole :class:`~probepilot.contracts.Driver` contract generically:
``NotConnectedError`` before connect and after close, idempotent connect/close, capabilities
consistent with which optional operations raise ``NotSupportedError``, round trips of bias,
setpoint, feedback and tip position, ``LimitError`` (and no state change) for values outside
:meth:`~probepilot.contracts.Driver.limits`, withdraw/approach, a small scan (shapes, metadata,
one progress callback per line, completeness), cancellation and callback failures that leave the
driver usable, and pulses, dips, spectra, coarse moves and drift compensation where supported.
Class attributes (``scan_pixels``, ``scan_lines``, ``scan_size``, ``line_time``, ``timeout``)
adapt the frame and the per-test time limit to slow instruments; :meth:`prepare_for_scan` can be
overridden where getting into tunnelling needs more than ``approach()``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from probepilot.contracts import Capability, Driver
from probepilot.errors import LimitError, NotConnectedError, NotSupportedError
from probepilot.model import (
    Frame,
    InstrumentLimits,
    LineProgress,
    ScanArea,
    ScanDirection,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
)

Body = Callable[[Driver], Awaitable[None]]


def run_with(driver: Driver, body: Body, *, connect: bool = True, timeout: float = 60.0) -> None:
    """Run ``body(driver)`` in a fresh event loop, connected first (unless ``connect`` is
    False) and closed afterwards, within ``timeout`` seconds."""

    async def main() -> None:
        try:
            if connect:
                await driver.connect()
            await asyncio.wait_for(body(driver), timeout)
        finally:
            await driver.close()

    asyncio.run(main())


# Optional operations: capability -> (description, call with harmless arguments).
def _optional_calls(settings: ScanSettings) -> dict[Capability, Callable[[Driver], Awaitable[Any]]]:
    return {
        Capability.APPROACH: lambda d: d.approach(),
        Capability.TIP_MOVE: lambda d: d.set_tip_position(0.0, 0.0),
        Capability.SCAN: lambda d: d.scan(settings),
        Capability.BIAS_PULSE: lambda d: d.bias_pulse(0.5, 0.01),
        Capability.DIP: lambda d: d.dip(0.1e-9, 0.0),
        Capability.SPECTRUM: lambda d: d.spectrum(SpectrumRequest(-0.1, 0.1, 5)),
        Capability.COARSE_MOVE: lambda d: d.coarse_move("z+", 1),
        Capability.DRIFT_COMPENSATION: lambda d: d.set_drift_compensation(0.0, 0.0, 0.0),
    }


def _mandatory_calls() -> dict[str, Callable[[Driver], Awaitable[Any]]]:
    return {
        "get_bias": lambda d: d.get_bias(),
        "set_bias": lambda d: d.set_bias(0.1),
        "get_setpoint": lambda d: d.get_setpoint(),
        "set_setpoint": lambda d: d.set_setpoint(50e-12),
        "get_feedback": lambda d: d.get_feedback(),
        "set_feedback": lambda d: d.set_feedback(True),
        "withdraw": lambda d: d.withdraw(),
        "get_tip_position": lambda d: d.get_tip_position(),
    }


class DriverConformance:
    """The shared driver-contract tests; see the module docstring for how to use them."""

    scan_pixels: int = 16
    scan_lines: int = 12
    scan_size: float = 10e-9
    line_time: float = 0.01
    timeout: float = 60.0

    @pytest.fixture
    def driver(self) -> Driver:
        """Override: return a fresh, unconnected driver."""
        pytest.fail("a DriverConformance subclass must provide a `driver` fixture")

    # ---------------------------------------------------------------- helpers

    def run(self, driver: Driver, body: Body, *, connect: bool = True) -> None:
        run_with(driver, body, connect=connect, timeout=self.timeout)

    def settings(self, direction: ScanDirection = "down", **area: Any) -> ScanSettings:
        fields: dict[str, Any] = {
            "centre": (0.0, 0.0),
            "size": (self.scan_size, self.scan_size),
            "pixels": self.scan_pixels,
            "lines": self.scan_lines,
        }
        fields.update(area)
        return ScanSettings(ScanArea(**fields), self.line_time, direction)

    async def prepare_for_scan(self, driver: Driver) -> None:
        """Get into tunnelling before a scan; override for instruments that need more."""
        if Capability.APPROACH in driver.capabilities():
            await driver.approach()
        else:
            await driver.set_feedback(True)

    @staticmethod
    def supports(driver: Driver, capability: Capability) -> bool:
        return capability in driver.capabilities()

    def need(self, driver: Driver, capability: Capability) -> None:
        if not self.supports(driver, capability):
            pytest.skip(f"driver {driver.name!r} does not declare {capability.value}")

    # ---------------------------------------------------------------- identity and lifecycle

    def test_satisfies_the_driver_protocol(self, driver: Driver) -> None:
        assert isinstance(driver, Driver)
        assert isinstance(driver.name, str) and driver.name
        caps = driver.capabilities()
        assert isinstance(caps, frozenset)
        assert all(isinstance(c, Capability) for c in caps)

    def test_calls_before_connect_raise_not_connected(self, driver: Driver) -> None:
        optional = _optional_calls(self.settings())

        async def body(d: Driver) -> None:
            for name, call in _mandatory_calls().items():
                with pytest.raises(NotConnectedError):
                    await call(d)
                    pytest.fail(f"{name} before connect() did not raise NotConnectedError")
            for cap, call in optional.items():
                expected: Any = (
                    NotConnectedError
                    if cap in d.capabilities()
                    else (
                        NotConnectedError,
                        NotSupportedError,
                    )
                )
                with pytest.raises(expected):
                    await call(d)
            await d.close()  # closing a never-connected driver is fine

        self.run(driver, body, connect=False)

    def test_connect_and_close_are_idempotent(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            await d.connect()
            await d.connect()
            bias = await d.get_bias()
            assert math.isfinite(bias)
            await d.close()
            await d.close()
            with pytest.raises(NotConnectedError):
                await d.get_bias()
            await d.connect()
            assert math.isfinite(await d.get_bias())

        self.run(driver, body, connect=False)

    def test_limits_are_sane(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            lim = await d.limits()
            assert isinstance(lim, InstrumentLimits)
            assert len(lim.piezo_range) == 3 and all(r > 0 for r in lim.piezo_range)
            assert lim.bias_range[0] < 0 < lim.bias_range[1]
            assert lim.max_setpoint > 0

        self.run(driver, body)

    def test_unsupported_operations_raise_not_supported(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            for cap, call in _optional_calls(self.settings()).items():
                if cap not in d.capabilities():
                    with pytest.raises(NotSupportedError):
                        await call(d)

        self.run(driver, body)

    # ---------------------------------------------------------------- settings

    def test_bias_round_trip(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            low, high = (await d.limits()).bias_range
            for value in (0.25 * high, 0.5 * low, 0.1):
                await d.set_bias(value)
                assert await d.get_bias() == pytest.approx(value, rel=1e-6, abs=1e-6)

        self.run(driver, body)

    def test_setpoint_round_trip(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            top = (await d.limits()).max_setpoint
            for value in (min(50e-12, top / 2), min(200e-12, top)):
                await d.set_setpoint(value)
                assert await d.get_setpoint() == pytest.approx(value, rel=1e-6)

        self.run(driver, body)

    def test_out_of_range_values_raise_limit_error_and_change_nothing(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            lim = await d.limits()
            bias, setpoint = await d.get_bias(), await d.get_setpoint()
            for value in (lim.bias_range[1] + 1.0, lim.bias_range[0] - 1.0, math.nan):
                with pytest.raises(LimitError):
                    await d.set_bias(value)
            for value in (-1e-12, 0.0, 2 * lim.max_setpoint, math.nan):
                with pytest.raises(LimitError):
                    await d.set_setpoint(value)
            assert await d.get_bias() == bias
            assert await d.get_setpoint() == setpoint

        self.run(driver, body)

    def test_feedback_on_off(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            await d.set_feedback(False)
            assert await d.get_feedback() is False
            await d.set_feedback(True)
            assert await d.get_feedback() is True

        self.run(driver, body)

    def test_withdraw_then_approach(self, driver: Driver) -> None:
        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            z_before = (await d.get_tip_position()).z
            await d.withdraw()
            assert await d.get_feedback() is False
            assert (await d.get_tip_position()).z >= z_before
            if self.supports(d, Capability.APPROACH):
                await d.approach()
                assert await d.get_feedback() is True

        self.run(driver, body)

    def test_tip_position_round_trip_and_limits(self, driver: Driver) -> None:
        self.need(driver, Capability.TIP_MOVE)

        async def body(d: Driver) -> None:
            hx, hy, _ = (r / 2 for r in (await d.limits()).piezo_range)
            x, y = 0.1 * hx, -0.05 * hy
            await d.set_tip_position(x, y)
            pos = await d.get_tip_position()
            assert pos.x == pytest.approx(x, rel=1e-6, abs=1e-12)
            assert pos.y == pytest.approx(y, rel=1e-6, abs=1e-12)
            for bad in ((1.5 * hx, 0.0), (0.0, -1.5 * hy), (math.nan, 0.0)):
                with pytest.raises(LimitError):
                    await d.set_tip_position(*bad)
            pos = await d.get_tip_position()
            assert (pos.x, pos.y) == pytest.approx((x, y), rel=1e-6, abs=1e-12)

        self.run(driver, body)

    # ---------------------------------------------------------------- scanning

    def check_frame(
        self, frame: Frame, settings: ScanSettings, bias: float, setpoint: float
    ) -> None:
        """Shape and metadata checks of a completed frame."""
        area = settings.area
        assert isinstance(frame, Frame)
        assert "Z" in frame.channels
        for name, channel in frame.channels.items():
            assert channel.name == name
            assert channel.forward.shape == (area.lines, area.pixels)
            assert np.isfinite(channel.forward).all(), f"{name} forward has NaN in a full frame"
            if channel.backward is not None:
                assert channel.backward.shape == (area.lines, area.pixels)
                assert np.isfinite(channel.backward).all()
        assert frame.area == area
        assert frame.direction == settings.direction
        assert frame.line_time == pytest.approx(settings.line_time)
        assert frame.lines_done == area.lines
        assert frame.complete
        assert frame.bias == pytest.approx(bias)
        assert frame.setpoint == pytest.approx(setpoint)
        assert frame.finished_at >= frame.started_at
        assert np.array_equal(frame.topography, frame.channels["Z"].forward)

    def test_scan_reports_every_line_and_returns_a_complete_frame(self, driver: Driver) -> None:
        self.need(driver, Capability.SCAN)
        settings = self.settings()
        seen: list[LineProgress] = []

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            frame = await d.scan(settings, seen.append)
            self.check_frame(frame, settings, await d.get_bias(), await d.get_setpoint())
            assert [p.index for p in seen] == list(range(settings.area.lines))
            assert all(p.total == settings.area.lines for p in seen)
            for p in seen:
                for name, line in p.forward.items():
                    assert np.array_equal(line, frame.channels[name].forward[p.index])
                for name, line in p.backward.items():
                    backward = frame.channels[name].backward
                    assert backward is not None
                    assert np.array_equal(line, backward[p.index])
            # Scanning needs no callback.
            again = await d.scan(settings)
            assert again.complete

        self.run(driver, body)

    def test_scan_upwards_and_non_square(self, driver: Driver) -> None:
        self.need(driver, Capability.SCAN)
        settings = self.settings(
            "up", size=(self.scan_size, self.scan_size / 2), lines=max(2, self.scan_lines // 2)
        )

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            frame = await d.scan(settings)
            self.check_frame(frame, settings, await d.get_bias(), await d.get_setpoint())

        self.run(driver, body)

    def test_impossible_frames_raise_limit_error_and_leave_the_driver_usable(
        self, driver: Driver
    ) -> None:
        self.need(driver, Capability.SCAN)

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            px, py, _ = (await d.limits()).piezo_range
            bad = [
                self.settings(size=(2 * px, 2 * py)),
                self.settings(centre=(px, 0.0)),
                self.settings(pixels=0),
                self.settings(lines=0),
                ScanSettings(self.settings().area, 0.0),
                ScanSettings(self.settings().area, -1.0),
            ]
            for settings in bad:
                with pytest.raises(LimitError):
                    await d.scan(settings)
            assert (await d.scan(self.settings())).complete

        self.run(driver, body)

    def test_cancelled_scan_leaves_the_driver_usable(self, driver: Driver) -> None:
        self.need(driver, Capability.SCAN)
        settings = self.settings(lines=max(self.scan_lines, 8))

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            task: asyncio.Task[Frame] | None = None
            seen: list[int] = []

            def cancel_after_two(p: LineProgress) -> None:
                seen.append(p.index)
                if p.index == 1 and task is not None:
                    task.cancel()

            task = asyncio.create_task(d.scan(settings, cancel_after_two))
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(seen) < settings.area.lines, "the scan ran to the end despite cancel()"
            assert math.isfinite(await d.get_bias())
            assert (await d.scan(self.settings())).complete

        self.run(driver, body)

    def test_failing_progress_callback_propagates_and_leaves_the_driver_usable(
        self, driver: Driver
    ) -> None:
        self.need(driver, Capability.SCAN)

        class Boom(Exception):
            pass

        def explode(p: LineProgress) -> None:
            if p.index == 1:
                raise Boom

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            with pytest.raises(Boom):
                await d.scan(self.settings(), explode)
            assert (await d.scan(self.settings())).complete

        self.run(driver, body)

    # ---------------------------------------------------------------- tip conditioning

    def test_bias_pulse(self, driver: Driver) -> None:
        self.need(driver, Capability.BIAS_PULSE)

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            lim = await d.limits()
            bias = await d.get_bias()
            await d.bias_pulse(min(1.0, lim.bias_range[1]), 0.01)
            assert await d.get_bias() == pytest.approx(bias)
            biggest = max(abs(lim.bias_range[0]), abs(lim.bias_range[1]))
            for voltage, width in ((10 * biggest, 0.01), (-10 * biggest, 0.01), (1.0, -0.1)):
                with pytest.raises(LimitError):
                    await d.bias_pulse(voltage, width)
            assert await d.get_bias() == pytest.approx(bias)

        self.run(driver, body)

    def test_dip(self, driver: Driver) -> None:
        self.need(driver, Capability.DIP)

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            lim = await d.limits()
            feedback = await d.get_feedback()
            await d.dip(0.3e-9, 0.0)
            assert await d.get_feedback() == feedback
            for depth in (-1e-9, 0.0, 2 * lim.piezo_range[2], math.nan):
                with pytest.raises(LimitError):
                    await d.dip(depth, 0.0)

        self.run(driver, body)

    # ---------------------------------------------------------------- the rest

    def test_spectrum(self, driver: Driver) -> None:
        self.need(driver, Capability.SPECTRUM)

        async def body(d: Driver) -> None:
            await self.prepare_for_scan(d)
            lim = await d.limits()
            bias = await d.get_bias()
            request = SpectrumRequest(-0.5, 0.5, 21)
            spectrum = await d.spectrum(request)
            assert isinstance(spectrum, Spectrum)
            assert spectrum.sweep.shape == (21,)
            assert spectrum.sweep[0] == pytest.approx(-0.5) and spectrum.sweep[-1] == pytest.approx(
                0.5
            )
            assert np.all(np.diff(spectrum.sweep) > 0)
            assert spectrum.complete
            for name in request.channels:
                assert spectrum.channels[name].shape == (21,)
                assert np.isfinite(spectrum.channels[name]).all()
                assert name in spectrum.units
            assert await d.get_bias() == pytest.approx(bias)
            with pytest.raises(LimitError):
                await d.spectrum(SpectrumRequest(0.0, 2 * lim.bias_range[1] + 1, 5))

        self.run(driver, body)

    def test_coarse_move(self, driver: Driver) -> None:
        self.need(driver, Capability.COARSE_MOVE)

        async def body(d: Driver) -> None:
            await d.withdraw()
            await d.coarse_move("x+", 1)
            await d.coarse_move("z+", 1)
            with pytest.raises(LimitError):
                await d.coarse_move("w+", 1)
            if self.supports(d, Capability.APPROACH):
                await d.approach()
                assert await d.get_feedback() is True

        self.run(driver, body)

    def test_drift_compensation(self, driver: Driver) -> None:
        self.need(driver, Capability.DRIFT_COMPENSATION)

        async def body(d: Driver) -> None:
            await d.set_drift_compensation(1e-12, -2e-12, 0.0)
            for bad in ((1.0, 0.0, 0.0), (0.0, math.nan, 0.0)):
                with pytest.raises(LimitError):
                    await d.set_drift_compensation(*bad)
            await d.set_drift_compensation(0.0, 0.0, 0.0)

        self.run(driver, body)
