"""The simulated instrument's state and operations (synchronous; the driver wraps them).

State: the surface, the tip apex, the scanner (lateral position, z, feedback, bias, setpoint),
where the sample sits in z (``surface_z``: the scanner z at which the apex would touch the mean
surface), the coarse positioner's lateral offset, drift and creep, and a simulated clock (s).
Every operation validates its arguments against the instrument's limits first
(:class:`~probepilot.errors.LimitError`) and changes nothing when they fail, so a rejected
command leaves the microscope usable.

Conventions as on Nanonis: z is the scanner's retraction (larger is further from the sample)
within ``[0, z_range]``; withdrawing goes to ``z_range``. If the surface is beyond the scanner's
reach the feedback saturates at z = 0 and the current drops to nothing (lost contact); if it comes
closer than full retraction, or a dip goes deeper than ``crash_depth``, the tip crashes: the apex is
ruined, the surface cratered, the tip withdrawn, and an :class:`~probepilot.errors.InstrumentError`
is raised.

Random numbers come from independent generators spawned from the seed (tip changes,
conditioning, noise, drift, positioner), so the same seed and the same commands give bit-identical
frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from probepilot.errors import InstrumentError, LimitError, NotSupportedError, TipCrashError
from probepilot.model import (
    Dip,
    FloatArray,
    InstrumentLimits,
    Pulse,
    ScanArea,
    ScanSettings,
    SpectrumRequest,
    TipState,
)
from probepilot_sim import acquisition, conditioning, spectroscopy
from probepilot_sim import tip as tips
from probepilot_sim.drift import Drift
from probepilot_sim.features import Blobs
from probepilot_sim.grid import make_grid
from probepilot_sim.imaging import apparent_height, decay_constant, gap
from probepilot_sim.options import SimOptions
from probepilot_sim.surfaces import Surface, from_height_map, make_surface
from probepilot_sim.sxm_height import read_sxm_z
from probepilot_sim.tip import Apex

CHANNELS = {"Z": "m", "Current": "A"}
SPECTRUM_CHANNELS = {"Current": "A", "dIdV": "A/V"}
MOVE_SPEED = 100e-9  # m/s, lateral tip moves between scans
APPROACH_TIME = 20.0  # s, a coarse auto-approach
MAX_PIXELS = 4096
MAX_DRIFT_COMPENSATION = 1e-6  # m/s
AXES = ("x+", "x-", "y+", "y-", "z+", "z-")


def build_surface(options: SimOptions) -> Surface:
    """The surface the options ask for: a preset, or an .sxm height map."""
    preset = make_surface(
        options.surface,
        options.seed,
        herringbone=options.herringbone,
        density=options.feature_density,
    )
    if options.surface_file:
        image = read_sxm_z(options.surface_file)
        return from_height_map(image.heights, image.size, name=image.path, dos=preset.dos)
    return preset


@dataclass(slots=True)
class ScanPlan:
    """A frame planned from the current state; :meth:`Microscope.commit` applies it."""

    settings: ScanSettings
    request: acquisition.Request
    start: float  # simulator time of the first line
    times: FloatArray  # half-line boundaries
    walk: FloatArray  # random-walk part of the drift at those times
    apexes_after: list[tuple[int, Apex]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConditioningReport:
    """What a pulse or dip did (ground truth, for tests and metadata)."""

    before: TipState
    after: TipState
    changed: bool
    touched_surface: bool
    crashed: bool = False


class Microscope:
    """A simulated STM; see the module docstring."""

    def __init__(self, options: SimOptions | None = None, surface: Surface | None = None) -> None:
        self.options = options = options or SimOptions()
        seq = np.random.SeedSequence(options.seed)
        tip_seq, cond_seq, noise_seq, drift_seq, misc_seq = seq.spawn(5)
        self._rng_tip = np.random.default_rng(tip_seq)
        self._rng_cond = np.random.default_rng(cond_seq)
        self._noise_seq = noise_seq
        self._rng_misc = np.random.default_rng(misc_seq)
        self.surface = surface if surface is not None else build_surface(options)
        self.apex: Apex = tips.make_apex(options.tip, self._rng_tip)
        self.kappa = decay_constant(options.work_function)
        self.tau = 1.0 / (2 * math.pi * options.feedback_bandwidth)
        self.noise = acquisition.NoiseLevels(
            options.noise_z, options.flicker_z, options.line_offset_z, options.noise_current
        )
        self.drift = Drift(
            options.drift_velocity, options.drift_walk, np.random.default_rng(drift_seq)
        )
        self.clock = 0.0
        self.bias = options.bias
        self.setpoint = options.setpoint
        self.feedback = True
        self.withdrawn = False
        self.z_hold = 0.0
        self.x = 0.0
        self.y = 0.0
        self.offset = (0.0, 0.0)  # coarse positioner, world metres
        self.surface_z = 0.0
        self.tip_changes = 0
        self.crashes = 0
        self._apparent_cache: tuple[tuple[object, ...], float] | None = None
        self._land()

    # ------------------------------------------------------------------ limits and geometry

    @property
    def z_range(self) -> float:
        return self.options.piezo_range[2]

    def limits(self) -> InstrumentLimits:
        lim = self.options.bias_limit
        return InstrumentLimits(
            self.options.piezo_range,
            (-lim, lim),
            self.options.max_setpoint,
            z_limits=(0.0, self.z_range),
        )

    def _inside_piezo(self, x: float, y: float) -> bool:
        hx, hy = self.options.piezo_range[0] / 2, self.options.piezo_range[1] / 2
        eps = 1e-12
        return abs(x) <= hx + eps and abs(y) <= hy + eps

    def gap(self) -> float:
        return gap(self.bias, self.setpoint, self.kappa)

    def _apparent(self, x: float, y: float) -> float:
        """Constant-current height of the apex over scanner position (x, y) now, incl. drift z
        and apex length, relative to ``surface_z``."""
        damage = len(self.surface.features.damage_parts) if self.surface.features else 0
        key = (self.clock, x, y, self.apex, self.offset, damage, self.drift.version)
        if self._apparent_cache is not None and self._apparent_cache[0] == key:
            return self._apparent_cache[1]
        value = self._apparent_uncached(x, y)
        self._apparent_cache = (key, value)
        return value

    def _apparent_uncached(self, x: float, y: float) -> float:
        d = self.drift.peek(self.clock)
        wx, wy = x + self.offset[0] - d[0], y + self.offset[1] - d[1]
        reach = self.apex.reach + 0.3e-9
        step = max(reach / 24, 0.05e-9)
        grid = make_grid((wx, wy), 0.0, (-reach, reach), (-reach, reach), (step, step))
        heights = {w: self.surface.render(grid, w) for w in self.apex.widths}
        zero = np.zeros((1, 1))
        h = apparent_height(self.apex, heights, grid, zero, zero.copy(), self.kappa, 0.0)
        return float(h[0, 0]) + self.apex.length + float(d[2])

    def _target_z(self) -> float:
        """Scanner z at which the current would equal the setpoint here and now."""
        return self.surface_z + self.gap() + self._apparent(self.x, self.y)

    def tip_z(self) -> float:
        if self.withdrawn:
            return self.z_range
        if not self.feedback:
            return self.z_hold
        return min(max(self._target_z(), 0.0), self.z_range)

    def in_contact(self) -> bool:
        """True when the tip is tunnelling (not withdrawn and the surface within reach)."""
        if self.withdrawn:
            return False
        height = self.tip_z() - (self._target_z() - self.gap())  # apex height above the surface
        return height < 3 * self.gap() + 0.5e-9

    def _advance(self, seconds: float) -> None:
        self.clock += max(seconds, 0.0)

    def idle(self, seconds: float) -> None:
        """Let time pass with nothing happening (drift and creep go on)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise LimitError(f"sim: cannot idle for {seconds} s")
        self._advance(seconds)

    def _land(self) -> None:
        """Put the surface where tunnelling happens mid-range (what an auto-approach does)."""
        self.surface_z = 0.0
        target = self._target_z()
        jitter = self._rng_misc.uniform(-0.05, 0.05) * self.z_range
        self.surface_z = self.z_range / 2 + jitter - target

    # ------------------------------------------------------------------ settings

    def set_bias(self, voltage: float) -> None:
        lim = self.options.bias_limit
        if not math.isfinite(voltage) or abs(voltage) > lim:
            raise LimitError(
                f"sim: bias {voltage} V is outside [-{lim}, {lim}] V",
                hint="choose a bias inside the instrument's bias range (see limits())",
            )
        self.bias = float(voltage)

    def set_setpoint(self, current: float) -> None:
        top = self.options.max_setpoint
        if not math.isfinite(current) or not 0 < current <= top:
            raise LimitError(f"sim: setpoint {current} A is outside (0, {top}] A")
        self.setpoint = float(current)

    def set_feedback(self, on: bool) -> None:
        if on:
            self.withdrawn = False
            self.feedback = True
            self._check_touch("feedback on")
        else:
            self.z_hold = self.tip_z()
            self.feedback = False

    def withdraw(self) -> None:
        self.withdrawn = True
        self.feedback = False
        self.z_hold = self.z_range
        self._advance(0.1)

    def approach(self) -> None:
        """Auto-approach: find the surface (coarse steps if needed) and tunnel, feedback on."""
        reachable = 0.0 <= self._target_z() <= self.z_range
        if not reachable or self.withdrawn:
            self._advance(APPROACH_TIME if not reachable else 1.0)
            if not reachable:
                self._land()
        self.withdrawn = False
        self.feedback = True

    def move_tip(self, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y)) or not self._inside_piezo(x, y):
            hx, hy = self.options.piezo_range[0] / 2, self.options.piezo_range[1] / 2
            raise LimitError(
                f"sim: tip position ({x:.4g}, {y:.4g}) m is outside the piezo range "
                f"+-{hx:.4g} x +-{hy:.4g} m"
            )
        self._move(x, y)

    def _move(self, x: float, y: float) -> None:
        dx, dy = x - self.x, y - self.y
        duration = math.hypot(dx, dy) / MOVE_SPEED
        self._advance(duration)
        self.drift.add_creep(self.clock, (dx, dy, 0.0), self.options.creep, self.options.creep_time)
        self.x, self.y = x, y
        if self.feedback and not self.withdrawn:
            self._check_touch("tip move")

    def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        for v in (vx, vy, vz):
            if not math.isfinite(v) or abs(v) > MAX_DRIFT_COMPENSATION:
                raise LimitError(
                    f"sim: drift compensation {v} m/s exceeds {MAX_DRIFT_COMPENSATION} m/s"
                )
        self.drift.set_compensation(self.clock, (vx, vy, vz))

    # ------------------------------------------------------------------ crashes

    def _check_touch(self, what: str) -> None:
        """Crash if the surface is closer than the fully retracted tip."""
        if self._target_z() - self.gap() > self.z_range:
            self._crash(what, (self.x, self.y))

    def _crash(self, what: str, where: tuple[float, float], depth: float = 10e-9) -> None:
        self.apex = tips.crashed(self._rng_cond, tips.jump_length(self._rng_cond, self.apex.length))
        self._damage(conditioning.crater(self._rng_cond, depth, scale=3.0), where)
        self.crashes += 1
        self.withdrawn = True
        self.feedback = False
        self.z_hold = self.z_range
        raise TipCrashError(
            what,
            "the tip crashed into the surface and was withdrawn",
            hint="approach again and condition the tip (it is now blunt)",
        )

    def _damage(self, blobs: Blobs, where: tuple[float, float]) -> None:
        if not len(blobs):
            return
        d = self.drift.peek(self.clock)
        wx = where[0] + self.offset[0] - d[0]
        wy = where[1] + self.offset[1] - d[1]
        self.surface.add_damage(Blobs(blobs.x + wx, blobs.y + wy, blobs.height, blobs.sigma))

    # ------------------------------------------------------------------ conditioning

    def bias_pulse(self, voltage: float, width: float) -> ConditioningReport:
        lim = self.options.bias_limit
        if not math.isfinite(voltage) or abs(voltage) > lim:
            raise LimitError(f"sim: pulse of {voltage} V exceeds the bias range +-{lim} V")
        if not math.isfinite(width) or not 0 < width <= self.options.max_pulse_width:
            raise LimitError(
                f"sim: pulse width {width} s is outside (0, {self.options.max_pulse_width}] s"
            )
        return self._condition(Pulse(voltage, width), duration=width + 0.05)

    def dip(self, depth: float, bias: float) -> ConditioningReport:
        lim = self.options.bias_limit
        if not math.isfinite(depth) or not 0 < depth <= self.z_range:
            raise LimitError(f"sim: dip depth {depth} m is outside (0, {self.z_range}] m")
        if not math.isfinite(bias) or abs(bias) > lim:
            raise LimitError(f"sim: dip bias {bias} V is outside [-{lim}, {lim}] V")
        return self._condition(Dip(depth, bias), duration=0.5)

    def _condition(self, action: Pulse | Dip, duration: float) -> ConditioningReport:
        before = self.apex.state
        self._advance(duration)
        if not self.in_contact():
            return ConditioningReport(before, before, False, False)
        touches = True
        if isinstance(action, Dip):
            height = self.tip_z() - (self._target_z() - self.gap())
            touches = action.depth > height
            if not touches:  # the dip stopped short of the surface
                return ConditioningReport(before, before, False, False)
        outcome = conditioning.condition(
            self.apex, action, self._rng_cond, crash_depth=self.options.crash_depth
        )
        self._damage(outcome.damage, (self.x, self.y))
        if outcome.crashed:
            self.apex = outcome.apex
            self.crashes += 1
            self.withdrawn = True
            self.feedback = False
            self.z_hold = self.z_range
            depth = action.depth if isinstance(action, Dip) else 0.0
            raise InstrumentError(
                "dip",
                f"a dip of {depth * 1e9:.3g} nm (deeper than the crash depth "
                f"{self.options.crash_depth * 1e9:.3g} nm) crashed the tip; it was withdrawn",
                hint="approach again and condition the tip (it is now blunt)",
            )
        self.apex = outcome.apex
        return ConditioningReport(before, self.apex.state, outcome.changed, touches)

    # ------------------------------------------------------------------ coarse positioner

    def coarse_move(self, axis: str, steps: int) -> None:
        if axis not in AXES:
            raise LimitError(f"sim: unknown coarse axis {axis!r}; use one of {', '.join(AXES)}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 100_000:
            raise LimitError(f"sim: coarse steps must be an integer in [1, 100000], got {steps!r}")
        sign = 1.0 if axis[1] == "+" else -1.0
        self._advance(steps * 2e-3)
        if axis[0] == "z":
            # z+ retracts: the sample ends up further away, so the scanner must extend more.
            self.surface_z -= sign * steps * self.options.coarse_step_z
            if self.feedback and not self.withdrawn:
                self._check_touch("coarse move")
            elif self.withdrawn and self._target_z() - self.gap() > self.z_range:
                self._crash("coarse move", (self.x, self.y))
            return
        was_tunnelling = not self.withdrawn
        # A lateral coarse move is done safely: withdraw, step, approach again.
        self.withdraw()
        travel = steps * self.options.coarse_step * (1 + 0.05 * self._rng_misc.standard_normal())
        side = 0.02 * travel * self._rng_misc.standard_normal()
        dx, dy = (travel * sign, side) if axis[0] == "x" else (side, travel * sign)
        self.offset = (self.offset[0] + dx, self.offset[1] + dy)
        # The stick-slip jolt leaves the piezo settling for a while (a few nm, slowly).
        jolt = 0.03 * travel
        angle = self._rng_misc.uniform(0, 2 * math.pi)
        self.drift.add_creep(
            self.clock,
            (jolt * math.cos(angle), jolt * math.sin(angle), 0.0),
            1.0,
            3 * self.options.creep_time,
        )
        if was_tunnelling:
            self._land()
            self._advance(APPROACH_TIME)
            self.withdrawn = False
            self.feedback = True

    # ------------------------------------------------------------------ scanning

    def validate_scan(self, settings: ScanSettings) -> None:
        area = settings.area
        if not (1 <= area.pixels <= MAX_PIXELS and 1 <= area.lines <= MAX_PIXELS):
            raise LimitError(
                f"sim: a frame needs 1..{MAX_PIXELS} pixels and lines, "
                f"got {area.pixels} x {area.lines}"
            )
        w, h = area.size
        if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
            raise LimitError(f"sim: frame size {area.size} m must be positive")
        if not all(math.isfinite(v) for v in (*area.centre, area.angle)):
            raise LimitError("sim: frame centre and angle must be finite")
        for cx, cy in area.corners():
            if not self._inside_piezo(cx, cy):
                raise LimitError(
                    f"sim: the frame reaches ({cx:.4g}, {cy:.4g}) m, outside the piezo range "
                    f"+-{self.options.piezo_range[0] / 2:.4g} m",
                    hint="make the frame smaller or move it towards the centre; coarse-move "
                    "for fresh area",
                )
        if not math.isfinite(settings.line_time) or settings.line_time <= 0:
            raise LimitError(f"sim: line time {settings.line_time} s must be positive")
        if settings.speed > self.options.max_scan_speed:
            raise LimitError(
                f"sim: scan speed {settings.speed:.3g} m/s exceeds "
                f"{self.options.max_scan_speed:.3g} m/s"
            )
        if settings.direction not in ("up", "down"):
            raise LimitError(f"sim: scan direction {settings.direction!r} is not 'up' or 'down'")
        unknown = [c for c in settings.channels if c not in CHANNELS]
        if unknown:
            raise NotSupportedError(
                f"sim: cannot record channel(s) {', '.join(unknown)}; "
                f"available: {', '.join(CHANNELS)}"
            )

    def plan_scan(self, settings: ScanSettings) -> ScanPlan:
        """Validate, move to the frame, draw drift and tip changes; nothing is committed."""
        self.validate_scan(settings)
        area = settings.area
        lt = settings.line_time
        u, v = acquisition.nominal_axes(area, settings.direction)
        c, s = math.cos(area.angle), math.sin(area.angle)
        start_x = area.centre[0] + c * u[0] - s * v[0]
        start_y = area.centre[1] + s * u[0] + c * v[0]
        # Moving to the first pixel takes time and leaves creep, like any move.
        move = math.hypot(start_x - self.x, start_y - self.y)
        start = self.clock + move / MOVE_SPEED
        self.drift.add_creep(
            start,
            (start_x - self.x, start_y - self.y, 0.0),
            self.options.creep,
            self.options.creep_time,
        )
        times = start + lt * np.arange(2 * area.lines + 1, dtype=np.float64)
        walk = self.drift.walk_path(times)
        displacement = self.drift.deterministic(times) + walk

        changes: list[acquisition.TipChange] = []
        apexes_after: list[tuple[int, Apex]] = []
        apex = self.apex
        line = 0
        rng = self._rng_tip
        # A withdrawn tip is far from anything that could rearrange its apex.
        while apex.change_rate > 0 and not self.withdrawn:
            line += int(rng.geometric(min(apex.change_rate, 1.0))) - 1
            if line >= area.lines:
                break
            new = tips.spontaneous_change(apex, rng)
            changes.append(
                acquisition.TipChange(
                    line,
                    int(rng.integers(area.pixels)),
                    bool(rng.random() < 0.5),
                    new,
                    spike=float(rng.choice((-1.0, 1.0)) * rng.uniform(0.05e-9, 0.25e-9)),
                    decay=float(rng.uniform(2.0, 20.0)),
                )
            )
            apexes_after.append((line, new))
            apex = new
            line += 1

        if self.withdrawn:
            mode: acquisition.Mode = "withdrawn"
        elif self.feedback:
            mode = "feedback"
        else:
            mode = "hold"
        request = acquisition.Request(
            area=area,
            direction=settings.direction,
            line_time=lt,
            origin=(area.centre[0] + self.offset[0], area.centre[1] + self.offset[1]),
            displacement=displacement,
            apex=self.apex,
            changes=tuple(changes),
            surface_z=self.surface_z,
            gap=self.gap(),
            kappa=self.kappa,
            setpoint=self.setpoint,
            bias_sign=1.0 if self.bias >= 0 else -1.0,
            mode=mode,
            z_hold=self.z_hold,
            z_range=self.z_range,
            tau=self.tau,
            noise=self.noise,
            rng=np.random.default_rng(self._noise_seq.spawn(1)[0]),
            oversample=self._oversample(area),
        )
        return ScanPlan(settings, request, start, times, walk, apexes_after)

    def _oversample(self, area: ScanArea) -> int:
        """Render the surface on a twice finer grid when the frame resolves the lattice
        (under two pixels per period bilinear sampling would blur it) and is small enough."""
        lattice = self.surface.lattice
        if lattice is None or area.pixels * area.lines > 128 * 128:
            return 1
        pixel = min(area.pixel_size)
        return 2 if pixel < lattice.period / 2 else 1

    def render(self, plan: ScanPlan) -> acquisition.Result:
        """The frame's data (pure computation: safe to run in a worker thread)."""
        return acquisition.render(self.surface, plan.request)

    def commit(self, plan: ScanPlan, lines_done: int, result: acquisition.Result | None) -> None:
        """Apply the scan's consequences up to ``lines_done`` lines (all, or where it stopped)."""
        area = plan.settings.area
        self.clock = plan.start + 2 * lines_done * plan.settings.line_time
        if lines_done < area.lines:
            self.drift.rewind_walk(float(plan.times[2 * lines_done]), plan.walk[2 * lines_done])
        for line, apex in plan.apexes_after:
            if line < lines_done:
                self.apex = apex
                self.tip_changes += 1
        # The tip rests where the last backward line ended (or at the start if none was done).
        u, v = acquisition.nominal_axes(area, plan.settings.direction)
        c, s = math.cos(area.angle), math.sin(area.angle)
        row = max(lines_done - 1, 0)
        self.x = area.centre[0] + c * u[0] - s * v[row]
        self.y = area.centre[1] + s * u[0] + c * v[row]
        touched = result.touched_line if result is not None else None
        if touched is not None and touched < lines_done:
            self._crash("scan", (self.x, self.y))

    # ------------------------------------------------------------------ spectroscopy

    def _local_dos(self) -> spectroscopy.DOS:
        """The sample's DOS under the apex now: the surface's, changed on an adsorbate."""
        features = self.surface.features
        if features is None:
            return self.surface.dos
        d = self.drift.peek(self.clock)
        wx, wy = self.x + self.offset[0] - d[0], self.y + self.offset[1] - d[1]
        near = features.blobs_in(wx - 2e-9, wx + 2e-9, wy - 2e-9, wy + 2e-9)
        return spectroscopy.local_dos(self.surface.dos, spectroscopy.adsorbate_weight(near, wx, wy))

    def spectrum(self, request: SpectrumRequest) -> dict[str, FloatArray]:
        """Channels of a bias sweep at the tip position (feedback off during the sweep)."""
        lim = self.options.bias_limit
        if (
            not all(math.isfinite(v) for v in (request.start, request.stop))
            or max(abs(request.start), abs(request.stop)) > lim
        ):
            raise LimitError(
                f"sim: sweep {request.start}..{request.stop} V leaves the bias range +-{lim} V"
            )
        if request.start == request.stop:
            raise LimitError("sim: a sweep needs different start and stop biases")
        if not 2 <= request.points <= 100_000:
            raise LimitError(f"sim: a sweep needs 2..100000 points, got {request.points}")
        for name in ("settle_time", "integration_time"):
            value = getattr(request, name)
            if not math.isfinite(value) or not 0 <= value <= 10:
                raise LimitError(f"sim: {name} {value} s is outside [0, 10] s")
        unknown = [c for c in request.channels if c not in SPECTRUM_CHANNELS]
        if unknown:
            raise NotSupportedError(
                f"sim: cannot record spectrum channel(s) {', '.join(unknown)}; "
                f"available: {', '.join(SPECTRUM_CHANNELS)}"
            )
        sweep = np.linspace(request.start, request.stop, request.points)
        rng = np.random.default_rng(self._noise_seq.spawn(1)[0])
        if self.in_contact():
            # Gap set by the feedback at the imaging bias (or wherever z is held).
            height = self.tip_z() - (self._target_z() - self.gap())
            curve = spectroscopy.current_curve(
                np.concatenate([sweep, [self.bias]]),
                sample=self._local_dos(),
                tip=self.apex.dos,
                tip_smear=self.apex.smear,
                gap=height,
                work_function=self.options.work_function,
            )
            now = self.setpoint * math.exp(-2 * self.kappa * (height - self.gap()))
            scale = now / abs(curve[-1]) if curve[-1] != 0 else 0.0
            clean = curve[:-1] * scale
            # dI/dV comes from a lock-in, not from differentiating the noisy current: its own,
            # independent noise.
            didv = np.gradient(clean, sweep) * (1 + 0.01 * rng.standard_normal(sweep.size))
            current = clean * (1 + 0.005 * rng.standard_normal(sweep.size))
            if self.apex.state == TipState.UNSTABLE:  # telegraph noise of a hopping atom
                flips = rng.random(sweep.size) < 0.03
                level = np.where(np.cumsum(flips) % 2 == 1, 0.8, 1.0)
                current *= level
                didv *= level
        else:
            current = np.zeros_like(sweep)
            didv = np.zeros_like(sweep)
        current += 0.1e-12 * rng.standard_normal(sweep.size)
        didv += 1e-12 * rng.standard_normal(sweep.size)
        self._advance(request.points * (request.settle_time + request.integration_time) + 0.01)
        out = {"Current": current, "dIdV": didv}
        return {name: out[name] for name in request.channels}
