"""Spectroscopy's pieces: where spectra go, numerical dI/dV, lock-in sweeps, grids, the
second opinion."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

from probepilot.actions import perform
from probepilot.errors import NotSupportedError
from probepilot.instruments import Instruments
from probepilot.model import (
    Channel,
    Finding,
    Frame,
    GridSpectrum,
    LockInReading,
    PointSpectrum,
    ScanArea,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)
from probepilot.spectroscopy import (
    Spectroscopist,
    SpectroscopyOptions,
    grid_area,
    grid_positions,
    lockin_sweep,
    numerical_didv,
    pick_points,
)
from probepilot.store.grid import Grid

AREA = ScanArea((100e-9, -50e-9), (20e-9, 20e-9), 32, 32)


def frame(area: ScanArea = AREA) -> Frame:
    z = np.zeros((area.lines, area.pixels))
    return Frame({"Z": Channel("Z", "m", z)}, area, "down", 1.0, 1e-10, 0.1, 0.0, 1.0, area.lines)


def roughness(x: float, y: float, side: float) -> Finding:
    values = {"status": "ok", "clean_x": x, "clean_y": y, "clean_square": side}
    return Finding("roughness", "roughness", 1.0, values)


def adsorbate(x: float, y: float, confidence: float) -> Finding:
    return Finding("adsorbates", "adsorbate", confidence, {"status": "ok", "x": x, "y": y})


GOOD = Finding("double_tip", "double_tip", 0.1, {"status": "ok"})
DOUBLE = Finding("double_tip", "double_tip", 0.9, {"status": "ok"})


def test_points_alternate_between_terrace_and_adsorbates() -> None:
    findings = [
        roughness(95e-9, -45e-9, 8e-9),
        adsorbate(105e-9, -55e-9, 0.6),
        adsorbate(101e-9, -52e-9, 0.9),
        adsorbate(500e-9, 0.0, 1.0),  # outside the frame: skipped
    ]
    points = pick_points(frame(), findings, ["terrace", "adsorbate"], 5)
    assert points[0] == ((95e-9, -45e-9), "terrace")
    assert points[1] == ((101e-9, -52e-9), "adsorbate")  # the most confident first
    assert points[2][1] == "terrace" and points[3] == ((105e-9, -55e-9), "adsorbate")
    assert points[4][1] == "terrace"  # no adsorbate left: the terrace fills in
    assert points[2][0] == pytest.approx((97e-9, -43e-9))  # a quarter side off the centre
    assert pick_points(frame(), findings, ["adsorbate"], 9) == [
        ((101e-9, -52e-9), "adsorbate"),
        ((105e-9, -55e-9), "adsorbate"),
    ]
    assert pick_points(frame(), [], ["terrace", "adsorbate"], 3) == []


def test_the_grid_sits_on_the_terrace_inside_the_frame_where_nanonis_puts_it() -> None:
    area = grid_area(frame(), [roughness(109e-9, -50e-9, 5e-9)], 4e-9, 5)
    assert area.size == (4e-9, 4e-9) and (area.pixels, area.lines) == (5, 5)
    assert area.centre == pytest.approx((108e-9, -50e-9))  # pulled inside the frame's edge
    assert grid_area(frame(), [], 40e-9, 3).size == (20e-9, 20e-9)  # at most the frame
    rotated = ScanArea((1e-9, 2e-9), (3e-9, 2e-9), 4, 3, angle=0.4)
    grid = Grid("Bias", "V", np.zeros(2), {}, {}, {}, {}, np.zeros((3, 4), bool), rotated)
    np.testing.assert_allclose(grid_positions(rotated), grid.nominal_positions())


def test_numerical_didv_is_the_slope_and_averages_noise() -> None:
    v = np.linspace(-1, 1, 401)
    current = 2e-9 * v + 1e-9 * v**3
    np.testing.assert_allclose(
        numerical_didv(v, current)[5:-5], (2e-9 + 3e-9 * v**2)[5:-5], rtol=2e-3
    )
    rng = np.random.default_rng(0)
    noisy = current + 2e-12 * rng.standard_normal(v.size)
    smooth = numerical_didv(v, noisy)
    raw = np.gradient(noisy, v)
    truth = 2e-9 + 3e-9 * v**2
    assert np.std(smooth - truth) < 0.3 * np.std(raw - truth)
    cut = noisy.copy()
    cut[300:] = np.nan  # an interrupted sweep
    out = numerical_didv(v, cut)
    assert np.isnan(out[300:]).all() and np.isfinite(out[:300]).all()


class SweepDriver:
    """Records bias, feedback and moves; sweeps give I = 1 nS * V."""

    def __init__(self, didv: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.bias, self.feedback, self.x, self.y = 0.8, True, 0.0, 0.0
        self.didv = didv

    async def get_bias(self) -> float:
        return self.bias

    async def set_bias(self, v: float) -> None:
        self.calls.append(("bias", v))
        self.bias = v

    async def set_feedback(self, on: bool) -> None:
        self.calls.append(("feedback", on))
        self.feedback = on

    async def get_tip_position(self) -> TipPosition:
        return TipPosition(self.x, self.y, 5e-9)

    async def set_tip_position(self, x: float, y: float) -> None:
        self.calls.append(("move", x, y))
        self.x, self.y = x, y

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        self.calls.append(("spectrum", request.channels))
        if "dIdV" in request.channels and not self.didv:
            raise NotSupportedError("no dIdV channel")
        v = np.linspace(request.start, request.stop, request.points)
        channels = {"Current": 1e-9 * v, "dIdV": np.full(v.size, 1e-9)}
        return Spectrum(
            "Bias",
            "V",
            v,
            {c: channels[c] for c in request.channels},
            {"Current": "A", "dIdV": "A/V"},
            (self.x, self.y),
        )


class FakeLockIn:
    """X follows the bias the driver is at: X = gain * G(V) * modulation, G = 1 nS + V nS."""

    name = "fake"

    def __init__(self, driver: SweepDriver, gain: float = 1e9, modulation: float = 0.01) -> None:
        self.driver, self.gain, self.modulation = driver, gain, modulation
        self.reads = 0

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def identify(self) -> str:
        return "fake"

    async def get_sensitivity(self) -> float:
        return 1.0

    async def set_sensitivity(self, full_scale: float) -> float:
        return 1.0

    async def get_time_constant(self) -> float:
        return 1e-5

    async def set_time_constant(self, seconds: float) -> float:
        return 1e-5

    async def get_reference(self) -> tuple[float, float]:
        return (1000.0, self.modulation)

    async def set_reference(self, frequency: float, amplitude: float) -> None:
        self.modulation = amplitude

    async def auto_gain(self) -> float:
        return 1.0

    async def read(self) -> LockInReading:
        self.reads += 1
        assert not self.driver.feedback, "the lock-in is read with the feedback off"
        g = 1e-9 * (1 + self.driver.bias)
        x = self.gain * g * self.modulation
        return LockInReading(x, 0.0, x, 0.0, overload=self.reads == 3)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_a_lockin_sweep_steps_the_bias_with_the_feedback_off_and_restores_both() -> None:
    driver = SweepDriver()
    lockin = FakeLockIn(driver)
    instruments = Instruments({"fake": lockin}, modulation_ratio=1.0, preamp_gain=1e9)
    action = PointSpectrum(
        SpectrumRequest(-1.0, 0.5, 16, 0.0, 0.0), (3e-9, 4e-9), "lockin", "terrace"
    )
    spectrum = run(perform(driver, action, instruments))  # type: ignore[arg-type]
    assert isinstance(spectrum, Spectrum)
    np.testing.assert_allclose(spectrum.channels["dIdV"], 1e-9 * (1 + spectrum.sweep))
    np.testing.assert_allclose(spectrum.channels["LI X"], 1e-2 * (1 + spectrum.sweep))
    assert spectrum.units["dIdV"] == "A/V" and spectrum.position == (3e-9, 4e-9)
    assert spectrum.metadata["dIdV source"] == "lockin" and spectrum.metadata["target"] == "terrace"
    assert spectrum.metadata["Lock-in overloads"] == 1
    assert driver.calls[0] == ("move", 3e-9, 4e-9) and driver.calls[1] == ("feedback", False)
    assert driver.calls[-2:] == [("bias", 0.8), ("feedback", True)]
    assert [c[1] for c in driver.calls if c[0] == "bias"][:-1] == list(spectrum.sweep)


def test_a_cancelled_lockin_sweep_still_restores_bias_and_feedback() -> None:
    driver = SweepDriver()
    instruments = Instruments({"fake": FakeLockIn(driver)})

    async def go() -> None:
        setup = await instruments.lockin_setup()
        slow = SpectrumRequest(-1.0, 1.0, 1000, 0.01, 0.0)
        task = asyncio.ensure_future(lockin_sweep(driver, setup, slow))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    assert driver.bias == 0.8 and driver.feedback


def test_didv_from_the_driver_falls_back_to_numerical_and_lockin_needs_a_lockin() -> None:
    driver = SweepDriver(didv=False)
    spectrum = run(perform(driver, PointSpectrum(SpectrumRequest(-1, 1, 41)), Instruments()))  # type: ignore[arg-type]
    assert spectrum.metadata["dIdV source"] == "numerical"
    np.testing.assert_allclose(spectrum.channels["dIdV"], 1e-9, rtol=1e-9)
    assert [c[1] for c in driver.calls] == [("Current", "dIdV"), ("Current",)]
    plain = run(perform(SweepDriver(), PointSpectrum(SpectrumRequest(-1, 1, 5), didv="none")))  # type: ignore[arg-type]
    assert list(plain.channels) == ["Current"]
    with pytest.raises(NotSupportedError, match="needs a lock-in amplifier"):
        run(
            perform(
                SweepDriver(),
                PointSpectrum(SWEEP := SpectrumRequest(-1, 1, 5), didv="lockin"),
                Instruments(),
            )
        )  # type: ignore[arg-type]
    assert SWEEP.points == 5


def test_a_grid_visits_every_point_row_by_row() -> None:
    driver = SweepDriver()
    area = ScanArea((0.0, 0.0), (2e-9, 1e-9), 3, 2)
    grid = run(perform(driver, GridSpectrum(area, SpectrumRequest(-1, 1, 7)), Instruments()))  # type: ignore[arg-type]
    assert isinstance(grid, Grid) and grid.shape == (2, 3) and grid.complete
    moves = [c[1:] for c in driver.calls if c[0] == "move"]
    assert moves == [tuple(p) for p in grid_positions(area).reshape(-1, 2).tolist()]
    np.testing.assert_allclose(grid.positions, grid_positions(area))
    assert grid.channels["Current"].shape == (2, 3, 7) and grid.parameters["Z"][1, 2] == 5e-9


def test_plans_only_after_good_frames_and_grids_every_nth() -> None:
    options = SpectroscopyOptions(spectra_per_frame=2, grid_every=2, grid_points=4)
    planner = Spectroscopist(options, Instruments())
    findings = [GOOD, roughness(100e-9, -50e-9, 6e-9)]
    assert planner.plan(frame(), [DOUBLE, *findings[1:]]) == []
    first = planner.plan(frame(), findings)
    assert [type(a) for a in first] == [PointSpectrum, PointSpectrum]
    assert all(a.didv == "driver" and a.target == "terrace" for a in first)  # type: ignore[union-attr]
    second = planner.plan(frame(), findings)
    assert isinstance(second[-1], GridSpectrum) and second[-1].area.pixels == 4
    assert Spectroscopist(SpectroscopyOptions(), None).plan(frame(), findings) == []
    lockin = Instruments({"fake": FakeLockIn(SweepDriver())})
    assert Spectroscopist(SpectroscopyOptions(spectra_per_frame=1), lockin).didv == "lockin"


def verdict(state: str, confidence: float, target: str = "terrace") -> Finding:
    values = {"status": "ok", "state": state, "spectrum": "spectra/x.dat", "target": target}
    return Finding("surface_state", "surface_state", confidence, values, message=state)


def test_the_second_opinion_calls_the_tip_blunt_only_on_terrace_evidence() -> None:
    planner = Spectroscopist(SpectroscopyOptions(spectra_per_frame=2), None)
    [opinion] = planner.second_opinion([verdict("smeared", 0.9), verdict("absent", 0.7)])
    assert opinion.kind == "tip_state" and opinion.values["state"] == "blunt"
    assert opinion.confidence == 0.9
    assert planner.second_opinion([verdict("good", 0.95), verdict("smeared", 0.9)]) == []
    assert planner.second_opinion([verdict("smeared", 0.4)]) == []  # not confident
    assert planner.second_opinion([verdict("smeared", 0.9, "adsorbate")]) == []
    assert planner.second_opinion([verdict("good", 0.99)]) == []  # never says "good"
    off = Spectroscopist(SpectroscopyOptions(second_opinion=False), None)
    assert off.second_opinion([verdict("smeared", 0.9)]) == []
    assert not math.isnan(opinion.confidence)


def test_no_plans_for_a_driver_that_cannot_take_spectra() -> None:
    from probepilot.contracts import Capability

    options = SpectroscopyOptions(spectra_per_frame=1)
    findings = [GOOD, roughness(100e-9, -50e-9, 6e-9)]
    imaging_only = frozenset({Capability.SCAN, Capability.TIP_MOVE})
    assert Spectroscopist(options, Instruments()).plan(frame(), findings, imaging_only) == []
    everything = frozenset(Capability)
    assert len(Spectroscopist(options, Instruments()).plan(frame(), findings, everything)) == 1
    # A lock-in sweep only needs the bias and the feedback, which every driver has.
    lockin = Instruments({"fake": FakeLockIn(SweepDriver())})
    assert len(Spectroscopist(options, lockin).plan(frame(), findings, imaging_only)) == 1
