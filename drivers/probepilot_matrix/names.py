"""Every MATRIX name the driver uses, with its value type, unit and where the name comes from.

Nothing here has been checked against a real MATRIX by probepilot's authors. The names and
types come from public MATRIX clients and from real result files:

* ``nOmicron`` - NottsNano/nOmicron (a fork of MATE-for-Dummies), the Python ctypes client of
  ``RemoteAccess_API.dll``; verified by its authors with MATRIX 4.3.5, "STM Spectroscopy"
  experiment;
* ``ABD`` - a public Java client of the same library for the ``STM_AtomManipulation``
  experiment (tip moves, Z ramps and voltage pulses through the XY scanner's execute port,
  coarse steps, withdraw and auto-approach through ``PiezoControl``);
* ``file`` - the parameter appears, with this unit, in the parameter log of a real MATRIX
  result file (``../shared/stm-data/matrix-spm-rs``), which confirms the name exists but not
  that it can be written remotely.

What the driver *assumes* beyond the names (units, signs, orders, what a write triggers) is
listed with each entry and in the README's MATRIX section; those are the things to verify on a
real installation. The simulated MATRIX implements exactly these assumptions, so it checks the
driver's logic, never the assumptions themselves.

Names are relative to the experiment; :func:`full` makes the full name
``"<experiment>::<Element>.<Property>"``. ``Experiment.X`` stands for the experiment's own
object (``"STM_AtomManipulation::STM_AtomManipulation.start"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from probepilot_matrix.transport import ValueType

INTEGER, DOUBLE, STRING, BOOLEAN, ENUM, PAIR = (
    ValueType.INTEGER,
    ValueType.DOUBLE,
    ValueType.STRING,
    ValueType.BOOLEAN,
    ValueType.ENUM,
    ValueType.PAIR,
)


@dataclass(frozen=True, slots=True)
class Prop:
    """One property: its name (relative to the experiment), type, MATRIX unit and evidence."""

    name: str
    kind: ValueType
    unit: str = ""
    source: str = ""
    note: str = ""

    def key(self) -> str:
        """The metadata key MATRIX result files give it (``"XYScanner.Width (Meter)"``), as
        :func:`probepilot.store.read_matrix` writes it."""
        return f"{self.name} ({self.unit})" if self.unit else self.name


_TABLE = (
    # ---- gap voltage and tip conditioning pulses
    Prop("GapVoltageControl.Voltage", DOUBLE, "Volt", "nOmicron, ABD, file"),
    Prop("GapVoltageControl.Tip_Cond_Pulse_Voltage", DOUBLE, "Volt", "nOmicron, file"),
    Prop("GapVoltageControl.Tip_Cond_Pulse_Time", DOUBLE, "Second", "nOmicron, file"),
    Prop(
        "GapVoltageControl.Tip_Cond_Enable_Feedback_Loop",
        BOOLEAN,
        "",
        "nOmicron, file",
        "True keeps the feedback loop on during a pulse",
    ),
    Prop(
        "GapVoltageControl.Tip_Cond_Pulse_Preamp_Range",
        ENUM,
        "",
        "nOmicron, file",
        "0: +-1 V, 1: +-10 V (nOmicron)",
    ),
    # ---- regulator (z feedback)
    Prop("Regulator.Setpoint_1", DOUBLE, "Ampere", "nOmicron, ABD, file"),
    Prop("Regulator.Feedback_Loop_Enabled", BOOLEAN, "", "nOmicron, ABD, file"),
    Prop(
        "Regulator.Z_Out",
        DOUBLE,
        "Meter",
        "nOmicron",
        "ASSUMED centred on zero, growing as the tip retracts",
    ),
    Prop(
        "Regulator.Z_Ramp",
        DOUBLE,
        "Meter",
        "nOmicron, file",
        "ASSUMED negative towards the surface (z_ramp_sign)",
    ),
    Prop("Regulator.Z_Ramp_Delay", DOUBLE, "Second", "nOmicron, file"),
    Prop("Regulator.Enable_Z_Ramp_Slew_Rate", BOOLEAN, "", "nOmicron, file"),
    Prop("Regulator.Z_Ramp_Slew_Rate", DOUBLE, "Meter/second", "nOmicron, file"),
    # ---- XY scanner
    Prop("XYScanner.Width", DOUBLE, "Meter", "nOmicron, ABD, file"),
    Prop("XYScanner.Height", DOUBLE, "Meter", "nOmicron, ABD, file"),
    Prop("XYScanner.Width_Height_Constrained", BOOLEAN, "", "nOmicron, file"),
    Prop("XYScanner.Points", INTEGER, "Count", "nOmicron, ABD, file"),
    Prop("XYScanner.Lines", INTEGER, "Count", "nOmicron, ABD, file"),
    Prop("XYScanner.Points_Lines_Constrained", BOOLEAN, "", "nOmicron, file"),
    Prop("XYScanner.X_Offset", DOUBLE, "Meter", "nOmicron, file"),
    Prop("XYScanner.Y_Offset", DOUBLE, "Meter", "nOmicron, file"),
    Prop(
        "XYScanner.Angle",
        INTEGER,
        "Degree",
        "nOmicron, ABD, file",
        "whole degrees; ASSUMED counter-clockwise",
    ),
    Prop("XYScanner.Raster_Time", DOUBLE, "Second", "nOmicron, file", "time per point"),
    Prop("XYScanner.X_Retrace", BOOLEAN, "", "nOmicron, file", "record the backward trace"),
    Prop(
        "XYScanner.Y_Retrace",
        BOOLEAN,
        "",
        "nOmicron, file",
        "scan up, then down; ASSUMED no down-only scan exists",
    ),
    Prop(
        "XYScanner.Target_Position",
        PAIR,
        "",
        "nOmicron, ABD",
        "normalised to the scan window, -1..1 (nOmicron)",
    ),
    Prop("XYScanner.Trigger_Execute_At_Target_Position", BOOLEAN, "", "nOmicron, ABD"),
    Prop("XYScanner.Return_To_Stored_Position", BOOLEAN, "", "nOmicron, ABD"),
    Prop("XYScanner.Execute_Port_Colour", STRING, "", "nOmicron, ABD", "what execute() does"),
    Prop("XYScanner.XY_Position_Report", PAIR, "", "nOmicron, ABD", "ASSUMED metres"),
    Prop("XYScanner.Enable_Drift_Compensation", BOOLEAN, "", "nOmicron, file"),
    Prop("XYScanner.X_Drift", DOUBLE, "Meter/second", "nOmicron, file"),
    Prop("XYScanner.Y_Drift", DOUBLE, "Meter/second", "nOmicron, file"),
    # ---- coarse positioner and approach
    Prop("PiezoControl.Steps", INTEGER, "", "ABD, file", "steps per coarse move command"),
    Prop("PiezoControl.Move_Tip_X_Plus", INTEGER, "", "nOmicron, ABD", "ASSUMED: write 1 = move"),
    Prop("PiezoControl.Move_Tip_X_Minus", INTEGER, "", "nOmicron, ABD"),
    Prop("PiezoControl.Move_Tip_Y_Plus", INTEGER, "", "nOmicron, ABD"),
    Prop("PiezoControl.Move_Tip_Y_Minus", INTEGER, "", "nOmicron, ABD"),
    Prop("PiezoControl.Retract", INTEGER, "", "nOmicron, ABD", "coarse steps away"),
    Prop("PiezoControl.Approach", INTEGER, "", "nOmicron, ABD", "coarse steps towards"),
    Prop(
        "PiezoControl.Move_Auto",
        BOOLEAN,
        "",
        "nOmicron, ABD",
        "auto-approach; reads False when done",
    ),
    Prop("PiezoControl.Move_Backward", BOOLEAN, "", "nOmicron, ABD", "withdraw (ABD)"),
    # ---- spectroscopy
    Prop("Spectroscopy.Spectroscopy_Mode", ENUM, "", "nOmicron, file", "0: V (device 1), 1: Z"),
    Prop("Spectroscopy.Device_1_Start", DOUBLE, "Volt", "nOmicron, file"),
    Prop("Spectroscopy.Device_1_End", DOUBLE, "Volt", "nOmicron, file"),
    Prop("Spectroscopy.Device_1_Points", INTEGER, "Count", "nOmicron, file"),
    Prop("Spectroscopy.Device_1_Repetitions", INTEGER, "Count", "nOmicron, file"),
    Prop("Spectroscopy.Enable_Device_1_Ramp_Reversal", BOOLEAN, "", "nOmicron, file"),
    Prop("Spectroscopy.Raster_Time_1", DOUBLE, "Second", "nOmicron, file", "time per point"),
    Prop("Spectroscopy.Device_2_Start", DOUBLE, "Meter", "nOmicron, file"),
    Prop("Spectroscopy.Device_2_End", DOUBLE, "Meter", "nOmicron, file"),
    Prop("Spectroscopy.Device_2_Points", INTEGER, "Count", "nOmicron, file"),
    Prop("Spectroscopy.Device_2_Repetitions", INTEGER, "Count", "nOmicron, file"),
    Prop("Spectroscopy.Enable_Device_2_Ramp_Reversal", BOOLEAN, "", "nOmicron, file"),
    Prop("Spectroscopy.Raster_Time_2", DOUBLE, "Second", "nOmicron, file"),
    Prop("Spectroscopy.Disable_Feedback_Loop", BOOLEAN, "", "nOmicron, file"),
    Prop("Spectroscopy.Reenable_Feedback_Loop", BOOLEAN, "", "file"),
    Prop("Spectroscopy.Maximum_Points_1", INTEGER, "Count", "file"),
    # ---- the experiment itself ("Experiment" stands for its name)
    Prop("Experiment.State", STRING, "", "nOmicron", "'closed' (or empty) when not open"),
    Prop("Experiment.Result_File_Name", STRING, "", "nOmicron"),
    Prop("Experiment.Result_File_Path", STRING, "", "nOmicron"),
)

PROPERTIES: dict[str, Prop] = {p.name: p for p in _TABLE}

#: Properties of a ``View.<channel>`` (data delivery of one channel, nOmicron and ABD).
VIEW_PROPERTIES: dict[str, Prop] = {
    p.name: p
    for p in (
        Prop("Deliver_Data", BOOLEAN, "", "nOmicron, ABD", "True: the view sends its data"),
        Prop("Data_Size", INTEGER, "", "nOmicron", "values in the last data event"),
        Prop("Run_Count", INTEGER, "", "nOmicron", "the run (file name: <name>--run_cycle)"),
        Prop("Cycle_Count", INTEGER, "", "nOmicron", "the cycle within the run"),
        Prop("Packet_Count", INTEGER, "", "nOmicron", "data events in this cycle"),
    )
}

#: Functions, with where they come from. ``max``/``min`` take a property name (a string).
FUNCTIONS: dict[str, str] = {
    "Experiment.start": "nOmicron, ABD: start the experiment (the XY scanner scans)",
    "Experiment.stop": "nOmicron, ABD: stop it",
    "XYScanner.move": "nOmicron, ABD: move the tip to Target_Position",
    "XYScanner.execute": "ABD: run the execute port (Execute_Port_Colour) where the tip is",
    "XYScanner.max": "ABD: largest allowed value of a property, e.g. 'Width'",
    "XYScanner.min": "nOmicron: smallest allowed value of a property",
}

#: Observed entities: ``View.<channel>.Data`` (one line or one spectrum per event, ASSUMED
#: in SI units and in acquisition order: backward lines run right to left) and these.
EVENTS: dict[str, str] = {
    "XYScanner.XY_Position_Reached": "ABD: the tip reached Target_Position",
    "XYScanner.X_Trace_Done": "ABD, nOmicron: a forward line is done",
    "XYScanner.X_Retrace_Done": "ABD, nOmicron: a backward line is done",
    "XYScanner.Y_Trace_Done": "ABD, nOmicron: the upward pass is done",
    "XYScanner.Y_Retrace_Done": "nOmicron: the downward pass is done",
}

#: Execute-port colours (``XYScanner.Execute_Port_Colour``).
PORT_SPECTROSCOPY = ""  # nOmicron resets the port to "" after a Z ramp: ASSUMED spectroscopy
PORT_Z_RAMP = "ZRamp"  # ABD, nOmicron: the controlled crash (Regulator.Z_Ramp)
PORT_V_PULSE = "VPulse"  # ABD: the tip conditioning pulse (GapVoltageControl.Tip_Cond_*)

#: Coarse axes and the PiezoControl property that moves along each (z+ retracts).
COARSE = {
    "x+": "PiezoControl.Move_Tip_X_Plus",
    "x-": "PiezoControl.Move_Tip_X_Minus",
    "y+": "PiezoControl.Move_Tip_Y_Plus",
    "y-": "PiezoControl.Move_Tip_Y_Minus",
    "z+": "PiezoControl.Retract",
    "z-": "PiezoControl.Approach",
}

#: Parameters recorded in every frame's metadata, keyed like MATRIX result files.
FRAME_PARAMETERS = (
    "XYScanner.Width",
    "XYScanner.Height",
    "XYScanner.Points",
    "XYScanner.Lines",
    "XYScanner.X_Offset",
    "XYScanner.Y_Offset",
    "XYScanner.Angle",
    "XYScanner.Raster_Time",
    "XYScanner.X_Retrace",
    "XYScanner.Y_Retrace",
    "GapVoltageControl.Voltage",
    "Regulator.Setpoint_1",
    "Regulator.Feedback_Loop_Enabled",
)


def full(experiment: str, name: str) -> str:
    """``full("STM_AtomManipulation", "XYScanner.Width")`` ->
    ``"STM_AtomManipulation::XYScanner.Width"``; ``Experiment.X`` -> ``"<exp>::<exp>.X"``."""
    element, _, rest = name.partition(".")
    if element == "Experiment":
        element = experiment
    return f"{experiment}::{element}.{rest}"


def split(full_name: str) -> tuple[str, str]:
    """``"E::XYScanner.Width"`` -> ``("E", "XYScanner.Width")``; ``"E::E.State"`` ->
    ``("E", "Experiment.State")``. The experiment is ``""`` when ``full_name`` has none."""
    experiment, sep, name = full_name.partition("::")
    if not sep:
        return "", full_name
    element, dot, rest = name.partition(".")
    if dot and element == experiment:
        return experiment, f"Experiment.{rest}"
    return experiment, name


def prop(name: str) -> Prop:
    """The :class:`Prop` of a relative name, ``View.<channel>.<property>`` included.

    :raises KeyError: the driver never uses that name (a bug, not a MATRIX refusal).
    """
    if name in PROPERTIES:
        return PROPERTIES[name]
    element, _, rest = name.partition(".")
    if element == "View":
        _, _, leaf = rest.rpartition(".")
        if leaf in VIEW_PROPERTIES:
            return VIEW_PROPERTIES[leaf]
    raise KeyError(name)
