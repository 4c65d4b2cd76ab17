"""A run on the simulator that images, picks points from the analyzers, takes spectra and grids,
persists them, and lets the spectra judge the tip; with a lock-in, a preamplifier and a coarse
positioner among its instruments."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probepilot import events as ev
from probepilot.config import Config, load_config, validate
from probepilot.events import Event
from probepilot.instruments import Instruments
from probepilot.model import KeepImaging, LockInReading, Observation, Outcome, SpectrumRequest
from probepilot.plugins import PluginManager
from probepilot.session import Session
from probepilot.store import read_3ds, read_dat
from probepilot.store.journal import read_journal
from probepilot.store.runsummary import summarise_run

ANALYZERS = ["tip_changes", "roughness", "adsorbates", "surface_state"]


def make(tmp_path: Path, **tables: Any) -> tuple[Config, PluginManager]:
    _, manager = load_config(None)
    table: dict[str, Any] = {
        "drivers": {"sim": {"seed": 3, "tip": "good"}},
        "analyzers": ANALYZERS,
        "run": {
            "folder": str(tmp_path / "runs"),
            "pixels": 64,
            "frame_size": "15 nm",
            "line_time": "20 ms",
            "frames_per_region": 1,
        },
        "spectroscopy": {"spectra_per_frame": 3, "points": 151},
    }
    for key, value in tables.items():
        table[key] = {**table.get(key, {}), **value} if isinstance(value, dict) else value
    return validate(table, manager, source="test", base_dir=tmp_path), manager


class Watching:
    """A policy that keeps imaging and remembers what it was shown."""

    name = "watching"

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def decide(self, observation: Observation) -> KeepImaging:
        self.seen.append(observation)
        return KeepImaging()

    def feedback(self, outcome: Outcome) -> None:
        pass


def run(session: Session) -> list[Event]:
    assert asyncio.run(asyncio.wait_for(session.run(), 60)) == "completed"
    return read_journal(session.folder / "journal.msgpack").events


def test_a_run_takes_spectra_and_grids_where_the_analyzers_point_and_files_read_back(
    tmp_path: Path,
) -> None:
    config, manager = make(tmp_path, spectroscopy={"grid_every": 2, "grid_points": 3})
    policy = Watching()
    session = Session(config, manager, policy=policy, frames=2)
    events = run(session)
    kinds = [e.type for e in events]
    # Per good frame: persisted, then the spectra (each executed, then persisted), then the
    # analysis that includes their findings; the second frame adds a grid.
    first = kinds.index(ev.FRAME_PERSISTED)
    analysed = kinds.index(ev.FRAME_ANALYSED)
    spectra_1 = [k for k in kinds[first:analysed] if k == ev.SPECTRUM_PERSISTED]
    assert len(spectra_1) == 3
    assert kinds.count(ev.SPECTRUM_PERSISTED) == 6 and kinds.count(ev.GRID_PERSISTED) == 1
    assert "spectroscopy" in [e.data["state"] for e in events if e.type == ev.STATE_CHANGED]
    executed = [e.data["action"] for e in events if e.type == ev.ACTION_EXECUTED]
    points = [a for a in executed if a["kind"] == "spectrum"]
    assert {a["target"] for a in points} == {"terrace", "adsorbate"}
    assert all(
        a["source"] == "session" for a in [e.data for e in events if e.type == ev.ACTION_EXECUTED]
    )

    # Every file the journal names reads back with the store's readers.
    persisted = [e for e in events if e.type == ev.SPECTRUM_PERSISTED]
    for event, action in zip(persisted, points, strict=True):
        spectrum = read_dat(session.folder / event.data["file"])
        assert spectrum.sweep.size == 151 and spectrum.complete
        assert set(spectrum.channels) == {"Current", "dIdV"}
        assert spectrum.position == pytest.approx(tuple(action["position"]), abs=1e-15)
        assert spectrum.metadata["target"] == action["target"]
        assert spectrum.metadata["dIdV source"] == "driver"
    [grid_event] = [e for e in events if e.type == ev.GRID_PERSISTED]
    grid = read_3ds(session.folder / grid_event.data["file"])
    assert grid.shape == (3, 3) and grid.complete and grid.channels["dIdV"].shape == (3, 3, 151)
    np.testing.assert_allclose(grid.positions, grid.nominal_positions(), atol=1e-12)

    # The spectra's verdicts reach the policy with the frame's findings.
    judged = [f for f in policy.seen[0].findings if f.kind == "surface_state"]
    assert any(f.values["state"] == "good" and f.values["target"] == "terrace" for f in judged)
    assert all(str(f.values["spectrum"]).startswith("spectra/") for f in judged)
    assert policy.seen[0].tip_state.value == "good"
    assert session.stats.actions["spectrum"] == 6 and session.stats.actions["grid"] == 1
    summary = summarise_run(session.folder)
    assert (summary["spectra"], summary["grids"]) == (6, 1)
    assert summary["files"] == {"missing": [], "not_in_journal": [], "temporary": []}


def test_spectra_on_adsorbates_differ_from_those_on_clean_terrace(tmp_path: Path) -> None:
    config, manager = make(tmp_path, spectroscopy={"spectra_per_frame": 4})
    session = Session(config, manager, policy=Watching(), frames=1)
    events = run(session)
    ratios: dict[str, list[float]] = {"terrace": [], "adsorbate": []}
    for event in events:
        if event.type == ev.SPECTRUM_PERSISTED:
            s = read_dat(session.folder / event.data["file"])
            v, g = s.sweep, s.channels["dIdV"]

            def at(x: float, v: np.ndarray = v, g: np.ndarray = g) -> float:
                return float(np.mean(g[np.abs(v - x) < 0.03]))

            ratios[str(s.metadata["target"])].append(at(-0.3) / at(-0.65))
    assert ratios["terrace"] and ratios["adsorbate"]
    # The surface-state step (dI/dV above the onset over below it) is there on the terrace and
    # gone on top of the first (most confident) adsorbate.
    assert min(ratios["terrace"]) > 1.2
    assert ratios["adsorbate"][0] < 1.1


def test_spectra_see_the_blunt_tip_the_images_cannot(tmp_path: Path) -> None:
    config, manager = make(
        tmp_path,
        drivers={"sim": {"seed": 1, "tip": "blunt"}},
        spectroscopy={"spectra_per_frame": 2, "targets": ["terrace"]},
    )
    policy = Watching()
    events = run(Session(config, manager, policy=policy, frames=1))
    [analysed] = [e for e in events if e.type == ev.FRAME_ANALYSED]
    assert analysed.data["tip_state"] == "blunt"
    [opinion] = [f for f in policy.seen[0].findings if f.kind == "tip_state"]
    assert opinion.values["source"] == "spectrum" and opinion.confidence > 0.9
    assert policy.seen[0].tip_state.value == "blunt"
    # Without the second opinion the same frame passes for good.
    config, manager = make(
        tmp_path,
        drivers={"sim": {"seed": 1, "tip": "blunt"}},
        spectroscopy={"spectra_per_frame": 2, "targets": ["terrace"], "second_opinion": False},
    )
    policy = Watching()
    run(Session(config, manager, policy=policy, frames=1))
    assert policy.seen[0].tip_state.value == "good"


def test_the_envelope_refuses_sweeps_outside_the_bias_range(tmp_path: Path) -> None:
    config, manager = make(
        tmp_path, safety={"bias_range": ["-800 mV", "3 V"]}, spectroscopy={"grid_every": 1}
    )
    session = Session(config, manager, policy=Watching(), frames=1)
    events = run(session)
    refused = [e for e in events if e.type == ev.SAFETY_REJECTED]
    assert len(refused) == 4  # three spectra and the grid
    assert refused[0].data["reasons"] == ["sweep start -1 V is outside bias_range -800 mV to 3 V"]
    assert not (session.folder / "spectra").exists() and not (session.folder / "grids").exists()


class SimLockIn:
    """A lock-in whose X follows the simulator's dI/dV at the bias the driver is at: what an
    SR830 reads from a real junction (gain 1e9 V/A, modulation from its reference)."""

    name = "simlockin"

    def __init__(self, session: Session) -> None:
        self.session = session
        self.frequency, self.amplitude, self.tau = 1000.0, 0.01, 1e-5
        self.curve: tuple[np.ndarray, np.ndarray] | None = None
        self.reads = 0

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def identify(self) -> str:
        return "simulated junction lock-in"

    async def get_sensitivity(self) -> float:
        return 0.1

    async def set_sensitivity(self, full_scale: float) -> float:
        return 0.1

    async def get_time_constant(self) -> float:
        return self.tau

    async def set_time_constant(self, seconds: float) -> float:
        self.tau = seconds
        return seconds

    async def get_reference(self) -> tuple[float, float]:
        return self.frequency, self.amplitude

    async def set_reference(self, frequency: float, amplitude: float) -> None:
        self.frequency, self.amplitude = frequency, amplitude

    async def auto_gain(self) -> float:
        return 0.1

    async def read(self) -> LockInReading:
        scope = self.session.driver.microscope  # type: ignore[attr-defined]
        assert not scope.feedback
        if self.curve is None:  # the junction's dI/dV, measured once with the feedback's gap
            scope.feedback = True
            request = SpectrumRequest(-1.5, 1.5, 601, channels=("dIdV",))
            self.curve = (np.linspace(-1.5, 1.5, 601), scope.spectrum(request)["dIdV"])
            scope.feedback = False
        self.reads += 1
        x = 1e9 * float(np.interp(scope.bias, *self.curve)) * self.amplitude
        return LockInReading(x, 0.0, x, 0.0)


def test_dIdV_from_a_lockin_read_point_by_point(tmp_path: Path) -> None:
    config, manager = make(
        tmp_path,
        spectroscopy={
            "spectra_per_frame": 1,
            "targets": ["terrace"],
            "points": 121,
            "time_constant": "10 us",
            "modulation": "5 mV",
        },
    )
    session = Session(config, manager, policy=Watching(), frames=1)
    lockin = SimLockIn(session)
    session.instruments = Instruments({"simlockin": lockin}, preamp_gain=1e9)
    session.spectroscopy.instruments = session.instruments
    events = run(session)
    assert lockin.amplitude == 0.005 and lockin.tau == 1e-5  # set up from [spectroscopy]
    assert lockin.reads == 121
    [event] = [e for e in events if e.type == ev.SPECTRUM_PERSISTED]
    spectrum = read_dat(session.folder / event.data["file"])
    assert spectrum.metadata["dIdV source"] == "lockin"
    assert set(spectrum.channels) == {"dIdV", "LI X", "LI Y"}
    [analysed] = [e for e in events if e.type == ev.FRAME_ANALYSED]
    [verdict] = [f for f in analysed.data["findings"] if f["kind"] == "surface_state"]
    assert verdict["values"]["state"] == "good" and verdict["confidence"] > 0.9


@pytest.mark.skipif(sys.platform == "win32", reason="the simulated ANC300 needs a POSIX pty")
def test_a_run_with_the_simulated_sr830_sr570_and_anc300_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyvisa_sim")
    pytest.importorskip("serial")
    import probepilot_serial.anc300 as anc300_module

    controllers: list[Any] = []

    class Recorded(anc300_module.Anc300Simulator):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            controllers.append(self)

    monkeypatch.setattr(anc300_module, "Anc300Simulator", Recorded)
    config, manager = make(
        tmp_path,
        drivers={"sim": {"seed": 3, "tip": "good", "piezo_range": ["30 nm", "30 nm", "200 nm"]}},
        analyzers=["tip_changes", "roughness", "adsorbates"],
        instruments={
            "sr830": {"backend": "@sim", "timeout": "1 s"},
            "sr570": {"port": "sim", "gain": "1 GV/A"},
            "anc300": {"port": "sim", "voltage": "30 V", "frequency": "1 kHz"},
        },
        spectroscopy={"spectra_per_frame": 1, "points": 11, "time_constant": "10 us"},
    )
    session = Session(config, manager, policy=Watching(), frames=5)

    async def not_the_controller(axis: str, steps: int) -> None:
        raise AssertionError("coarse moves must go to the positioner")

    monkeypatch.setattr(session.driver, "coarse_move", not_the_controller)
    events = run(session)
    spectra = [
        read_dat(session.folder / e.data["file"]) for e in events if e.type == ev.SPECTRUM_PERSISTED
    ]
    assert spectra and all(s.metadata["dIdV source"] == "lockin" for s in spectra)
    # The twin's X is 1.2345 mV; gain 1e9 V/A from the SR570, modulation 10 mV.
    np.testing.assert_allclose(spectra[0].channels["LI X"], 1.2345e-3)
    np.testing.assert_allclose(spectra[0].channels["dIdV"], 1.2345e-3 / (1e9 * 0.01))
    # A 30 nm range is soon used up: the coarse moves go to the ANC300.
    executed = [e.data["action"] for e in events if e.type == ev.ACTION_EXECUTED]
    coarse = [a for a in executed if a["kind"] == "coarse"]
    assert coarse and all(a == {"kind": "coarse", "axis": "x+", "steps": 100} for a in coarse)
    [controller] = controllers
    assert controller.axes[1].position == 100 * len(coarse) and "stepu 1 100" in controller.log
    assert all(axis.mode == "gnd" for axis in controller.axes.values())  # closed with the run
