"""Acquiring one frame on a Nanonis controller.

Configure (``Scan.FrameSet``, ``Scan.BufferSet`` checked back with ``Scan.BufferGet``,
``Scan.SpeedSet`` by line time), start (``Scan.Action``), then follow progress on the *status*
connection: poll ``Scan.StatusGet`` and ``Scan.FrameDataGrab`` and report each line once both its
forward and backward traces are complete, so the command connection stays free (a stop goes
through at once, even while a large grab is in flight).

Polling is at most once per line (``max(poll_interval, 2 x line_time)``). A line is complete
when its row has no NaN: the controller fills unscanned pixels with NaN.

Orientation (see :mod:`probepilot_nanonis.virtual_scan`): ``Scan.FrameDataGrab`` rows run from
the top of the frame, backward lines already in x order; the model's row 0 is the first line
scanned, so upward scans are flipped. ASSUMPTION to verify on each controller version: this is
what the Nanonis scan module displays and what the virtual Nanonis serves.

A scan stopped on the controller (by an operator, say) returns a partial frame
(``lines_done < lines``). Cancellation, or a progress callback that raises, stops the scan on
the controller before the exception propagates; the partial frame is then kept on the driver
(``NanonisDriver.last_frame``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from probepilot.contracts import ProgressCallback
from probepilot.errors import DriverError, InstrumentError, ProtocolError
from probepilot.model import Channel, FloatArray, Frame, LineProgress, ScanSettings
from probepilot_nanonis.connection import Connection
from probepilot_nanonis.wire import nice_f32

START, STOP = 0, 1


@dataclass(frozen=True, slots=True)
class Recorded:
    """One channel to record: model name, controller signal index, signal name, unit."""

    name: str
    index: int
    signal: str
    unit: str


class Acquisition:
    """One frame: configure, start, follow, assemble; see the module docstring."""

    def __init__(
        self,
        main: Connection,
        status: Connection,
        settings: ScanSettings,
        channels: list[Recorded],
        *,
        poll_interval: float,
        keep_partial: Callable[[Frame], None],
    ) -> None:
        self.main = main
        self.status = status
        self.settings = settings
        self.channels = channels
        self.interval = max(poll_interval, 2 * settings.line_time)
        self.keep_partial = keep_partial
        area = settings.area
        self.shape = (area.lines, area.pixels)
        nan = np.full(self.shape, np.nan)
        self.data = {c.name: (nan.copy(), nan.copy()) for c in channels}
        self.lines_done = 0
        self.bias = self.setpoint = 0.0
        self.started_at = 0.0
        self.path = ""

    async def run(self, progress: ProgressCallback | None) -> Frame:
        await self._configure()
        self.started_at = time.time()
        up = self.settings.direction == "up"
        await self.main.call("Scan.Action", {"action": START, "direction": int(up)})
        try:
            await self._follow(progress)
        except BaseException:
            await self._stop()
            self.keep_partial(self._frame())
            raise
        if self.lines_done == self.shape[0]:
            # The saved file's path, if the controller has one for this scan (metadata only).
            with contextlib.suppress(InstrumentError):
                reply = await self.main.call("Scan.WaitEndOfScan", {"timeout_ms": 0})
                self.path = reply["path"]
        return self._frame()

    async def _configure(self) -> None:
        area, s = self.settings.area, self.settings
        await self.main.call(
            "Scan.FrameSet",
            {
                "cx": area.centre[0],
                "cy": area.centre[1],
                "width": area.size[0],
                "height": area.size[1],
                "angle": -np.degrees(area.angle),  # Nanonis: degrees, clockwise positive
            },
        )
        indexes = [c.index for c in self.channels]
        buffer = {"channels": indexes, "pixels": area.pixels, "lines": area.lines}
        await self.main.call("Scan.BufferSet", buffer)
        got = await self.main.call("Scan.BufferGet")
        if (list(got["channels"]), got["pixels"], got["lines"]) != (
            indexes,
            area.pixels,
            area.lines,
        ):
            raise InstrumentError(
                "Scan.BufferSet",
                f"the controller kept {got['pixels']} x {got['lines']} px with channels "
                f"{list(got['channels'])}, not the requested {area.pixels} x {area.lines} px "
                f"with {indexes}",
            )
        speed = area.size[0] / s.line_time
        await self.main.call(
            "Scan.SpeedSet",
            {
                "fwd_speed": speed,
                "bwd_speed": speed,
                "fwd_line_time": s.line_time,
                "bwd_line_time": s.line_time,
                "keep": 2,  # keep the line time when the frame changes
                "ratio": 1.0,
            },
        )
        self.bias = nice_f32((await self.main.call("Bias.Get"))["bias"])
        self.setpoint = nice_f32((await self.main.call("ZCtrl.SetpntGet"))["setpoint"])

    async def _follow(self, progress: ProgressCallback | None) -> None:
        total = self.shape[0]
        loop = asyncio.get_running_loop()
        grace = 0.5 + 2 * self.settings.line_time
        started = loop.time()
        finished: float | None = None  # when the last line was seen
        while True:
            running = (await self.status.call("Scan.StatusGet"))["running"]
            if self.lines_done < total:
                await self._update(progress, force=not running)
            if not running and (self.lines_done or loop.time() - started > grace):
                return  # done, or stopped on the controller (a partial frame)
            if self.lines_done >= total:
                # Every line is in, the controller is still saving, or scanning on (continuous
                # mode): give it a moment, then stop it so the next frame does not overwrite.
                finished = loop.time() if finished is None else finished
                if loop.time() - finished > grace:
                    await self._stop()
                    return
                await asyncio.sleep(min(self.interval, 0.01))
                continue
            await asyncio.sleep(self.interval)

    async def _update(self, progress: ProgressCallback | None, force: bool) -> None:
        """Grab the traces and report the lines completed since the last time."""
        total = self.shape[0]
        done = await self._grab(self.channels[0], forward=False)
        if done <= self.lines_done and not force:
            return
        for channel in self.channels:
            for forward in (True, False):
                if forward or channel is not self.channels[0]:
                    done = min(done, await self._grab(channel, forward))
        for row in range(self.lines_done, done):
            self.lines_done = row + 1
            if progress is not None:
                progress(
                    LineProgress(
                        row,
                        total,
                        {n: fwd[row].copy() for n, (fwd, _) in self.data.items()},
                        {n: bwd[row].copy() for n, (_, bwd) in self.data.items()},
                    )
                )
            await asyncio.sleep(0)  # a cancel() from the callback lands here

    async def _grab(self, channel: Recorded, forward: bool) -> int:
        """Fetch one trace into :attr:`data`; returns its number of complete lines."""
        reply = await self.status.call(
            "Scan.FrameDataGrab", {"channel": channel.index, "direction": int(forward)}
        )
        data = reply["data"]
        if data.shape != self.shape:
            raise ProtocolError(
                f"Scan.FrameDataGrab: {channel.signal} came back {data.shape[0]} x "
                f"{data.shape[1]}, the scan is {self.shape[0]} x {self.shape[1]}"
            )
        trace: FloatArray = data.astype(np.float64)
        if reply["scan_direction"] == 1:  # upward: the first line scanned is the bottom row
            trace = trace[::-1]
        self.data[channel.name][0 if forward else 1][:] = trace
        complete = np.isfinite(trace).all(axis=1)
        return int(complete.size) if complete.all() else int(complete.argmin())

    async def _stop(self) -> None:
        """Stop the controller's scan, even while being cancelled (shielded)."""
        stop = self.main.call("Scan.Action", {"action": STOP, "direction": 0})
        with contextlib.suppress(DriverError, ProtocolError):
            await asyncio.shield(stop)

    def _frame(self) -> Frame:
        s = self.settings
        channels = {c.name: Channel(c.name, c.unit, *self.data[c.name]) for c in self.channels}
        return Frame(
            channels=channels,
            area=s.area,
            direction=s.direction,
            bias=self.bias,
            setpoint=self.setpoint,
            line_time=s.line_time,
            started_at=self.started_at,
            finished_at=time.time(),
            lines_done=self.lines_done,
            source="nanonis",
            metadata={
                "nanonis_host": self.main.host,
                "nanonis_port": self.main.port,
                "nanonis_file": self.path,
                "nanonis_signals": ",".join(c.signal for c in self.channels),
                "nanonis_signal_indexes": ",".join(str(c.index) for c in self.channels),
            },
        )
