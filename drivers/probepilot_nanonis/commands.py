"""The command table: every Nanonis command probepilot speaks, request and reply layouts.

One declarative entry per command, shared by the driver and the virtual Nanonis. The first block
is the table of ``nanonis-protocol.md``; the second adds the few commands a bias spectrum needs
on a real controller (module open, sweep limits, points, timing), with the layouts of the
Nanonis TCP programming interface as the ``nanonisTCP`` client sends them.

Field names are ours (snake_case); the order and types are the wire's. Enumerations:

* ``Bias.Pulse``: ``z_hold`` 0 keep, 1 hold, 2 release; ``mode`` 0 keep, 1 relative, 2 absolute.
* ``Scan.Action``: ``action`` 0 start, 1 stop, 2 pause, 3 resume, 4 freeze, 5 unfreeze,
  6 go to centre; ``direction`` 1 up, 0 down.
* ``Scan.SpeedSet``: ``keep`` 0 no change, 1 speed, 2 line time; ``Scan.SpeedGet``: 0 speed,
  1 line time.
* ``Scan.FrameDataGrab``: ``direction`` 1 forward, 0 backward; ``scan_direction`` 1 up, 0 down.
* ``Motor.StartMove``: ``direction`` 0 X+, 1 X-, 2 Y+, 3 Y-, 4 Z+, 5 Z-.
* ``Piezo.DriftCompSet``: ``on`` 0 no change, 1 on, 2 off.
"""

from __future__ import annotations

from dataclasses import dataclass

from probepilot_nanonis.wire import (
    Layout,
    f32,
    f32_2d,
    f32s,
    f64,
    i32,
    i32s,
    string,
    strings,
    u16,
    u32,
)


@dataclass(frozen=True, slots=True)
class Command:
    """A command's name and the layouts of its request and its reply's return values."""

    name: str
    request: Layout
    reply: Layout


_NONE = Layout()
_FRAME = (f32("cx"), f32("cy"), f32("width"), f32("height"), f32("angle"))
_BUFFER = (i32("count"), i32s("channels", "count"), i32("pixels"), i32("lines"))
_SPEED = (
    f32("fwd_speed"),
    f32("bwd_speed"),
    f32("fwd_line_time"),
    f32("bwd_line_time"),
    u16("keep"),
    f32("ratio"),
)
_SCAN_PROPS = (
    u32("continuous"),
    u32("bouncy"),
    u32("autosave"),
    string("series"),
    string("comment"),
    strings("modules"),
    u32("autopaste"),
)
_TIP_SHAPER = (
    f32("switch_off_delay"),
    u32("change_bias"),
    f32("bias"),
    f32("tip_lift"),
    f32("lift_time_1"),
    f32("bias_lift"),
    f32("bias_settling"),
    f32("lift_height"),
    f32("lift_time_2"),
    f32("end_wait"),
    u32("restore_feedback"),
)
_SPECTR_TIMING = (
    f32("z_averaging_time"),
    f32("z_offset"),
    f32("initial_settling_time"),
    f32("max_slew_rate"),
    f32("settling_time"),
    f32("integration_time"),
    f32("end_settling_time"),
    f32("z_control_time"),
)


def _cmd(name: str, request: Layout = _NONE, reply: Layout = _NONE) -> Command:
    return Command(name, request, reply)


