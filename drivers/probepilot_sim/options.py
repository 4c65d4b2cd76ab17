"""The ``[drivers.sim]`` table: every knob of the simulated microscope, with units and ranges.

This module only declares the schema (no numpy, no scipy), so listing plugins stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from probepilot.options import Doc, Quantity, Range

SurfaceName = Literal["au111", "cu111", "si111_7x7", "hopg"]
TipName = Literal["good", "double", "blunt", "unstable", "random"]


@dataclass(frozen=True)
class SimOptions:
    """Options of the simulated STM (driver ``sim``)."""

    seed: Annotated[int, Range(0), Doc("seed of everything random; same seed, same frames")] = 0
    surface: Annotated[SurfaceName, Doc("surface preset: au111, cu111, si111_7x7 or hopg")] = (
        "au111"
    )
    herringbone: Annotated[bool, Doc("show the Au(111) herringbone reconstruction")] = True
    surface_file: Annotated[
        str | None,
        Doc("an .sxm file whose Z channel becomes the surface (overrides the preset topography)"),
    ] = None
    feature_density: Annotated[
        float, Range(0, 100), Doc("multiplies the density of adsorbates, debris and patches")
    ] = 1.0
    tip: Annotated[
        TipName, Doc("initial tip: good, double, blunt, unstable, or random (a random bad one)")
    ] = "random"
    time_scale: Annotated[
        float,
        Range(0),
        Doc("simulated seconds per real second; 0 runs as fast as possible, 1 is real time"),
    ] = 0.0
    piezo_range: Annotated[
        tuple[float, float, float],
        Quantity("m"),
        Doc("scanner range x, y, z"),
    ] = (1e-6, 1e-6, 200e-9)
    bias: Annotated[float, Quantity("V"), Range(-10, 10), Doc("initial bias")] = 1.0
    setpoint: Annotated[float, Quantity("A"), Range(1e-13, 1e-7), Doc("initial setpoint")] = 100e-12
    bias_limit: Annotated[
        float, Quantity("V"), Range(0.1, 10), Doc("largest bias and pulse magnitude")
    ] = 10.0
    max_setpoint: Annotated[float, Quantity("A"), Range(1e-12, 1e-6), Doc("largest setpoint")] = (
        100e-9
    )
    max_pulse_width: Annotated[float, Quantity("s"), Range(1e-6, 10), Doc("longest pulse")] = 1.0
    max_scan_speed: Annotated[
        float, Quantity("m/s"), Range(1e-10, 1e-3), Doc("fastest tip speed along a line")
    ] = 2e-6
    crash_depth: Annotated[
        float, Quantity("m"), Range(1e-9, 1e-6), Doc("dips deeper than this crash the tip")
    ] = 6e-9
    work_function: Annotated[
        float, Range(1, 10), Doc("tunnelling barrier in eV; sets the decay constant kappa")
    ] = 4.5
    drift_velocity: Annotated[
        tuple[float, float, float], Quantity("m/s"), Doc("thermal drift velocity x, y, z")
    ] = (20e-12, -10e-12, 0.0)
    drift_walk: Annotated[
        float, Quantity("m"), Range(0, 1e-9), Doc("random-walk drift, rms metres after 1 s")
    ] = 2e-12
    creep: Annotated[
        float, Range(0, 0.5), Doc("fraction of a move the piezo lags behind and creeps after")
    ] = 0.02
    creep_time: Annotated[float, Quantity("s"), Range(0.01, 1e4), Doc("creep time constant")] = 20.0
    feedback_bandwidth: Annotated[
        float, Quantity("Hz"), Range(1, 1e6), Doc("z-controller bandwidth (tracking error)")
    ] = 1000.0
    noise_z: Annotated[float, Quantity("m"), Range(0, 1e-9), Doc("white Z noise, rms")] = 2e-12
    flicker_z: Annotated[float, Quantity("m"), Range(0, 1e-9), Doc("1/f Z noise, rms")] = 3e-12
    line_offset_z: Annotated[
        float, Quantity("m"), Range(0, 1e-9), Doc("line-to-line Z offsets, rms")
    ] = 4e-12
    noise_current: Annotated[
        float, Quantity("%"), Range(0, 1), Doc("relative current noise, rms")
    ] = 0.03
    coarse_step: Annotated[
        float, Quantity("m"), Range(1e-9, 1e-5), Doc("lateral travel of one coarse step")
    ] = 200e-9
    coarse_step_z: Annotated[
        float, Quantity("m"), Range(1e-9, 1e-5), Doc("vertical travel of one coarse step")
    ] = 50e-9
