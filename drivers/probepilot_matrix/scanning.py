"""Acquiring one frame on MATRIX: configure the XY scanner, start the experiment, assemble the
lines the views deliver, stop.

* Configure: width/height and points/lines unconstrained, then ``Width``, ``Height``,
  ``Points``, ``Lines``, ``X_Offset``, ``Y_Offset``, ``Angle`` (whole degrees), ``Raster_Time``
  (line time / points), ``X_Retrace`` (always: backward traces are recorded) and ``Y_Retrace``;
  what MATRIX kept is read back and must be what was asked (MATRIX may round or constrain).
* ``View.<channel>_Fw`` and ``_Bw`` deliver one line per event. A frame's row ``r`` is complete
  once every view has delivered its ``r``-th line; progress is reported then, in order.
* MATRIX scans up; ``Y_Retrace`` adds a downward pass. A ``"down"`` frame is therefore the
  second pass of an up-down scan (the upward lines are discarded): it takes twice as long.
  ASSUMED: MATRIX has no down-only scan (verify; see the README).
* MATRIX scans on, frame after frame, until stopped: once the frame is complete, or when the
  scan is cancelled, a callback raises or MATRIX stops delivering, the experiment is stopped
  and the views closed before anything else happens. A frame that did not complete is kept on
  the driver (``MatrixDriver.last_frame``).
* Lines delivered before ``Experiment.start`` (left over from an earlier scan, if the library
  queues events across observers) are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from probepilot.contracts import ProgressCallback
from probepilot.errors import DriverError, DriverTimeoutError, InstrumentError
from probepilot.model import Channel, Frame, LineProgress, ScanSettings
from probepilot_matrix import names
from probepilot_matrix.transport import Event

if TYPE_CHECKING:
    from probepilot_matrix.driver import MatrixDriver

UNITS = {"Z": "m", "Current": "A"}


@dataclass(frozen=True, slots=True)
class Recorded:
    """One channel: the model's name, MATRIX's channel, unit, and the factor to SI."""

    name: str
    matrix: str
    unit: str
    scale: float


class Acquisition:
    """One frame; see the module docstring."""

    def __init__(
        self, driver: MatrixDriver, settings: ScanSettings, channels: list[Recorded]
    ) -> None:
        self.driver = driver
        self.settings = settings
        self.channels = channels
        area = settings.area
        self.shape = (area.lines, area.pixels)
        # Views in delivery order: every channel forward, then every channel backward.
        self.views = [(c, trace) for trace in ("Fw", "Bw") for c in channels]
        self.data = [np.full(self.shape, np.nan) for _ in self.views]
        self.packets = [0] * len(self.views)
        self.skip = area.lines if settings.direction == "down" else 0
        self.lines_done = 0
        self.bias = self.setpoint = math.nan
        self.started_at = time.time()
        self.metadata: dict[str, str | float | int] = {}
        self.queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self.accepting = False  # read on the transport's thread

    def view_name(self, index: int) -> str:
        channel, trace = self.views[index]
        return f"View.{channel.matrix}_{trace}"

    # ------------------------------------------------------------------ the frame

    async def run(self, progress: ProgressCallback | None) -> Frame:
        d = self.driver
        with contextlib.suppress(InstrumentError):  # MATRIX may refuse to stop what is idle
            await d._call("Experiment.stop")  # a scan still running (continuous mode, operator)
        await self._configure()
        await self._open_views()
        try:
            # Lines delivered before this point belong to an earlier scan: dropped.
            self.accepting = True
            await d._call("Experiment.start")
            self.started_at = time.time()
            await self._follow(progress)
        except BaseException:
            await d._cleanup(self._close_views())
            d.last_frame = self._frame()
            raise
        await d._cleanup(self._close_views())
        await self._result_file()
        return self._frame()

    async def _configure(self) -> None:
        d, s, area = self.driver, self.settings, self.settings.area
        wanted: dict[str, Any] = {
            "XYScanner.Width": area.size[0],
            "XYScanner.Height": area.size[1],
            "XYScanner.Points": area.pixels,
            "XYScanner.Lines": area.lines,
            "XYScanner.X_Offset": area.centre[0],
            "XYScanner.Y_Offset": area.centre[1],
            "XYScanner.Angle": round(math.degrees(area.angle)),
            "XYScanner.Raster_Time": s.line_time / area.pixels,
        }
        await d._set("XYScanner.Width_Height_Constrained", False)
        await d._set("XYScanner.Points_Lines_Constrained", False)
        for name, value in wanted.items():
            await d._set(name, value)
        await d._set("XYScanner.X_Retrace", True)
        await d._set("XYScanner.Y_Retrace", s.direction == "down")
        for name, value in wanted.items():
            got = await d._get(name)
            if not _same(got, value):
                raise InstrumentError(
                    f"set {name}",
                    f"MATRIX kept {got!r}, not the requested {value!r}",
                    hint="MATRIX rounds some scan parameters: choose values it can take",
                )
        self.bias = await d._float("GapVoltageControl.Voltage")
        self.setpoint = await d._float("Regulator.Setpoint_1")
        self.metadata = {
            "MATRIX experiment": d.options.experiment,
            "MATRIX transport": d.transport.description,
            "MATRIX channels": ",".join(c.matrix for c in self.channels),
        }
        for name in names.FRAME_PARAMETERS:
            value = await d._get(name)
            key = names.PROPERTIES[name].key()
            self.metadata[key] = value if isinstance(value, str | int | float) else str(value)

    async def _open_views(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self.queue

        def deliver(index: int) -> Any:
            def callback(event: Event) -> None:  # on a transport thread
                if not self.accepting:
                    return
                data = event.values[0] if event.values else None
                with contextlib.suppress(RuntimeError):  # the loop has ended: nobody waits
                    loop.call_soon_threadsafe(queue.put_nowait, (index, data))

            return callback

        try:
            for index in range(len(self.views)):
                view = self.view_name(index)
                await self.driver._set(f"{view}.Deliver_Data", True)
                await self.driver._observe(f"{view}.Data", deliver(index))
        except BaseException:
            await self.driver._cleanup(self._close_views())
            raise

    async def _close_views(self) -> None:
        """Stop the experiment and the views; every step is tried even if one fails."""
        d = self.driver
        with contextlib.suppress(DriverError):
            await d._call("Experiment.stop")
        for index in range(len(self.views)):
            view = self.view_name(index)
            with contextlib.suppress(DriverError):
                await d._observe(f"{view}.Data", None)
            with contextlib.suppress(DriverError):
                await d._set(f"{view}.Deliver_Data", False)

    async def _follow(self, progress: ProgressCallback | None) -> None:
        total, pixels = self.shape
        wait = max(self.driver.options.timeout, 4 * self.settings.line_time)
        while self.lines_done < total:
            try:
                index, data = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                raise DriverTimeoutError(
                    f"matrix: no scan line came within {wait:g} s ({self.lines_done} of "
                    f"{total} lines done); the scan was stopped",
                    hint="was the experiment stopped in MATRIX? are the views "
                    f"{', '.join(self.view_name(i) for i in range(len(self.views)))} there?",
                ) from None
            self.packets[index] += 1
            row = self.packets[index] - 1 - self.skip
            if not 0 <= row < total:
                continue  # the upward pass of an up-down scan, or the next frame already
            line = np.asarray(data, dtype=np.float64).ravel()
            if line.size != pixels:
                raise InstrumentError(
                    f"{self.view_name(index)}.Data",
                    f"delivered {line.size} values, a line has {pixels}",
                )
            channel, trace = self.views[index]
            line = line * channel.scale
            self.data[index][row] = line if trace == "Fw" else line[::-1]
            while self.lines_done < total and all(
                p - self.skip > self.lines_done for p in self.packets
            ):
                self._report(progress, self.lines_done)
                self.lines_done += 1
                await asyncio.sleep(0)  # a cancel() from the callback lands here

    def _report(self, progress: ProgressCallback | None, row: int) -> None:
        if progress is None:
            return
        half = len(self.channels)
        progress(
            LineProgress(
                row,
                self.shape[0],
                {c.name: self.data[i][row].copy() for i, c in enumerate(self.channels)},
                {c.name: self.data[half + i][row].copy() for i, c in enumerate(self.channels)},
            )
        )

    async def _result_file(self) -> None:
        """The name MATRIX gives this frame's Z result file: ``<name>--<run>_<cycle>.Z_mtrx``."""
        d = self.driver
        view = self.view_name(0)
        with contextlib.suppress(DriverError):
            name = await d._get("Experiment.Result_File_Name")
            run = await d._get(f"{view}.Run_Count")
            cycle = await d._get(f"{view}.Cycle_Count")
            if name:
                self.metadata["MATRIX result file"] = (
                    f"{name}--{run}_{cycle}.{self.channels[0].matrix}_mtrx"
                )
            path = await d._get("Experiment.Result_File_Path")
            if path:
                self.metadata["MATRIX result file path"] = str(path)

    def _frame(self) -> Frame:
        s = self.settings
        half = len(self.channels)
        channels = {
            c.name: Channel(c.name, c.unit, self.data[i], self.data[half + i])
            for i, c in enumerate(self.channels)
        }
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
            source="matrix",
            metadata=dict(self.metadata),
        )


def _same(got: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool | int):
        return bool(got == wanted)
    try:
        return math.isclose(float(got), float(wanted), rel_tol=1e-6, abs_tol=1e-15)
    except (TypeError, ValueError):
        return False