_TABLE = (
    _cmd("Bias.Set", Layout(f32("bias"))),
    _cmd("Bias.Get", reply=Layout(f32("bias"))),
    _cmd(
        "Bias.Pulse",
        Layout(u32("wait"), f32("width"), f32("bias"), u16("z_hold"), u16("mode")),
    ),
    _cmd("Current.Get", reply=Layout(f32("current"))),
    _cmd("ZCtrl.OnOffSet", Layout(u32("on"))),
    _cmd("ZCtrl.OnOffGet", reply=Layout(u32("on"))),
    _cmd("ZCtrl.ZPosSet", Layout(f32("z"))),
    _cmd("ZCtrl.ZPosGet", reply=Layout(f32("z"))),
    _cmd("ZCtrl.SetpntSet", Layout(f32("setpoint"))),
    _cmd("ZCtrl.SetpntGet", reply=Layout(f32("setpoint"))),
    _cmd("ZCtrl.Withdraw", Layout(u32("wait"), i32("timeout_ms"))),
    _cmd("ZCtrl.Home"),
    _cmd("FolMe.XYPosSet", Layout(f64("x"), f64("y"), u32("wait"))),
    _cmd("FolMe.XYPosGet", Layout(u32("wait_newest")), Layout(f64("x"), f64("y"))),
    _cmd("Scan.Action", Layout(u16("action"), u32("direction"))),
    _cmd("Scan.StatusGet", reply=Layout(u32("running"))),
    _cmd("Scan.WaitEndOfScan", Layout(i32("timeout_ms")), Layout(u32("timed_out"), string("path"))),
    _cmd("Scan.FrameSet", Layout(*_FRAME)),
    _cmd("Scan.FrameGet", reply=Layout(*_FRAME)),
    _cmd("Scan.BufferSet", Layout(*_BUFFER)),
    _cmd("Scan.BufferGet", reply=Layout(*_BUFFER)),
    _cmd("Scan.SpeedSet", Layout(*_SPEED)),
    _cmd("Scan.SpeedGet", reply=Layout(*_SPEED)),
    _cmd(
        "Scan.FrameDataGrab",
        Layout(u32("channel"), u32("direction")),
        Layout(
            string("name"),
            i32("rows"),
            i32("cols"),
            f32_2d("data", "rows", "cols"),
            u32("scan_direction"),
        ),
    ),
    # Older clients send Scan.PropsSet without module names and autopaste.
    _cmd("Scan.PropsSet", Layout(*_SCAN_PROPS, optional_from=5)),
    _cmd("Scan.PropsGet", reply=Layout(*_SCAN_PROPS)),
    _cmd("Signals.NamesGet", reply=Layout(strings("names"))),
    _cmd(
        "Signals.ValsGet",
        Layout(i32("count"), i32s("indexes", "count"), u32("wait")),
        Layout(i32("count"), f32s("values", "count")),
    ),
    _cmd("TipShaper.PropsSet", Layout(*_TIP_SHAPER)),
    _cmd("TipShaper.PropsGet", reply=Layout(*_TIP_SHAPER)),
    _cmd("TipShaper.Start", Layout(u32("wait"), i32("timeout_ms"))),
    _cmd("Motor.StartMove", Layout(u32("direction"), u16("steps"), u32("group"), u32("wait"))),
    _cmd("AutoApproach.Open"),
    _cmd("AutoApproach.OnOffSet", Layout(u16("on"))),
    _cmd("AutoApproach.OnOffGet", reply=Layout(u16("on"))),
    _cmd("Piezo.DriftCompSet", Layout(i32("on"), f32("vx"), f32("vy"), f32("vz"), f32("limit"))),
    _cmd(
        "Piezo.DriftCompGet",
        reply=Layout(
            u32("on"),
            f32("vx"),
            f32("vy"),
            f32("vz"),
            u32("x_saturated"),
            u32("y_saturated"),
            u32("z_saturated"),
            f32("limit"),
        ),
    ),
    _cmd("Piezo.RangeGet", reply=Layout(f32("x"), f32("y"), f32("z"))),
    _cmd(
        "BiasSpectr.Start",
        Layout(u32("get_data"), string("base_name")),
        Layout(
            strings("channels"),
            i32("rows"),
            i32("cols"),
            f32_2d("data", "rows", "cols"),
            i32("count"),
            f32s("parameters", "count"),
        ),
    ),
    # Beyond the protocol notes' first table: what a sweep needs on a real controller.
    _cmd("BiasSpectr.Open"),
    _cmd("BiasSpectr.LimitsSet", Layout(f32("start"), f32("end"))),
    _cmd("BiasSpectr.LimitsGet", reply=Layout(f32("start"), f32("end"))),
    _cmd(
        "BiasSpectr.PropsSet",
        Layout(
            u16("save_all"),
            i32("sweeps"),
            u16("backward"),
            i32("points"),
            f32("z_offset"),
            u16("autosave"),
            u16("save_dialog"),
        ),
    ),
    _cmd("BiasSpectr.TimingSet", Layout(*_SPECTR_TIMING)),
    _cmd("BiasSpectr.TimingGet", reply=Layout(*_SPECTR_TIMING)),
)

#: Every command by name.
COMMANDS: dict[str, Command] = {c.name: c for c in _TABLE}
