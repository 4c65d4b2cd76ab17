"""A fake RunLink that records commands, and a scripted, deterministic run to feed it.

The script is what a short run on the simulator publishes (events with fixed times, and the scan
lines of each frame), generated from a seeded pattern so that snapshots are identical on every
machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from probepilot import events as ev
from probepilot.errors import ProbepilotError
from probepilot.events import Event
from probepilot.model import ScanArea
from probepilot.session import ScanLine

T0 = 1_760_000_000.0
POLICIES = ["ga", "random", "rl", "rules"]


def snapshot(frames: int = 0, state: str = "image", policy: str = "random") -> dict[str, Any]:
    return {
        "run_id": "20250101T000000Z-0badcafe",
        "folder": "runs/20250101T000000Z-0badcafe",
        "state": state,
        "driver": "sim",
        "policy": policy,
        "policies": list(POLICIES),
        "stats": {
            "frames": frames,
            "complete_frames": frames,
            "good_frames": (frames + 1) // 2,
            "analysed": frames,
            "actions": {"pulse": 1, "dip": 1, "drift": 1},
            "conditioning": 2,
            "rejected": 1,
            "driver_errors": 1,
            "crashes": 0,
            "coarse_moves": 0,
            "recoveries": [2],
            "time_in_state": {"approach": 2.0, "image": 30.0, "condition": 4.0, "recover": 1.0},
            "tip_state": "good",
            "instrument_time": 154.0,
            "good_fraction": (frames + 1) // 2 / frames if frames else None,
        },
        "limits": {
            "bias_range": [-3.0, 3.0],
            "min_setpoint": 1e-12,
            "max_setpoint": 1e-9,
            "max_pulse": 8.0,
            "max_dip_depth": 5e-9,
            "max_conditioning_per_minute": 6,
            "on_violation": "reject",
        },
        "tip_state": "good",
        "budget": {"frames": 20, "duration": None},
    }


class FakeLink:
    """A :class:`probepilot.link.RunLink` without a run: ``emit`` publishes, commands are
    recorded and answered (``fail[name]`` raises instead)."""

    def __init__(self) -> None:
        self.subscribers: list[Callable[[Any], None]] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, Exception] = {}
        self.state = snapshot()

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)

    async def command(self, name: str, /, **args: Any) -> str:
        self.commands.append((name, args))
        if name in self.fail:
            raise self.fail[name]
        if name == "set_bias" and abs(args.get("voltage", 0)) > 3:
            return "refused by the safety envelope"
        return f"ok: {name}"

    def emit(self, item: Any) -> None:
        if isinstance(item, Event) and item.type == ev.FRAME_PERSISTED:
            self.state = snapshot(frames=int(item.data["index"]))
        for callback in list(self.subscribers):
            callback(item)

    def play(self, items: Iterator[Any] | list[Any]) -> None:
        for item in items:
            self.emit(item)


def surface(pixels: int, seed: int) -> np.ndarray:
    """A deterministic STM-like topography (m): a hexagonal lattice, a step, an adsorbate,
    line-to-line offsets and a tilt, like raw data before levelling."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:pixels, 0:pixels] / pixels * 20e-9
    a = 0.9e-9
    lattice = sum(
        np.cos(2 * np.pi / a * (x * np.cos(t) + y * np.sin(t)))
        for t in (0, np.pi / 3, 2 * np.pi / 3)
    )
    z = 20e-12 * lattice + 0.2e-9 * (x + 0.4 * y > 11e-9)
    z += 0.3e-9 * np.exp(-((x - 6e-9) ** 2 + (y - 14e-9) ** 2) / (1.2e-9) ** 2)
    z += 5e-10 * x / 20e-9 + rng.normal(0, 4e-12, z.shape)
    z += rng.normal(0, 30e-12, (pixels, 1))  # line offsets of the feedback
    return z


def scripted_run(frames: int = 6, pixels: int = 48, seed: int = 7) -> list[Any]:
    """Everything a short run publishes, in order, with fixed times."""
    out: list[Any] = []
    seq = 0
    t = T0

    def event(type: str, **data: Any) -> None:
        nonlocal seq, t
        seq += 1
        t += 0.5
        out.append(Event(type, seq, data, t))

    event(ev.RUN_STARTED, run_id="20250101T000000Z-0badcafe", driver="sim", policy="random")
    event(ev.STATE_CHANGED, state="approach")
    states = ["good", "double", "double", "good", "blunt", "good", "unstable", "good"]
    area = ScanArea((0.0, 0.0), (20e-9, 20e-9), pixels, pixels)
    for i in range(1, frames + 1):
        event(ev.STATE_CHANGED, state="choose_region")
        event(ev.STATE_CHANGED, state="image")
        z = surface(pixels, seed + i)
        if states[(i - 1) % len(states)] == "double":
            ghost = np.zeros_like(z)
            ghost[3:, 5:] = z[:-3, :-5]
            z = z + 0.6 * ghost  # a ghost of every feature, 3 lines and 5 pixels away
        for row in range(pixels):
            out.append(
                ScanLine(
                    i,
                    row,
                    pixels,
                    pixels,
                    area,
                    {"Z": z[row], "Current": np.full(pixels, 1e-10)},
                    # backward in x order, as drivers report it, lagging by a pixel
                    {"Z": np.roll(z[row], 1) + 1e-11, "Current": np.full(pixels, 1e-10)},
                )
            )
        event(
            ev.FRAME_PERSISTED,
            file=f"frames/frame-{i:06d}.sxm",
            index=i,
            complete=True,
            lines_done=pixels,
            lines=pixels,
            pixels=pixels,
            size=[20e-9, 20e-9],
            centre=[0.0, 0.0],
            bias=1.0,
            setpoint=1e-10,
        )
        state = states[(i - 1) % len(states)]
        p_double = 0.8 if state == "double" else 0.1 + 0.03 * i
        event(
            ev.FRAME_ANALYSED,
            frame=f"frames/frame-{i:06d}.sxm",
            tip_state=state,
            findings=[
                {
                    "analyzer": "double_tip",
                    "kind": "double_tip",
                    "confidence": p_double,
                    "values": {"status": "ok", "p_double": p_double},
                },
                {
                    "analyzer": "drift",
                    "kind": "drift",
                    "confidence": 0.8 if i > 1 else 0.0,
                    "values": {"status": "ok", "vx": 20e-12 - 2e-12 * i, "vy": -8e-12 + 1e-12 * i}
                    if i > 1
                    else {"status": "no_reference"},
                },
            ],
        )
        if state == "good":
            event(ev.POLICY_DECIDED, action={"kind": "image"}, policy="random")
            continue
        action = (
            {"kind": "pulse", "voltage": -8.0, "width": 0.2, "position": None}
            if state == "double"
            else {"kind": "dip", "depth": 2.5e-9, "bias": 0.0, "position": None}
        )
        event(ev.POLICY_DECIDED, action=action, policy="random")
        event(ev.STATE_CHANGED, state="condition")
        if i == 3:
            event(
                ev.SAFETY_REJECTED,
                action=action,
                reasons=["more than 6 conditioning actions in 60 s"],
            )
            continue
        event(ev.ACTION_EXECUTED, action=action, source="policy", duration=0.002)
    event(
        ev.DRIVER_ERROR,
        error="DriverTimeoutError",
        message="no reply within 5 s",
        operation="scan",
        attempt=1,
    )
    event(ev.STATE_CHANGED, state="image")
    return out


def failing(name: str, message: str = "refused") -> ProbepilotError:
    return ProbepilotError(f"{name}: {message}")
