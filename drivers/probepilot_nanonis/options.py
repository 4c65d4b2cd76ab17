"""The ``[drivers.nanonis]`` table: where the controller is and how probepilot drives it.

Only the schema (no sockets, no numpy), so ``probepilot plugins`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from probepilot.options import Doc, Quantity, Range


@dataclass(frozen=True)
class NanonisOptions:
    """Options of the Nanonis driver (``driver = "nanonis"``)."""

    host: Annotated[str, Doc("address of the Nanonis PC (its TCP programming interface)")] = (
        "127.0.0.1"
    )
    ports: Annotated[
        tuple[int, ...],
        Range(1, 65535),
        Doc(
            "controller ports to use: the first carries commands and acquisition, the second "
            "(if given) follows scan progress while the first waits; Nanonis offers 6501-6504"
        ),
    ] = (6501, 6502)
    timeout: Annotated[
        float,
        Quantity("s"),
        Range(0.01, 600),
        Doc("every reply must arrive within this (commands that wait add their duration)"),
    ] = 5.0
    connect_timeout: Annotated[
        float, Quantity("s"), Range(0.01, 600), Doc("time allowed for one connection attempt")
    ] = 3.0
    reconnect_attempts: Annotated[
        int, Range(1, 100), Doc("connection attempts before giving up (after a lost connection)")
    ] = 3
    reconnect_backoff: Annotated[
        float,
        Quantity("s"),
        Range(0, 60),
        Doc("wait before the second attempt; it doubles for each further attempt"),
    ] = 0.1
    poll_interval: Annotated[
        float,
        Quantity("s"),
        Range(0.001, 10),
        Doc("how often scan progress is checked (never more often than once per line)"),
    ] = 0.05
    z_signal: Annotated[str, Doc("name of the topography signal (Signals.NamesGet)")] = "Z (m)"
    current_signal: Annotated[str, Doc("name of the tunnelling current signal")] = "Current (A)"
    didv_signal: Annotated[
        str, Doc("bias spectroscopy channel reported as dIdV (a lock-in output)")
    ] = "LI Demod 1 X (A)"
    bias_limit: Annotated[
        float, Quantity("V"), Range(0.001, 10), Doc("largest bias and pulse magnitude")
    ] = 10.0
    max_setpoint: Annotated[
        float, Quantity("A"), Range(1e-13, 1e-6), Doc("largest current setpoint")
    ] = 100e-9
    max_pulse_width: Annotated[float, Quantity("s"), Range(1e-6, 60), Doc("longest bias pulse")] = (
        1.0
    )
    max_drift_velocity: Annotated[
        float, Quantity("m/s"), Range(0, 1e-3), Doc("largest drift compensation velocity")
    ] = 1e-6
    max_coarse_steps: Annotated[
        int, Range(1, 65535), Doc("most coarse steps in one move (the protocol's limit: 65535)")
    ] = 10000
    coarse_step_time: Annotated[
        float, Quantity("s"), Range(0, 10), Doc("expected duration of one coarse step")
    ] = 0.002
    motor_group: Annotated[
        int, Range(0, 5), Doc("the coarse motor's frequency-amplitude group")
    ] = 0
    withdraw_timeout: Annotated[
        float, Quantity("s"), Range(0.1, 600), Doc("longest wait for a withdraw to finish")
    ] = 10.0
    approach_timeout: Annotated[
        float, Quantity("s"), Range(1, 3600), Doc("longest wait for an auto-approach")
    ] = 600.0
    dip_lift_time: Annotated[
        float, Quantity("s"), Range(0, 10), Doc("tip shaper: time to ramp into the surface")
    ] = 0.1
    dip_retract: Annotated[
        float,
        Quantity("m"),
        Range(0, 1e-6),
        Doc("tip shaper: how far above its starting height the tip ends after a dip"),
    ] = 0.0
    dip_retract_time: Annotated[
        float, Quantity("s"), Range(0, 10), Doc("tip shaper: time to ramp back up")
    ] = 0.1
    dip_settle_time: Annotated[
        float, Quantity("s"), Range(0, 10), Doc("tip shaper: settling and switch-off delays")
    ] = 0.05
    z_limits: Annotated[
        tuple[float, float] | None,
        Quantity("m"),
        Doc("(fully extended, fully retracted) Z as ZCtrl.ZPosGet reports it; default 0..range"),
    ] = None

    def __post_init__(self) -> None:
        if not self.ports:
            raise ValueError("ports: give at least one port")
