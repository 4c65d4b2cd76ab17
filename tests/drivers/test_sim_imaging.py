"""Imaging physics of the simulator, checked with numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sim_helpers as h

from probepilot.model import TipState
from probepilot_sim import acquisition
from probepilot_sim import lattice as lat
from probepilot_sim.features import Blobs
from probepilot_sim.microscope import Microscope
from probepilot_sim.options import SimOptions
from probepilot_sim.surfaces import LatticeLayer, Terraces
from probepilot_sim.tip import Apex, MiniTip


@pytest.mark.parametrize(("dx", "dy"), [(1.5e-9, 0.8e-9), (-2.2e-9, 0.4e-9), (0.0, -1.8e-9)])
def test_double_tip_gives_an_autocorrelation_peak_at_the_apex_offset(dx: float, dy: float) -> None:
    surf = h.surface(adsorbates=8e15, seed=4)
    m = h.scope(surf, h.double(dx, dy))
    size, px = 40e-9, 256
    z = h.acquire(m, h.settings(size, px)).z_forward
    # Exclude the central peak (an adsorbate is ~1 nm wide) and find the ghost's. (Offsets
    # well beyond a feature's width: closer ghosts merge with their feature.)
    drow, dcol = h.autocorrelation_peak(z, exclude=0.6e-9 / (size / px))
    pixel = size / px
    # Columns follow +x; rows of a downward scan follow -y. The sign of the peak is arbitrary.
    measured = np.array([dcol * pixel, -drow * pixel])
    expected = np.array([dx, dy])
    error = min(np.linalg.norm(measured - expected), np.linalg.norm(measured + expected))
    assert error < 1.0 * pixel


def test_ghost_height_follows_the_retraction_of_the_second_apex() -> None:
    height, sigma = 0.2e-9, 0.4e-9
    surf = h.surface(
        h.FixedBlobs(Blobs(np.zeros(1), np.zeros(1), np.array([height]), np.array([sigma])))
    )
    dz, width = 0.03e-9, 0.03e-9
    m = h.scope(surf, h.double(2.0e-9, 0.0, dz, width))
    size, px = 8e-9, 161  # odd: a pixel centre sits on x = 0 and on x = -2 nm
    z = h.acquire(m, h.settings(size, px)).z_forward
    z = z - (m.surface_z + m.gap())  # apparent height above the flat surface
    pixel = size / px
    row = px // 2
    main = z[row, px // 2]
    ghost = z[row, round(px // 2 - 2.0e-9 / pixel)]
    two_k = 2 * m.kappa
    seen = height * sigma**2 / (sigma**2 + width**2)  # the blob through the apex width
    weight = math.exp(-two_k * dz)
    expected_ghost = math.log(1 + weight * math.exp(two_k * seen)) / two_k
    expected_main = math.log(math.exp(two_k * seen) + weight) / two_k
    assert z[0, 0] == pytest.approx(math.log(1 + weight) / two_k, rel=0.01)  # flat: both tunnel
    assert ghost == pytest.approx(expected_ghost, rel=0.03)
    assert main == pytest.approx(expected_main, rel=0.03)
    assert 0.5 * main < ghost < main  # a retracted ghost is weaker, but clearly there


def test_blunt_tip_lowers_the_apparent_corrugation_as_predicted() -> None:
    au = lat.hexagonal("Au", 0.2884e-9, 25e-12)
    surf = h.surface(LatticeLayer(au))
    g = 4 * math.pi / (math.sqrt(3) * 0.2884e-9)
    corrugation = {}
    for width in (0.02e-9, 0.06e-9, 0.5e-9):
        m = h.scope(surf, h.single(width))
        z = h.acquire(m, h.settings(3e-9, 64)).z_forward
        corrugation[width] = float(np.std(h.level(z)))
    sharp, mid, blunt = corrugation[0.02e-9], corrugation[0.06e-9], corrugation[0.5e-9]
    assert sharp > 3e-12  # atomic resolution with a good tip
    predicted = math.exp(-0.5 * g**2 * (0.06e-9**2 - 0.02e-9**2))
    assert mid / sharp == pytest.approx(predicted, rel=0.1)
    assert blunt < 0.01 * sharp


def test_clean_forward_and_backward_agree_within_noise() -> None:
    m = h.scope(
        h.surface(Terraces(0.2355e-9, 30e-9, 0.3), adsorbates=3e15),
        noise_z=2e-12,
        flicker_z=0.0,
        line_offset_z=0.0,
    )
    r = h.acquire(m, h.settings(30e-9, 128, line_time=1.0))
    diff = r.z_forward - r.z_backward
    assert np.std(diff) < 2.0 * math.sqrt(2) * 2e-12
    assert np.std(h.level(r.z_forward)) > 20 * np.std(diff)  # the surface is far above noise


def test_fast_scans_leave_a_tracking_error_on_steep_edges() -> None:
    surf = h.surface(Terraces(0.2355e-9, 25e-9, 0.0, edge=0.1e-9))  # steps across the lines
    slow = h.acquire(h.scope(surf), h.settings(30e-9, 128, line_time=1.0))
    # 1.5 um/s: a pixel takes about the controller's time constant (1 kHz bandwidth).
    fast = h.acquire(h.scope(surf), h.settings(30e-9, 128, line_time=0.02))
    slow_err = np.abs(slow.z_forward - slow.z_backward)
    fast_err = np.abs(fast.z_forward - fast.z_backward)
    assert fast_err.max() > 20e-12  # tens of pm where the controller cannot keep up
    assert fast_err.max() > 10 * slow_err.max()
    # The error sits on the step edges, where the topography is steepest.
    grad = np.abs(np.diff(fast.target_forward, axis=1))
    row = int(np.argmax(fast_err.max(axis=1)))
    assert abs(int(np.argmax(fast_err[row])) - int(np.argmax(grad[row]))) <= 6
    # And the current shows the error signal: far from the setpoint there, at it elsewhere.
    i = np.abs(fast.current_forward[row])
    assert i.max() / np.median(i) > 1.5 or i.min() / np.median(i) < 0.67


def test_a_tip_change_leaves_a_discontinuity_at_one_line() -> None:
    # No lattice: at 0.3 nm pixels it would alias into line-to-line contrast of its own.
    m = h.scope(h.surface(adsorbates=3e15), h.single(), line_offset_z=4e-12, noise_z=2e-12)
    plan = m.plan_scan(h.settings(20e-9, 64))
    new = Apex(TipState.UNSTABLE, (MiniTip(width=0.05e-9),), length=100e-12, change_rate=0.0)
    plan.request.changes = (acquisition.TipChange(27, 40, False, new, spike=0.15e-9),)
    r = m.render(plan)
    medians = np.median(r.z_forward, axis=1)
    jumps = np.abs(np.diff(medians))
    # The only big line-to-line jump is where the apex changed (row 27 switches mid-line).
    assert int(np.argmax(jumps)) in (26, 27)
    others = np.delete(jumps, [26, 27])
    assert jumps.max() > 4 * others.max()
    assert medians[30:].mean() - medians[:25].mean() == pytest.approx(100e-12, rel=0.15)
    # The streak: a spike along the change line right after the pixel where it happened.
    assert r.z_forward[27, 40:44].max() - medians[28] > 0.08e-9
    # Backward trace of that line: already the new apex (the change happened going forward).
    assert np.median(r.z_backward[27]) == pytest.approx(medians[28], abs=20e-12)


def test_unstable_tips_change_during_scans_at_their_rate() -> None:
    m = h.scope(h.surface(), h.replace_apex(h.single(), change_rate=0.02, state=TipState.UNSTABLE))
    counts = []
    for _ in range(10):
        m.apex = h.replace_apex(m.apex, change_rate=0.02, state=TipState.UNSTABLE)
        plan = m.plan_scan(h.settings(10e-9, 16, lines=100))
        counts.append(len(plan.request.changes) > 0)
        m.commit(plan, 100, None)
    # P(at least one change in 100 lines) = 1 - 0.98^100 = 0.87.
    assert sum(counts) >= 6


def test_frames_are_bit_identical_for_the_same_seed_and_commands() -> None:
    def run(seed: int) -> list[np.ndarray]:
        m = Microscope(SimOptions(seed=seed, tip="unstable"))
        out = []
        s = h.settings(20e-9, 48, line_time=0.2)
        out.append(h.acquire(m, s).z_forward)
        m.bias_pulse(4.0, 0.2)
        m.dip(1.2e-9, 0.0)
        m.move_tip(50e-9, -20e-9)
        r = h.acquire(m, h.settings(20e-9, 48, line_time=0.2, centre=(50e-9, -20e-9)))
        out += [r.z_forward, r.z_backward, r.current_forward]
        return out

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_queries_never_change_what_is_scanned() -> None:
    """Polling the tip position (a dashboard does) draws no random numbers."""

    def run(poll: bool) -> list[np.ndarray]:
        m = Microscope(SimOptions(seed=5, tip="unstable"))
        out = []
        for _ in range(3):
            if poll:
                for _ in range(5):
                    m.tip_z()
                    m.in_contact()
            out.append(h.acquire(m, h.settings(20e-9, 32, line_time=0.2)).z_forward)
            m.dip(1.0e-9, 0.0)
        return out

    assert all(np.array_equal(a, b) for a, b in zip(run(False), run(True), strict=True))
