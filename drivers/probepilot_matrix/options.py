"""The ``[drivers.matrix]`` table: which MATRIX, how to reach it, and the limits the driver
checks before anything is sent.

Only the schema (no ctypes, no numpy), so ``probepilot plugins`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from probepilot.options import Doc, Quantity, Range

SurfaceName = Literal["au111", "cu111", "si111_7x7", "hopg"]
TipName = Literal["good", "double", "blunt", "unstable", "random"]


@dataclass(frozen=True)
class SimulatedMatrixOptions:
    """The simulated MATRIX (``transport = "simulated"``): the simulated microscope behind
    MATRIX's property tree. Other simulator settings keep their ``[drivers.sim]`` defaults."""

    seed: Annotated[int, Range(0), Doc("seed of the simulated microscope")] = 0
    surface: Annotated[SurfaceName, Doc("surface preset of the simulated microscope")] = "au111"
    tip: Annotated[TipName, Doc("initial tip of the simulated microscope")] = "random"
    time_scale: Annotated[
        float,
        Range(0),
        Doc("simulated seconds per real second; 0 runs as fast as possible, 1 is real time"),
    ] = 0.0
    piezo_range: Annotated[
        tuple[float, float, float], Quantity("m"), Doc("scanner range x, y, z")
    ] = (1e-6, 1e-6, 200e-9)
    experiment_open: Annotated[
        bool, Doc("false: the experiment reads as closed, as when MATRIX has none open")
    ] = True
    result_file_name: Annotated[
        str, Doc("Experiment.Result_File_Name it reports (default: today's date)")
    ] = ""


@dataclass(frozen=True)
class MatrixOptions:
    """Options of the MATRIX driver (``driver = "matrix"``)."""

    transport: Annotated[
        Literal["dll", "simulated"],
        Doc("'dll': the real MATRIX through RemoteAccess_API.dll; 'simulated': no instrument"),
    ] = "dll"
    experiment: Annotated[
        str, Doc("the MATRIX experiment (scope) to drive, as MATRIX names it")
    ] = "STM_AtomManipulation"
    installation: Annotated[
        str | None,
        Doc(
            "MATRIX installation folder, e.g. 'C:/Program Files/Scienta Omicron/MATRIX/V4.3.5'; "
            "default: the newest folder under C:/Program Files/Scienta Omicron/MATRIX"
        ),
    ] = None
    dll_path: Annotated[
        str | None,
        Doc("RemoteAccess_API.dll; default: SDK/RemoteAccess/ in the installation folder"),
    ] = None
    host: Annotated[str, Doc("the MATRIX host the library connects to (setHost)")] = "localhost"
    timeout: Annotated[
        float,
        Quantity("s"),
        Range(0.01, 600),
        Doc("every MATRIX call, and every awaited event, must come within this"),
    ] = 5.0
    poll_interval: Annotated[
        float,
        Quantity("s"),
        Range(0.0005, 1),
        Doc("how often the library is asked for new events (scan lines, spectra)"),
    ] = 0.005
    max_event_values: Annotated[
        int, Range(16, 1 << 22), Doc("largest event the library may deliver (values)")
    ] = 65536
    z_channel: Annotated[str, Doc("MATRIX channel recorded as 'Z' (views Z_Fw, Z_Bw)")] = "Z"
    current_channel: Annotated[
        str, Doc("MATRIX channel recorded as 'Current' (views I_Fw, I_Bw, I_V_Spec)")
    ] = "I"
    z_scale: Annotated[
        float, Range(1e-15, 1e15), Doc("factor turning the Z values a view delivers into m")
    ] = 1.0
    current_scale: Annotated[
        float,
        Range(1e-15, 1e15),
        Doc("factor turning current values a view delivers into A (1e-9 if they come in nA)"),
    ] = 1.0
    piezo_range: Annotated[
        tuple[float, float, float] | None,
        Quantity("m"),
        Doc("scanner range x, y, z; default: x, y from XYScanner.max, z from z_range"),
    ] = None
    z_range: Annotated[
        float, Quantity("m"), Range(1e-9, 1e-4), Doc("z travel, Regulator.Z_Out centred on 0")
    ] = 200e-9
    bias_limit: Annotated[
        float, Quantity("V"), Range(0.001, 10), Doc("largest bias and pulse magnitude")
    ] = 10.0
    max_setpoint: Annotated[
        float, Quantity("A"), Range(1e-13, 3.3e-7), Doc("largest current setpoint")
    ] = 100e-9
    max_points: Annotated[int, Range(2, 1 << 16), Doc("most points per line and lines")] = 4096
    max_pulse_width: Annotated[float, Quantity("s"), Range(1e-6, 60), Doc("longest pulse")] = 1.0
    pulse_with_feedback: Annotated[
        bool, Doc("keep the feedback loop on during pulses (default: Z held)")
    ] = False
    z_ramp_sign: Annotated[
        int,
        Range(-1, 1),
        Doc(
            "sign of Regulator.Z_Ramp towards the surface (-1 or 1); with the wrong sign a dip "
            "moves the tip away instead: verify on your MATRIX"
        ),
    ] = -1
    dip_slew_rate: Annotated[
        float, Quantity("m/s"), Range(1e-10, 1e-3), Doc("speed of the Z ramp of a dip")
    ] = 1e-7
    dip_hold: Annotated[
        float, Quantity("s"), Range(0, 10), Doc("Regulator.Z_Ramp_Delay of a dip")
    ] = 0.0
    settle_time: Annotated[
        float, Quantity("s"), Range(0, 10), Doc("wait after a pulse or dip before going on")
    ] = 0.02
    max_z_spectroscopy_approach: Annotated[
        float,
        Quantity("m"),
        Range(0, 1e-7),
        Doc("I(z) spectra never go closer to the surface than this below the setpoint height"),
    ] = 1e-9
    max_drift_velocity: Annotated[
        float, Quantity("m/s"), Range(0, 1e-3), Doc("largest drift compensation velocity")
    ] = 1e-6
    coarse_positioning: Annotated[
        bool, Doc("use PiezoControl for coarse moves when the experiment has it")
    ] = True
    max_coarse_steps: Annotated[int, Range(1, 100_000), Doc("most coarse steps in one move")] = 1000
    withdraw_timeout: Annotated[
        float, Quantity("s"), Range(0.1, 600), Doc("longest wait for a withdraw")
    ] = 10.0
    approach_timeout: Annotated[
        float, Quantity("s"), Range(1, 3600), Doc("longest wait for an auto-approach")
    ] = 600.0
    simulated: Annotated[
        SimulatedMatrixOptions, Doc("the simulated MATRIX (transport = 'simulated')")
    ] = field(default_factory=SimulatedMatrixOptions)

    def __post_init__(self) -> None:
        if self.z_ramp_sign not in (-1, 1):
            raise ValueError("z_ramp_sign: must be -1 or 1")
