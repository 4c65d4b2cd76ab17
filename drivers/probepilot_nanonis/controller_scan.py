"""Scan commands of the virtual Nanonis (a mixin of :class:`~.controller.VirtualController`).

The frame (centre, size, angle in degrees clockwise), buffer (channels by signal index, pixels
forced to a multiple of 16, lines) and speed live here as on the controller; ``Scan.Action``
start turns them into :class:`~probepilot.model.ScanSettings` and runs a
:class:`~.virtual_scan.ScanJob` in the background. A completed frame is saved as ``.sxm`` with the
core store's writer and ``Scan.WaitEndOfScan`` returns its path; a stopped scan returns an empty
path. ``Scan.WaitEndOfScan`` with no scan running returns at once with the last scan's outcome,
so a client that asks after a fast scan finished is not left waiting.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.contracts import Driver
from probepilot.errors import NotSupportedError, ProbepilotError
from probepilot.model import Frame, ScanArea, ScanSettings
from probepilot.store import write_sxm
from probepilot_nanonis.virtual_scan import ScanJob

Values = dict[str, Any]
Reader = Callable[[], Awaitable[float]]

#: Signal names the served driver can record while scanning -> the model's channel names.
RECORDABLE = {"Current (A)": "Current", "Z (m)": "Z"}
ACTIONS = ("start", "stop", "pause", "resume", "freeze", "unfreeze", "go to centre")
MAX_PIXELS = 4096


class ScanRefused(ProbepilotError):
    """A scan command was refused (bad frame, buffer, speed or state)."""


class ScanHandlers:
    """Scan state and handlers; see the module docstring."""

    def __init__(self, driver: Driver, save_dir: Path) -> None:
        self.driver = driver
        self.save_dir = save_dir
        self.frame: Values = {"cx": 0.0, "cy": 0.0, "width": 50e-9, "height": 50e-9, "angle": 0.0}
        self.buffer: Values = {"channels": [0, 7], "pixels": 256, "lines": 256}
        #: line times (s); ``by_time`` False: speeds are what is kept when the frame changes.
        self.speed: Values = {"fwd_speed": 0.0, "bwd_speed": 0.0, "by_time": True}
        self.speed.update(fwd_line_time=0.1, bwd_line_time=0.1)
        self.props: Values = {
            "continuous": 0,
            "bouncy": 0,
            "autosave": 0,
            "series": "img_",
            "comment": "",
            "modules": [],
            "autopaste": 0,
        }
        self.job: ScanJob | None = None
        self.direction = 0  # of the last Scan.Action start: 1 up, 0 down
        self.saved = 0
        self.signals: list[tuple[str, Reader]] = [
            ("Current (A)", self._read_current),
            ("Input 2 (V)", _zero),
            ("Input 3 (V)", _zero),
            ("Bias (V)", driver.get_bias),
            ("X (m)", self._read_x),
            ("Y (m)", self._read_y),
            ("Setpoint (A)", driver.get_setpoint),
            ("Z (m)", self._read_z),
            ("LI Demod 1 X (A)", _zero),
        ]

    def scan_handlers(self) -> dict[str, Callable[[Values], Awaitable[Values | None]]]:
        return {
            "Scan.Action": self.scan_action,
            "Scan.StatusGet": self.scan_status,
            "Scan.WaitEndOfScan": self.scan_wait,
            "Scan.FrameSet": self.frame_set,
            "Scan.FrameGet": self.frame_get,
            "Scan.BufferSet": self.buffer_set,
            "Scan.BufferGet": self.buffer_get,
            "Scan.SpeedSet": self.speed_set,
            "Scan.SpeedGet": self.speed_get,
            "Scan.FrameDataGrab": self.frame_grab,
            "Scan.PropsSet": self.props_set,
            "Scan.PropsGet": self.props_get,
        }

    async def _read_current(self) -> float:
        return await self._current()  # type: ignore[attr-defined,no-any-return]

    async def _read_x(self) -> float:
        return (await self.driver.get_tip_position()).x

    async def _read_y(self) -> float:
        return (await self.driver.get_tip_position()).y

    async def _read_z(self) -> float:
        return (await self.driver.get_tip_position()).z

    # ------------------------------------------------------------------ frame, buffer, speed

    async def frame_set(self, args: Values) -> None:
        cx, cy, w, h, angle = (float(args[k]) for k in ("cx", "cy", "width", "height", "angle"))
        if not all(math.isfinite(v) for v in (cx, cy, w, h, angle)) or w <= 0 or h <= 0:
            raise ScanRefused(f"frame {w:g} x {h:g} m at ({cx:g}, {cy:g}) m is not valid")
        area = ScanArea((cx, cy), (w, h), 1, 1, math.radians(-angle))
        hx, hy, _ = (r / 2 for r in (await self.driver.limits()).piezo_range)
        if any(abs(x) > hx * (1 + 1e-6) or abs(y) > hy * (1 + 1e-6) for x, y in area.corners()):
            raise ScanRefused(f"the frame leaves the piezo range +-{hx:.4g} x +-{hy:.4g} m")
        self.frame.update(cx=cx, cy=cy, width=w, height=h, angle=angle)

    async def frame_get(self, args: Values) -> Values:
        return dict(self.frame)

    async def buffer_set(self, args: Values) -> None:
        channels = [int(i) for i in args["channels"]]
        if not channels or len(set(channels)) != len(channels):
            raise ScanRefused("the buffer needs distinct channels")
        for index in channels:
            if not 0 <= index < len(self.signals):
                raise ScanRefused(f"signal index {index} is not 0-{len(self.signals) - 1}")
            if self.signals[index][0] not in RECORDABLE:
                raise ScanRefused(
                    f"signal {self.signals[index][0]!r} cannot be recorded by this virtual "
                    f"controller; record {' or '.join(RECORDABLE)}"
                )
        pixels, lines = int(args["pixels"]), int(args["lines"])
        if not (1 <= pixels <= MAX_PIXELS and 1 <= lines <= MAX_PIXELS):
            raise ScanRefused(f"{pixels} pixels x {lines} lines is outside 1-{MAX_PIXELS}")
        pixels = max(16, 16 * round(pixels / 16))  # the controller forces a multiple of 16
        self.buffer.update(channels=channels, pixels=pixels, lines=lines)

    async def buffer_get(self, args: Values) -> Values:
        return {**self.buffer, "channels": np.array(self.buffer["channels"])}

    async def speed_set(self, args: Values) -> None:
        keep = args["keep"]
        if keep not in (0, 1, 2):
            raise ScanRefused(f"speed 'keep' {keep} is not 0, 1 or 2")
        by_time = self.speed["by_time"] if keep == 0 else keep == 2
        fwd, bwd = ("fwd_line_time", "bwd_line_time") if by_time else ("fwd_speed", "bwd_speed")
        first, second = float(args[fwd]), float(args[bwd])
        if not math.isfinite(first) or first <= 0:
            raise ScanRefused(f"{fwd} {first:g} must be positive")
        if not math.isfinite(second) or second <= 0:  # derive it from the ratio
            ratio = float(args["ratio"]) if args["ratio"] > 0 else 1.0
            second = first / ratio if by_time else first * ratio
        self.speed.update({fwd: first, bwd: second, "by_time": by_time})

    def line_times(self) -> tuple[float, float]:
        if self.speed["by_time"]:
            return self.speed["fwd_line_time"], self.speed["bwd_line_time"]
        width = self.frame["width"]
        return width / self.speed["fwd_speed"], width / self.speed["bwd_speed"]

    async def speed_get(self, args: Values) -> Values:
        fwd, bwd = self.line_times()
        width = self.frame["width"]
        return {
            "fwd_speed": width / fwd,
            "bwd_speed": width / bwd,
            "fwd_line_time": fwd,
            "bwd_line_time": bwd,
            "keep": int(self.speed["by_time"]),
            "ratio": fwd / bwd,
        }

    async def props_set(self, args: Values) -> None:
        # Set: 0 no change, 1 on, 2 off; Get: 0 off, 1 on.
        for key in ("continuous", "bouncy"):
            if args[key]:
                self.props[key] = int(args[key] == 1)
        # Set: 0 no change, 1 all, 2 next only, 3 off; Get: 0 all, 1 next only, 2 off.
        for key in ("autosave", "autopaste"):
            if 1 <= args[key] <= 3:
                self.props[key] = args[key] - 1
        if args["series"]:
            self.props["series"] = re.sub(r"[^\w.-]", "_", args["series"])
        self.props["comment"] = args["comment"]
        if args["modules"]:
            self.props["modules"] = list(args["modules"])

    async def props_get(self, args: Values) -> Values:
        return dict(self.props)

    # ------------------------------------------------------------------ acquisition

    def settings(self, direction: int) -> ScanSettings:
        f = self.frame
        area = ScanArea(
            (f["cx"], f["cy"]),
            (f["width"], f["height"]),
            self.buffer["pixels"],
            self.buffer["lines"],
            math.radians(-f["angle"]),
        )
        names = tuple(
            dict.fromkeys(RECORDABLE[self.signals[i][0]] for i in self.buffer["channels"])
        )
        return ScanSettings(area, self.line_times()[0], "up" if direction else "down", names)

    async def scan_action(self, args: Values) -> None:
        action = args["action"]
        if action >= len(ACTIONS):
            raise ScanRefused(f"scan action {action} is not 0-{len(ACTIONS) - 1}")
        if ACTIONS[action] == "stop":
            if self.job is not None:
                await self.job.stop()
            return
        if ACTIONS[action] == "go to centre":
            await self.driver.set_tip_position(self.frame["cx"], self.frame["cy"])
            return
        if ACTIONS[action] != "start":
            raise NotSupportedError(f"scan action {ACTIONS[action]!r} is not simulated")
        if self.job is not None:
            await self.job.stop()
        self.direction = 1 if args["direction"] else 0
        channels = [(i, RECORDABLE[self.signals[i][0]]) for i in self.buffer["channels"]]
        self.job = ScanJob(self.driver, self.settings(self.direction), channels, self._save)
        self.job.start()
        # The driver checks the settings as the scan starts: let it, so a refusal (too fast,
        # say) is this command's error rather than a scan that silently never ran.
        for _ in range(3):
            await asyncio.sleep(0)
        if self.job.done.is_set() and self.job.error:
            raise ScanRefused(self.job.error)

    def _save(self, frame: Frame) -> Path:
        self.saved += 1
        name = f"{self.props['series']}{self.saved:03d}.sxm"
        return write_sxm(frame, self.save_dir / name)

    async def scan_status(self, args: Values) -> Values:
        return {"running": int(self.job is not None and self.job.running)}

    async def scan_wait(self, args: Values) -> Values:
        job = self.job
        if job is None:
            return {"timed_out": 0, "path": ""}
        timeout_ms = args["timeout_ms"]
        timeout = None if timeout_ms < 0 else timeout_ms / 1000
        if not job.done.is_set():
            try:
                await asyncio.wait_for(job.done.wait(), timeout)
            except TimeoutError:
                return {"timed_out": 1, "path": ""}
        return {"timed_out": 0, "path": job.path}

    async def frame_grab(self, args: Values) -> Values:
        index = int(args["channel"])
        job = self.job
        channels = [i for i, _ in job.channels] if job else self.buffer["channels"]
        if index not in channels:
            raise ScanRefused(f"channel {index} is not in the scan buffer {channels}")
        if job is None:
            shape = (self.buffer["lines"], self.buffer["pixels"])
            data = np.full(shape, np.nan, ">f4")
        else:
            data = job.grab(index, forward=bool(args["direction"]))
        return {
            "name": self.signals[index][0],
            "data": data,
            "scan_direction": int(job.up) if job else self.direction,
        }


async def _zero() -> float:
    return 0.0
