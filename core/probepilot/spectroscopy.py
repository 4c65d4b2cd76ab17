"""Spectroscopy in a run: where spectra are taken, how dI/dV is obtained, grids.

After every frame the image calls good, a run with ``[spectroscopy] spectra_per_frame > 0``
takes point spectra at spots the analyzers found (:func:`pick_points`): the centre of the
largest clean square (``"terrace"``, from the ``roughness`` analyzer) and adsorbates
(``"adsorbate"`` findings, from the ``adsorbates`` analyzer); every ``grid_every``-th good frame
it also takes a grid of spectra on the clean terrace (:func:`grid_area`). Each spectrum is a
:class:`~probepilot.model.PointSpectrum` or :class:`~probepilot.model.GridSpectrum` action that
passes the safety envelope like any other, is persisted as ``.dat`` / ``.3ds`` before anything
analyses it, and is shown to every analyzer with ``analyze_spectrum``
(:class:`~probepilot.contracts.SpectrumAnalyzer`), whose findings join the frame's. A confident
"the surface state is smeared or missing on clean terrace" then makes the frame's tip state
``blunt`` (:meth:`Spectroscopist.second_opinion`): a blunt tip images a flat metal terrace
well but smears its Shockley surface state, which the image-based findings cannot see.

dI/dV (:data:`~probepilot.model.DidvSource`):

``driver``
    the controller records it with the sweep (its internal lock-in, or an external lock-in's
    output wired to one of its inputs). A driver that cannot record it falls back to
    ``numerical``; the spectrum's ``dIdV source`` metadata says which was used.
``lockin``
    an external lock-in amplifier among the run's instruments, read point by point while the
    bias is stepped with the feedback off (:func:`lockin_sweep`): dI/dV = X / (gain *
    modulation). Slower (each point waits five time constants) and without I(V).
``numerical``
    the derivative of I(V) (a local linear fit over a few points: :func:`numerical_didv`).
``none``
    I(V) only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np

from probepilot.contracts import Capability, Driver, SpectrumAnalyzer
from probepilot.errors import NotSupportedError
from probepilot.model import (
    DidvSource,
    Finding,
    FloatArray,
    Frame,
    GridSpectrum,
    PointSpectrum,
    ScanArea,
    Spectrum,
    SpectrumRequest,
    TipState,
)
from probepilot.observe import tip_state_from
from probepilot.options import Doc, Quantity, Range

if TYPE_CHECKING:
    from probepilot.contracts import Analyzer
    from probepilot.instruments import Instruments, LockInSetup
    from probepilot.store.grid import Grid

__all__ = [
    "SECOND_OPINION_CONFIDENCE",
    "Spectroscopist",
    "SpectroscopyOptions",
    "grid_area",
    "grid_positions",
    "lockin_sweep",
    "measure_grid",
    "measure_point",
    "numerical_didv",
    "pick_points",
]

_log = logging.getLogger(__name__)

#: Confidence from which a spectrum-based "bad tip" verdict overrules an image that looks good.
SECOND_OPINION_CONFIDENCE = 0.5
#: Finding values of a spectrum analyzer's verdict that mean the tip is fine.
_GOOD = "good"

Target = Literal["terrace", "adsorbate"]


@dataclass(frozen=True)
class SpectroscopyOptions:
    """The ``[spectroscopy]`` table: spectra and grids a run takes after good frames."""

    spectra_per_frame: Annotated[
        int, Range(0, 100), Doc("point spectra after every frame the image calls good (0: none)")
    ] = 0
    targets: Annotated[
        list[Target],
        Doc(
            "where to take them, in turn: 'terrace' (centre of the largest clean square) and "
            "'adsorbate' (adsorbates the 'adsorbates' analyzer found)"
        ),
    ] = field(default_factory=lambda: ["terrace", "adsorbate"])
    start: Annotated[float, Quantity("V"), Range(-10, 10), Doc("bias at the sweep's start")] = -1.0
    stop: Annotated[float, Quantity("V"), Range(-10, 10), Doc("bias at the sweep's end")] = 0.5
    points: Annotated[int, Range(2, 100_000), Doc("points per sweep")] = 301
    settle_time: Annotated[
        float, Quantity("s"), Range(0, 1), Doc("wait after each bias step before measuring")
    ] = 1e-3
    integration_time: Annotated[
        float, Quantity("s"), Range(0, 1), Doc("integration time per sweep point")
    ] = 1e-3
    didv: Annotated[
        Literal["auto", "driver", "lockin", "numerical", "none"],
        Doc(
            "where dI/dV comes from: 'auto' (the lock-in among the instruments if there is one, "
            "else the controller), 'driver', 'lockin', 'numerical' (derivative of I(V)), 'none'"
        ),
    ] = "auto"
    grid_every: Annotated[
        int, Range(0, 1_000_000), Doc("a spectroscopy grid after every Nth good frame (0: none)")
    ] = 0
    grid_points: Annotated[int, Range(1, 256), Doc("grid points per side")] = 8
    grid_size: Annotated[
        float, Quantity("m"), Range(1e-10, 1e-5), Doc("side of the grid, centred on the terrace")
    ] = 3e-9
    modulation: Annotated[
        float,
        Quantity("V"),
        Range(0, 0.1),
        Doc("lock-in bias modulation at the junction, rms (set on the lock-in at the start)"),
    ] = 10e-3
    modulation_ratio: Annotated[
        float,
        Range(1e-6, 1),
        Doc("junction volts per volt of the lock-in's sine output (1:100 divider: 0.01)"),
    ] = 1.0
    frequency: Annotated[
        float, Quantity("Hz"), Range(1, 100_000), Doc("lock-in reference frequency")
    ] = 873.0
    time_constant: Annotated[
        float, Quantity("s"), Range(1e-5, 30), Doc("lock-in output time constant")
    ] = 3e-3
    preamp_gain: Annotated[
        float,
        Quantity("V/A"),
        Range(1, 1e13),
        Doc("current preamplifier gain, when no preamplifier is among the instruments"),
    ] = 1e9
    second_opinion: Annotated[
        bool,
        Doc(
            "a confident spectrum-based 'bad tip' verdict on clean terrace makes a frame the "
            "image calls good 'blunt'"
        ),
    ] = True

    def __post_init__(self) -> None:
        if self.start == self.stop:
            raise ValueError("start and stop must differ")

    @property
    def enabled(self) -> bool:
        return self.spectra_per_frame > 0 or self.grid_every > 0

    def request(self) -> SpectrumRequest:
        """The sweep every spectrum of the run uses."""
        return SpectrumRequest(
            self.start, self.stop, self.points, self.settle_time, self.integration_time
        )


# --------------------------------------------------------------------------------------------
# Where


def pick_points(
    frame: Frame, findings: Sequence[Finding], targets: Sequence[str], count: int
) -> list[tuple[tuple[float, float], str]]:
    """Up to ``count`` spots for point spectra, with what each is: ``(x, y)`` m and target.

    Targets take turns in the order given. ``"terrace"`` yields the centre of the largest clean
    square (``roughness`` finding, ``clean_x``/``clean_y``), then points a quarter of its side
    around it; ``"adsorbate"`` yields the ``adsorbate`` findings' ``x``/``y``, the most
    confident first. Spots outside the frame are skipped; a target with no spot left gives way.
    """
    pools: dict[str, list[tuple[float, float]]] = {
        "terrace": _terrace_points(findings),
        "adsorbate": _adsorbate_points(findings),
    }
    corners = frame.area.corners()
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    box = (min(xs), max(xs), min(ys), max(ys))
    for name, pool in pools.items():
        pools[name] = [p for p in pool if box[0] <= p[0] <= box[1] and box[2] <= p[1] <= box[3]]
    chosen: list[tuple[tuple[float, float], str]] = []
    wanted = [t for t in targets if t in pools]
    while len(chosen) < count and any(pools[t] for t in wanted):
        for target in wanted:
            if pools[target] and len(chosen) < count:
                chosen.append((pools[target].pop(0), target))
    return chosen


def _terrace_points(findings: Sequence[Finding]) -> list[tuple[float, float]]:
    best: Finding | None = None
    for f in findings:
        if f.kind != "roughness" or f.values.get("status", "ok") != "ok":
            continue
        if best is None or _num(f, "clean_square") > _num(best, "clean_square"):
            best = f
    if best is None:
        return []
    x, y, side = _num(best, "clean_x"), _num(best, "clean_y"), _num(best, "clean_square")
    if not (math.isfinite(x) and math.isfinite(y)) or not side > 0:
        return []
    q = side / 4
    return [(x, y)] + [(x + dx * q, y + dy * q) for dx, dy in ((1, 1), (-1, -1), (1, -1), (-1, 1))]


def _adsorbate_points(findings: Sequence[Finding]) -> list[tuple[float, float]]:
    found = [
        f
        for f in findings
        if f.kind == "adsorbate"
        and f.values.get("status", "ok") == "ok"
        and math.isfinite(_num(f, "x"))
        and math.isfinite(_num(f, "y"))
    ]
    found.sort(key=lambda f: -f.confidence)
    return [(_num(f, "x"), _num(f, "y")) for f in found]


def _num(finding: Finding, key: str) -> float:
    value = finding.values.get(key, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def grid_area(frame: Frame, findings: Sequence[Finding], size: float, points: int) -> ScanArea:
    """A ``points`` x ``points`` grid of side ``size`` (at most the frame's) centred on the
    largest clean square, else on the frame, moved to lie inside the frame."""
    area = frame.area
    side = min(size, area.size[0], area.size[1])
    terrace = _terrace_points(findings)
    cx, cy = terrace[0] if terrace else area.centre
    # Keep the grid inside the (unrotated) frame; for a rotated frame its centre is kept.
    if area.angle == 0.0:
        hx, hy = (area.size[0] - side) / 2, (area.size[1] - side) / 2
        cx = min(max(cx, area.centre[0] - hx), area.centre[0] + hx)
        cy = min(max(cy, area.centre[1] - hy), area.centre[1] + hy)
    return ScanArea((cx, cy), (side, side), points, points, area.angle)


def grid_positions(area: ScanArea) -> FloatArray:
    """Where the points of a grid over ``area`` go, ``(lines, pixels, 2)`` m, as Nanonis places
    them (and :meth:`probepilot.store.Grid.nominal_positions` reads them)."""
    ny, nx = area.lines, area.pixels
    (cx, cy), (width, height) = area.centre, area.size
    u = -width / 2 + np.arange(nx) * (width / nx)
    v = -height / 2 + np.arange(ny) * (height / ny)
    uu, vv = np.meshgrid(u, v)
    c, s = math.cos(area.angle), math.sin(area.angle)
    return np.stack((cx + uu * c - vv * s, cy + uu * s + vv * c), axis=-1)


# --------------------------------------------------------------------------------------------
# How


def numerical_didv(sweep: FloatArray, current: FloatArray, window: int | None = None) -> FloatArray:
    """dI/dV from I(V): the slope of a straight line fitted over ``window`` points around each
    point (odd; default about 1/40 of the sweep, at least 5), i.e. a Savitzky-Golay first
    derivative, which averages the current's noise instead of amplifying it. The ends use the
    window shifted inwards. NaN points (an interrupted sweep) stay NaN."""
    v = np.asarray(sweep, dtype=np.float64)
    i = np.asarray(current, dtype=np.float64)
    n = v.size
    out = np.full(n, np.nan)
    good = np.isfinite(v) & np.isfinite(i)
    m = int(good.sum())
    if m < 2:
        return out
    vv, ii = v[good], i[good]
    w = window if window is not None else max(5, (m // 40) | 1)
    w = max(2, min(w, m))
    half = w // 2
    slopes = np.empty(m)
    for k in range(m):
        lo = min(max(0, k - half), m - w)
        xs, ys = vv[lo : lo + w], ii[lo : lo + w]
        dx = xs - xs.mean()
        denom = float(np.dot(dx, dx))
        slopes[k] = float(np.dot(dx, ys - ys.mean())) / denom if denom > 0 else math.nan
    out[good] = slopes
    return out


async def measure_point(
    driver: Driver, action: PointSpectrum, instruments: Instruments | None = None
) -> Spectrum:
    """Carry out a :class:`PointSpectrum`: move there (feedback on), sweep, dI/dV as asked.

    :raises NotSupportedError: ``didv="lockin"`` without a lock-in among ``instruments``.
    :raises DriverError: whatever the driver or an instrument raises.
    """
    if action.position is not None:
        await driver.set_tip_position(*action.position)
    spectrum = await _sweep(driver, action.request, action.didv, instruments)
    if action.target:
        spectrum.metadata["target"] = action.target
    return spectrum


async def _sweep(
    driver: Driver, request: SpectrumRequest, didv: DidvSource, instruments: Instruments | None
) -> Spectrum:
    if didv == "lockin":
        if instruments is None:
            raise NotSupportedError(
                "a lock-in spectrum needs a lock-in amplifier among the run's instruments"
            )
        return await lockin_sweep(driver, await instruments.lockin_setup(), request)
    source: DidvSource = didv
    if didv == "driver":
        try:
            spectrum = await driver.spectrum(replace(request, channels=("Current", "dIdV")))
        except NotSupportedError:
            source = "numerical"
            spectrum = await driver.spectrum(replace(request, channels=("Current",)))
    else:
        spectrum = await driver.spectrum(replace(request, channels=("Current",)))
    if source == "numerical" and "Current" in spectrum.channels:
        spectrum.channels["dIdV"] = numerical_didv(spectrum.sweep, spectrum.channels["Current"])
        spectrum.units["dIdV"] = "A/V"
    spectrum.metadata["dIdV source"] = source
    return spectrum


async def lockin_sweep(driver: Driver, setup: LockInSetup, request: SpectrumRequest) -> Spectrum:
    """Step the bias through ``request`` with the feedback off, reading the lock-in at each
    point after ``setup.settle`` (at least the request's settle plus integration time).

    Channels: ``dIdV`` (A/V, X / (gain * modulation)), ``LI X`` and ``LI Y`` (the lock-in's
    outputs, V). The bias returns to its value before the sweep and the feedback comes back
    on whatever happens (also when the sweep is cancelled). Points the lock-in flagged as
    overloaded are counted in the metadata (``Lock-in overloads``).
    """
    sweep = np.linspace(request.start, request.stop, request.points)
    x = np.full(sweep.size, np.nan)
    y = np.full(sweep.size, np.nan)
    wait = max(setup.settle, request.settle_time + request.integration_time)
    bias = await driver.get_bias()
    tip = await driver.get_tip_position()
    started = time.time()
    overloads = 0
    await driver.set_feedback(False)
    try:
        for k, value in enumerate(sweep.tolist()):
            await driver.set_bias(value)
            await asyncio.sleep(wait)
            reading = await setup.lockin.read()
            x[k], y[k] = reading.x, reading.y
            overloads += reading.overload
    finally:
        await driver.set_bias(bias)
        await driver.set_feedback(True)
    scale = 1.0 / (setup.gain * setup.modulation) if setup.gain * setup.modulation > 0 else 0.0
    return Spectrum(
        sweep_name="Bias",
        sweep_unit="V",
        sweep=sweep,
        channels={"dIdV": x * scale, "LI X": x, "LI Y": y},
        units={"dIdV": "A/V", "LI X": "V", "LI Y": "V"},
        position=(tip.x, tip.y),
        started_at=started,
        metadata={
            "dIdV source": "lockin",
            "Lock-in modulation (V)": setup.modulation,
            "Lock-in settle (s)": wait,
            "Preamplifier gain (V/A)": setup.gain,
            "Lock-in overloads": overloads,
            "bias": bias,
        },
    )


async def measure_grid(
    driver: Driver, action: GridSpectrum, instruments: Instruments | None = None
) -> Grid:
    """Carry out a :class:`GridSpectrum`: a point spectrum at every grid point, row by row from
    the low-y edge, recording the tip's X, Y and Z (feedback on, before each sweep)."""
    from probepilot.store.grid import Grid  # the store is not needed to read a config

    area = action.area
    ny, nx = area.lines, area.pixels
    where = grid_positions(area)
    started = time.time()
    channels: dict[str, FloatArray] = {}
    units: dict[str, str] = {}
    parameters = {name: np.full((ny, nx), np.nan) for name in ("X", "Y", "Z")}
    measured = np.zeros((ny, nx), dtype=bool)
    sweep: FloatArray | None = None
    sweep_name, sweep_unit = "Bias", "V"
    source: str = action.didv
    for row in range(ny):
        for col in range(nx):
            x, y = float(where[row, col, 0]), float(where[row, col, 1])
            await driver.set_tip_position(x, y)
            tip = await driver.get_tip_position()
            spectrum = await _sweep(driver, action.request, action.didv, instruments)
            if sweep is None:
                sweep = np.asarray(spectrum.sweep, dtype=np.float64)
                sweep_name, sweep_unit = spectrum.sweep_name, spectrum.sweep_unit
                source = str(spectrum.metadata.get("dIdV source", source))
            for name, values in spectrum.channels.items():
                if name not in channels:
                    channels[name] = np.full((ny, nx, sweep.size), np.nan)
                    units[name] = spectrum.units.get(name, "")
                data = np.asarray(values, dtype=np.float64)
                channels[name][row, col, : data.size] = data[: sweep.size]
            for name, value in (("X", tip.x), ("Y", tip.y), ("Z", tip.z)):
                parameters[name][row, col] = value
            measured[row, col] = True
    assert sweep is not None  # a grid has at least one point
    return Grid(
        sweep_name=sweep_name,
        sweep_unit=sweep_unit,
        sweep=sweep,
        channels=channels,
        units=units,
        parameters=parameters,
        parameter_units={"X": "m", "Y": "m", "Z": "m"},
        measured=measured,
        area=area,
        started_at=started,
        finished_at=time.time(),
        source="probepilot",
        metadata={"Experiment": "Grid Spectroscopy", "Comment": f"dIdV source: {source}"},
    )


# --------------------------------------------------------------------------------------------
# When, and what it means


class Spectroscopist:
    """Plans a run's spectroscopy and turns spectrum findings into the second opinion.

    :param options: the ``[spectroscopy]`` table.
    :param instruments: the run's instruments (a lock-in decides what ``didv = "auto"`` means).
    """

    def __init__(self, options: SpectroscopyOptions, instruments: Instruments | None) -> None:
        self.options = options
        self.instruments = instruments
        self.good_frames = 0
        self._prepared = False
        self._warned = False

    @property
    def didv(self) -> DidvSource:
        """The dI/dV source the run's spectra use (``auto`` resolved)."""
        wanted = self.options.didv
        if wanted == "auto":
            has_lockin = self.instruments is not None and self.instruments.lockin is not None
            return "lockin" if has_lockin else "driver"
        return wanted

    def plan(
        self,
        frame: Frame,
        findings: Sequence[Finding],
        capabilities: frozenset[Capability] | None = None,
    ) -> list[PointSpectrum | GridSpectrum]:
        """The spectra to take after ``frame``: none unless the image calls the tip good, and
        none when the driver (``capabilities``, None: assume all) cannot take them: spectra need
        ``spectrum`` (a lock-in sweep does not) and ``tip_move``."""
        opts = self.options
        if not opts.enabled or not frame.complete:
            return []
        if capabilities is not None:
            needed = {Capability.TIP_MOVE} | (
                set() if self.didv == "lockin" else {Capability.SPECTRUM}
            )
            missing = sorted(str(c) for c in needed - capabilities)
            if missing:
                if not self._warned:
                    _log.warning("no spectroscopy: the driver cannot do %s", ", ".join(missing))
                    self._warned = True
                return []
        if tip_state_from(findings) != TipState.GOOD:
            return []
        self.good_frames += 1
        request = opts.request()
        actions: list[PointSpectrum | GridSpectrum] = [
            PointSpectrum(request, position, self.didv, target)
            for position, target in pick_points(
                frame, findings, opts.targets, opts.spectra_per_frame
            )
        ]
        if opts.grid_every and self.good_frames % opts.grid_every == 0:
            area = grid_area(frame, findings, opts.grid_size, opts.grid_points)
            actions.append(GridSpectrum(area, request, self.didv))
        return actions

    async def prepare(self) -> None:
        """Set the lock-in up once, before the first lock-in spectrum: reference frequency and
        amplitude (``modulation / modulation_ratio``), time constant, then auto-gain."""
        if self._prepared or self.didv != "lockin" or self.instruments is None:
            return
        lockin = self.instruments.lockin
        if lockin is None:
            return
        opts = self.options
        await lockin.set_reference(opts.frequency, opts.modulation / opts.modulation_ratio)
        await lockin.set_time_constant(opts.time_constant)
        await lockin.auto_gain()
        self._prepared = True

    @staticmethod
    def analyze(
        spectrum: Spectrum, file: str, analyzers: Sequence[Analyzer | SpectrumAnalyzer]
    ) -> list[Finding]:
        """Every spectrum analyzer's findings on ``spectrum``, each naming the ``spectrum``
        file and its ``target`` in its values."""
        out: list[Finding] = []
        target = str(spectrum.metadata.get("target", ""))
        for analyzer in analyzers:
            if not isinstance(analyzer, SpectrumAnalyzer):
                continue
            for finding in analyzer.analyze_spectrum(spectrum):
                values = {**finding.values, "spectrum": file, "target": target}
                out.append(replace(finding, values=values))
        return out

    def second_opinion(self, findings: Sequence[Finding]) -> list[Finding]:
        """A ``tip_state`` finding saying ``blunt`` when the terrace spectra mostly say the tip
        is bad and the most confident of them reaches :data:`SECOND_OPINION_CONFIDENCE`; else
        nothing. Spectra never call a tip good (a double tip can have a fine spectrum)."""
        if not self.options.second_opinion:
            return []
        verdicts = [
            f
            for f in findings
            if "state" in f.values
            and "spectrum" in f.values
            and f.values.get("status", "ok") == "ok"
            and f.values.get("target", "terrace") in ("terrace", "")
            and f.confidence > 0
        ]
        bad = [f for f in verdicts if f.values["state"] != _GOOD]
        good = [f for f in verdicts if f.values["state"] == _GOOD]
        if not bad or len(bad) <= len(good):
            return []
        worst = max(bad, key=lambda f: f.confidence)
        if worst.confidence < SECOND_OPINION_CONFIDENCE:
            return []
        return [
            Finding(
                "spectroscopy",
                "tip_state",
                worst.confidence,
                {"status": "ok", "state": TipState.BLUNT.value, "source": "spectrum"},
                message=f"second opinion from {len(bad)} of {len(verdicts)} terrace spectra: "
                f"{worst.message}",
            )
        ]
