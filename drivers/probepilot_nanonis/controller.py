"""The virtual Nanonis controller: what each command does, on top of any probepilot ``Driver``.

The controller keeps what a Nanonis keeps and a ``Driver`` does not (scan frame, buffer, speed,
tip shaper and spectroscopy settings, drift compensation, signal list) and turns each command
into driver calls. It serves whatever driver it is given (the simulator, obtained by name from
the plugin registry, so this package never imports another plugin); timing therefore comes from
the driver, e.g. the simulator's ``time_scale``.

Handlers take the decoded arguments and return the reply's values (None when there are none).
A refusal raises :class:`~probepilot.errors.ProbepilotError` (the driver's ``LimitError``,
``InstrumentError`` ..., or :class:`Refused`); the server turns it into an error section after
the zero-filled return values. Commands with a ``wait`` flag of 0 run in the background.

Scanning lives in :mod:`probepilot_nanonis.controller_scan` (a mixin).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.contracts import Driver
from probepilot.errors import DriverError, NotSupportedError, ProbepilotError
from probepilot.model import SpectrumRequest
from probepilot_nanonis.controller_scan import ScanHandlers

log = logging.getLogger(__name__)

Values = dict[str, Any]
Handler = Callable[[Values], Awaitable[Values | None]]

MOTOR_AXES = ("x+", "x-", "y+", "y-", "z+", "z-")
SPECTRUM_ROWS = (("Bias (V)", ""), ("Current (A)", "Current"), ("LI Demod 1 X (A)", "dIdV"))


class Refused(ProbepilotError):
    """The virtual controller refuses a command (out-of-range value, wrong state)."""


class VirtualController(ScanHandlers):
    """State and command handlers; see the module docstring."""

    def __init__(self, driver: Driver, save_dir: Path) -> None:
        super().__init__(driver, save_dir)
        self.pulse = {"z_hold": 1, "mode": 2}  # hold z, absolute bias
        self.tip_shaper: Values = {
            "switch_off_delay": 0.05,
            "change_bias": 0,
            "bias": 0.0,
            "tip_lift": -1e-9,
            "lift_time_1": 0.1,
            "bias_lift": 1.0,
            "bias_settling": 0.05,
            "lift_height": 1e-9,
            "lift_time_2": 0.1,
            "end_wait": 0.05,
            "restore_feedback": 1,
        }
        self.drift: Values = {"on": 0, "vx": 0.0, "vy": 0.0, "vz": 0.0, "limit": 10.0}
        self.spectr: Values = {"start": -1.0, "end": 1.0, "points": 256}
        self.spectr_timing: Values = {
            "z_averaging_time": 0.1,
            "z_offset": 0.0,
            "initial_settling_time": 0.01,
            "max_slew_rate": 10.0,
            "settling_time": 1e-3,
            "integration_time": 1e-3,
            "end_settling_time": 0.01,
            "z_control_time": 0.1,
        }
        self.approaching: asyncio.Task[None] | None = None
        self.background: set[asyncio.Task[Any]] = set()
        self.handlers: dict[str, Handler] = {
            "Bias.Set": self.bias_set,
            "Bias.Get": self.bias_get,
            "Bias.Pulse": self.bias_pulse,
            "Current.Get": self.current_get,
            "ZCtrl.OnOffSet": self.feedback_set,
            "ZCtrl.OnOffGet": self.feedback_get,
            "ZCtrl.ZPosSet": self.z_set,
            "ZCtrl.ZPosGet": self.z_get,
            "ZCtrl.SetpntSet": self.setpoint_set,
            "ZCtrl.SetpntGet": self.setpoint_get,
            "ZCtrl.Withdraw": self.withdraw,
            "ZCtrl.Home": self.home,
            "FolMe.XYPosSet": self.xy_set,
            "FolMe.XYPosGet": self.xy_get,
            "TipShaper.PropsSet": self.tip_shaper_set,
            "TipShaper.PropsGet": self.tip_shaper_get,
            "TipShaper.Start": self.tip_shaper_start,
            "Motor.StartMove": self.motor_move,
            "AutoApproach.Open": self.nothing,
            "AutoApproach.OnOffSet": self.approach_set,
            "AutoApproach.OnOffGet": self.approach_get,
            "Piezo.DriftCompSet": self.drift_set,
            "Piezo.DriftCompGet": self.drift_get,
            "Piezo.RangeGet": self.range_get,
            "Signals.NamesGet": self.signal_names,
            "Signals.ValsGet": self.signal_values,
            "BiasSpectr.Open": self.nothing,
            "BiasSpectr.Start": self.spectrum_start,
            "BiasSpectr.LimitsSet": self.spectrum_limits_set,
            "BiasSpectr.LimitsGet": self.spectrum_limits_get,
            "BiasSpectr.PropsSet": self.spectrum_props_set,
            "BiasSpectr.TimingSet": self.spectrum_timing_set,
            "BiasSpectr.TimingGet": self.spectrum_timing_get,
            **self.scan_handlers(),
        }

    async def close(self) -> None:
        """Stop everything running in the background."""
        tasks = [t for t in (*self.background, self.approaching) if t is not None]
        if self.job is not None and self.job.task is not None:
            tasks.append(self.job.task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # ------------------------------------------------------------------ helpers

    async def nothing(self, args: Values) -> None:
        return None

    async def run(self, work: Coroutine[Any, Any, Any], wait: int, timeout_ms: int = -1) -> None:
        """Run ``work``; with ``wait``, reply when it is done (or after ``timeout_ms``, when it
        goes on in the background, as on the controller), otherwise reply at once."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self._finished)
        if not wait:
            return
        timeout = None if timeout_ms < 0 else timeout_ms / 1000
        await asyncio.wait({task}, timeout=timeout)
        if task.done():
            task.result()  # raise its error into the reply

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("virtual Nanonis: background command failed: %s", task.exception())

    # ------------------------------------------------------------------ bias and current

    async def bias_set(self, args: Values) -> None:
        await self.driver.set_bias(args["bias"])

    async def bias_get(self, args: Values) -> Values:
        return {"bias": await self.driver.get_bias()}

    async def bias_pulse(self, args: Values) -> None:
        for key in ("z_hold", "mode"):
            if args[key]:
                self.pulse[key] = args[key]
        voltage = float(args["bias"])
        if self.pulse["mode"] == 1:  # relative to the present bias
            voltage += await self.driver.get_bias()
        await self.run(self.driver.bias_pulse(voltage, float(args["width"])), args["wait"])

    async def current_get(self, args: Values) -> Values:
        return {"current": await self._current()}

    async def _current(self) -> float:
        """The driver contract has no current reading: tunnelling holds it at the setpoint, a
        fully retracted tip measures nothing."""
        top = (await self.driver.limits()).z_bounds()[1]
        if (await self.driver.get_tip_position()).z >= top - 1e-12:
            return 0.0
        return await self.driver.get_setpoint()

    # ------------------------------------------------------------------ z-controller

    async def feedback_set(self, args: Values) -> None:
        await self.driver.set_feedback(bool(args["on"]))

    async def feedback_get(self, args: Values) -> Values:
        return {"on": int(await self.driver.get_feedback())}

    async def z_set(self, args: Values) -> None:
        if await self.driver.get_feedback():
            raise Refused("the Z-controller is on; switch it off before setting Z")
        set_z = getattr(self.driver, "set_z", None)
        if set_z is None:
            raise NotSupportedError("the instrument behind this virtual Nanonis cannot set Z")
        await set_z(float(args["z"]))

    async def z_get(self, args: Values) -> Values:
        return {"z": (await self.driver.get_tip_position()).z}

    async def setpoint_set(self, args: Values) -> None:
        await self.driver.set_setpoint(args["setpoint"])

    async def setpoint_get(self, args: Values) -> Values:
        return {"setpoint": await self.driver.get_setpoint()}

    async def withdraw(self, args: Values) -> None:
        await self.run(self.driver.withdraw(), args["wait"], args["timeout_ms"])

    async def home(self, args: Values) -> None:
        await self.driver.set_feedback(False)

    # ------------------------------------------------------------------ follow me

    async def xy_set(self, args: Values) -> None:
        x, y = float(args["x"]), float(args["y"])
        hx, hy, _ = (r / 2 for r in (await self.driver.limits()).piezo_range)
        if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= hx and abs(y) <= hy):
            raise Refused(f"position ({x:.4g}, {y:.4g}) m is outside the piezo range")
        await self.run(self.driver.set_tip_position(x, y), args["wait"])

    async def xy_get(self, args: Values) -> Values:
        pos = await self.driver.get_tip_position()
        return {"x": pos.x, "y": pos.y}

    # ------------------------------------------------------------------ tip shaper

    async def tip_shaper_set(self, args: Values) -> None:
        for key, value in args.items():
            if key in ("change_bias", "restore_feedback"):
                if value:  # 0 no change, 1 true, 2 false
                    self.tip_shaper[key] = 1 if value == 1 else 0
            elif not math.isfinite(value):
                raise Refused(f"tip shaper {key} {value} is not a number")
            else:
                self.tip_shaper[key] = float(value)

    async def tip_shaper_get(self, args: Values) -> Values:
        return dict(self.tip_shaper)

    async def tip_shaper_start(self, args: Values) -> None:
        await self.run(self._shape_tip(), args["wait"], args["timeout_ms"])

    async def _shape_tip(self) -> None:
        props = self.tip_shaper
        depth = -props["tip_lift"]  # a negative lift ramps towards the surface
        if depth <= 0:
            return  # the tip only moves away: nothing touches
        bias = props["bias"] if props["change_bias"] else await self.driver.get_bias()
        await self.driver.dip(depth, bias)
        if not props["restore_feedback"]:
            await self.driver.set_feedback(False)

    # ------------------------------------------------------------------ motor and approach

    async def motor_move(self, args: Values) -> None:
        direction, steps = args["direction"], args["steps"]
        if direction >= len(MOTOR_AXES):
            raise Refused(f"motor direction {direction} is not 0-5")
        if steps < 1:
            raise Refused("a motor move needs at least one step")
        await self.run(self.driver.coarse_move(MOTOR_AXES[direction], steps), args["wait"])

    async def approach_set(self, args: Values) -> None:
        if self.approaching is not None and not self.approaching.done():
            if not args["on"]:
                self.approaching.cancel()
            return
        if args["on"]:
            self.approaching = asyncio.create_task(self._approach())

    async def _approach(self) -> None:
        try:
            await self.driver.approach()
        except DriverError as exc:
            log.warning("virtual Nanonis: auto-approach failed: %s", exc)

    async def approach_get(self, args: Values) -> Values:
        running = self.approaching is not None and not self.approaching.done()
        return {"on": int(running)}

    # ------------------------------------------------------------------ piezo

    async def drift_set(self, args: Values) -> None:
        on = args["on"]
        if on not in (0, 1, 2):
            raise Refused(f"drift compensation switch {on} is not 0 (no change), 1 or 2")
        velocities = [float(args[k]) for k in ("vx", "vy", "vz")]
        state = self.drift["on"] if on == 0 else int(on == 1)
        applied = velocities if state else [0.0, 0.0, 0.0]
        await self.driver.set_drift_compensation(*applied)
        self.drift.update(on=state, vx=velocities[0], vy=velocities[1], vz=velocities[2])
        if 0 < args["limit"] <= 100:
            self.drift["limit"] = float(args["limit"])

    async def drift_get(self, args: Values) -> Values:
        return {**self.drift, "x_saturated": 0, "y_saturated": 0, "z_saturated": 0}

    async def range_get(self, args: Values) -> Values:
        x, y, z = (await self.driver.limits()).piezo_range
        return {"x": x, "y": y, "z": z}

    # ------------------------------------------------------------------ signals

    async def signal_names(self, args: Values) -> Values:
        return {"names": [name for name, _ in self.signals]}

    async def signal_values(self, args: Values) -> Values:
        indexes = [int(i) for i in args["indexes"]]
        bad = [i for i in indexes if not 0 <= i < len(self.signals)]
        if bad:
            raise Refused(f"signal index {bad[0]} is not 0-{len(self.signals) - 1}")
        readers = [self.signals[i][1] for i in indexes]
        return {"values": np.array([await read() for read in readers])}

    # ------------------------------------------------------------------ bias spectroscopy

    async def spectrum_limits_set(self, args: Values) -> None:
        start, end = float(args["start"]), float(args["end"])
        if not (math.isfinite(start) and math.isfinite(end)) or start == end:
            raise Refused(f"sweep limits {start} V to {end} V are not a range")
        self.spectr.update(start=start, end=end)

    async def spectrum_limits_get(self, args: Values) -> Values:
        return {"start": self.spectr["start"], "end": self.spectr["end"]}

    async def spectrum_props_set(self, args: Values) -> None:
        if args["points"] < 0 or args["points"] == 1:
            raise Refused(f"a sweep needs at least 2 points, got {args['points']}")
        if args["points"]:  # 0: no change
            self.spectr["points"] = int(args["points"])

    async def spectrum_timing_set(self, args: Values) -> None:
        if not all(math.isfinite(v) and v >= 0 for v in args.values()):
            raise Refused("spectroscopy times must be numbers >= 0")
        self.spectr_timing.update(args)

    async def spectrum_timing_get(self, args: Values) -> Values:
        return dict(self.spectr_timing)

    async def spectrum_start(self, args: Values) -> Values | None:
        timing = self.spectr_timing
        request = SpectrumRequest(
            self.spectr["start"],
            self.spectr["end"],
            self.spectr["points"],
            settle_time=timing["settling_time"],
            integration_time=timing["integration_time"],
            channels=("Current", "dIdV"),
        )
        try:
            spectrum = await self.driver.spectrum(request)
        except NotSupportedError:  # an instrument without a lock-in
            request = SpectrumRequest(*_sweep(request), channels=("Current",))
            spectrum = await self.driver.spectrum(request)
        if not args["get_data"]:
            return None
        rows = [(name, spectrum.channels.get(key, spectrum.sweep)) for name, key in SPECTRUM_ROWS]
        rows = [(n, data) for n, data in rows if n == "Bias (V)" or data is not spectrum.sweep]
        return {
            "channels": [name for name, _ in rows],
            "data": np.stack([data for _, data in rows]),
            "parameters": np.zeros(0),
        }


def _sweep(request: SpectrumRequest) -> tuple[float, float, int, float, float]:
    return (
        request.start,
        request.stop,
        request.points,
        request.settle_time,
        request.integration_time,
    )
