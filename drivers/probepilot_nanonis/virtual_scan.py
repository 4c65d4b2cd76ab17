"""One scan of the virtual Nanonis, running in the background while clients poll it.

The scan goes through the served driver's ``scan()``; each line it reports is copied into
per-channel buffers the way the controller shows them, so ``Scan.FrameDataGrab`` during the scan
returns the lines done so far and NaN for the rest.

Buffer orientation (what ``Scan.FrameDataGrab`` returns, and what the Nanonis driver assumes):
row 0 is the *top* of the frame (largest y in the frame's own axes), so a downward scan fills
rows from the top and an upward scan from the bottom; columns run left to right (x increasing)
in both directions, i.e. backward lines are already mirrored back into x order. The model's
frames instead have row 0 = first scanned line, so the two differ by a vertical flip for upward
scans. Buffers are big-endian float32, the wire's type, so a grab is one memory copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from probepilot.contracts import Driver
from probepilot.errors import InstrumentError, ProbepilotError
from probepilot.model import Frame, LineProgress, ScanSettings

log = logging.getLogger(__name__)

Buffer = npt.NDArray[np.float32]


class ScanJob:
    """A scan in progress (or finished): buffers, progress, outcome.

    :param channels: (signal index, model channel name) of each recorded channel, in buffer
        order.
    :param save: writes the completed frame and returns its path (called in a thread).
    """

    def __init__(
        self,
        driver: Driver,
        settings: ScanSettings,
        channels: Sequence[tuple[int, str]],
        save: Callable[[Frame], Path],
    ) -> None:
        self.driver = driver
        self.settings = settings
        self.channels = list(channels)
        self.save = save
        area = settings.area
        shape = (area.lines, area.pixels)
        self.forward: dict[int, Buffer] = {i: np.full(shape, np.nan, ">f4") for i, _ in channels}
        self.backward: dict[int, Buffer] = {i: np.full(shape, np.nan, ">f4") for i, _ in channels}
        self.lines_done = 0
        self.path = ""  # the saved file once complete; "" while running or when stopped
        self.error = ""  # what stopped it, if the instrument refused or failed
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self.settings.direction == "up"

    @property
    def running(self) -> bool:
        return self.task is not None and not self.done.is_set()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="virtual-nanonis-scan")

    async def stop(self) -> None:
        """Stop the scan (the driver keeps the lines already done) and wait until it has."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})

    async def _run(self) -> None:
        try:
            frame = await self.driver.scan(self.settings, self._progress)
            if frame.complete:
                self.path = str(await asyncio.to_thread(self.save, frame))
        except asyncio.CancelledError:
            self.error = "stopped"
            raise
        except InstrumentError as exc:
            self.error = exc.detail
            log.warning("virtual Nanonis: the scan failed: %s", exc)
        except ProbepilotError as exc:
            self.error = exc.message
            log.warning("virtual Nanonis: the scan failed: %s", exc)
        except (OSError, ValueError) as exc:  # the frame could not be saved
            self.error = f"cannot save the frame: {exc}"
            log.warning("virtual Nanonis: %s", self.error)
        finally:
            self.done.set()

    def _progress(self, progress: LineProgress) -> None:
        row = progress.total - 1 - progress.index if self.up else progress.index
        for index, name in self.channels:
            self.forward[index][row] = progress.forward[name]
            self.backward[index][row] = progress.backward[name]
        self.lines_done = progress.index + 1

    def grab(self, index: int, forward: bool) -> Buffer:
        """The live buffer of signal ``index``, not a copy: encode it before the next ``await``
        (the event loop is the only writer, so it cannot change in between)."""
        return (self.forward if forward else self.backward)[index]
