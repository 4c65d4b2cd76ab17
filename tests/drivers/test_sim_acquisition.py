"""Drift, creep, compensation, the z range, crashes and the simulated clock."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
import sim_helpers as h

from probepilot.errors import InstrumentError
from probepilot.model import TipState
from probepilot_sim.driver import SimDriver
from probepilot_sim.surfaces import Terraces

SIZE, PX, LT = 20e-9, 96, 0.1


def _two_frames(**overrides: object) -> tuple[np.ndarray, np.ndarray, float]:
    """Two consecutive frames of the same area and the time between their starts."""
    m = h.scope(h.surface(adsorbates=10e15, seed=2), h.single(), **overrides)
    s = h.settings(SIZE, PX, LT)
    plan1 = m.plan_scan(s)
    r1 = m.render(plan1)
    m.commit(plan1, PX, r1)
    plan2 = m.plan_scan(s)
    r2 = m.render(plan2)
    m.commit(plan2, PX, r2)
    return r1.z_forward, r2.z_forward, plan2.start - plan1.start


def test_drift_shifts_consecutive_frames_by_velocity_times_time() -> None:
    v = (0.08e-9, -0.05e-9, 0.0)
    a, b, dt = _two_frames(drift_velocity=v)
    drow, dcol = h.shift_between(a, b)
    pixel = SIZE / PX
    # A feature that drifted by s_y along y is met s_y / pixel rows later (or earlier) in the
    # next frame, i.e. after dt - s_y * (2 LT / pixel) for a downward scan: solve for s_y.
    per_metre = 2 * LT / pixel  # seconds of scanning per metre along the slow axis
    s_y = v[1] * dt / (1 + v[1] * per_metre)
    s_x = v[0] * (dt - s_y * per_metre)
    # Features appear where the sample drifted to: +x is +column, +y is -row (downward scan).
    assert dcol * pixel == pytest.approx(s_x, abs=0.3 * pixel)
    assert -drow * pixel == pytest.approx(s_y, abs=0.3 * pixel)
    assert s_x == pytest.approx(v[0] * dt, rel=0.1)  # i.e. v * t, up to that correction
    assert abs(v[0] * dt) > 5 * pixel  # the test measures a real shift


def test_drift_shears_a_frame_the_way_real_drift_does() -> None:
    # Slow-axis drift stretches the frame: with the sample moving along -y while a downward
    # scan also moves along -y, features spread further apart than they are.
    m = h.scope(h.surface(adsorbates=10e15, seed=2), h.single())
    still = h.acquire(m, h.settings(SIZE, PX, LT)).z_forward
    m2 = h.scope(h.surface(adsorbates=10e15, seed=2), h.single(), drift_velocity=(0.1e-9, 0.0, 0.0))
    sheared = h.acquire(m2, h.settings(SIZE, PX, LT)).z_forward
    top = h.shift_between(still[: PX // 3], sheared[: PX // 3])[1]
    bottom = h.shift_between(still[-PX // 3 :], sheared[-PX // 3 :])[1]
    # Rows are 2 line times apart: the bottom third is shifted by v * (2/3 frame) more.
    expected = 0.1e-9 * (2 * LT) * (2 * PX // 3) / (SIZE / PX)
    assert bottom - top == pytest.approx(expected, rel=0.2)


def test_drift_compensation_cancels_the_commanded_velocity() -> None:
    v = (0.08e-9, -0.05e-9, 0.0)
    m_args = {"drift_velocity": v}
    a, b, _ = _two_frames(**m_args)
    m = h.scope(h.surface(adsorbates=10e15, seed=2), h.single(), **m_args)
    m.set_drift_compensation(*v)
    s = h.settings(SIZE, PX, LT)
    a = h.acquire(m, s).z_forward
    b = h.acquire(m, s).z_forward
    drow, dcol = h.shift_between(a, b)
    assert abs(drow) < 0.2 and abs(dcol) < 0.2


def test_piezo_creep_after_a_large_move_decays() -> None:
    m = h.scope(h.surface(adsorbates=10e15, seed=2), h.single(), creep=0.05, creep_time=20.0)
    move = 300e-9
    m.move_tip(move, 0.0)
    s = h.settings(SIZE, PX, LT, centre=(move, 0.0))
    first, second = m.plan_scan(s), None
    a = m.render(first).z_forward
    m.commit(first, PX, None)
    second = m.plan_scan(s)
    b = m.render(second).z_forward
    m.commit(second, PX, None)
    shift = h.shift_between(a, b)[1] * SIZE / PX
    # The lag 0.05 * 300 nm decays with 20 s: the mid-frame times give the expected shift.
    frame = 2 * PX * LT
    t_move = first.start - 0.0  # the move ends when the first frame can start (about)
    lag = [0.05 * move * math.exp(-(p.start + frame / 2 - t_move) / 20.0) for p in (first, second)]
    assert shift == pytest.approx(lag[1] - lag[0], rel=0.35)
    # Much later the piezo has settled: consecutive frames line up again.
    m.idle(400.0)
    c = h.acquire(m, s).z_forward
    d = h.acquire(m, s).z_forward
    assert abs(h.shift_between(c, d)[1]) < 0.2


def test_surface_out_of_reach_loses_contact_and_approach_recovers() -> None:
    m = h.scope(h.surface(Terraces(0.2355e-9, 40e-9, 0.5)), h.single())
    assert m.in_contact()
    m.coarse_move("z+", 3)  # 150 nm further away: beyond the 200 nm scanner's reach
    assert not m.in_contact()
    assert m.tip_z() == 0.0
    r = h.acquire(m, h.settings(SIZE, 32))
    assert np.all(r.z_forward == 0.0)
    assert np.abs(r.current_forward).max() < 0.01 * m.setpoint  # only the noise floor
    m.approach()
    assert m.in_contact()
    r = h.acquire(m, h.settings(SIZE, 32))
    assert np.median(r.current_forward) == pytest.approx(m.setpoint, rel=0.01)
    assert 0 < m.tip_z() < m.z_range


def test_too_deep_a_dip_crashes_the_tip_and_leaves_a_crater() -> None:
    m = h.scope(h.surface(), h.single())
    before = h.acquire(m, h.settings(SIZE, 64, centre=(0.0, 0.0))).z_forward
    m.move_tip(0.0, 0.0)
    with pytest.raises(InstrumentError, match="crash"):
        m.dip(m.options.crash_depth + 1e-9, 0.0)
    assert m.withdrawn and not m.feedback
    assert m.apex.state == TipState.BLUNT
    assert m.tip_z() == m.z_range
    m.approach()  # the microscope is still usable
    m.apex = h.single()  # look at the damage with a sharp tip again
    after = h.acquire(m, h.settings(SIZE, 64, centre=(0.0, 0.0))).z_forward
    crater = (after - np.median(after)) - (before - np.median(before))
    assert crater[24:40, 24:40].min() < -1e-9


def test_dips_damage_the_surface_where_they_happen() -> None:
    m = h.scope(h.surface(), h.single())
    m.move_tip(5e-9, -3e-9)
    m.dip(1.8e-9, 0.0)
    m.apex = h.single()
    z = h.acquire(m, h.settings(SIZE, 64)).z_forward
    z = z - np.median(z)
    row, col = np.unravel_index(int(np.argmin(z)), z.shape)
    pixel = SIZE / 64
    x = -SIZE / 2 + (col + 0.5) * pixel
    y = SIZE / 2 - (row + 0.5) * pixel
    assert math.hypot(x - 5e-9, y + 3e-9) < 0.5e-9
    assert z.min() < -0.2e-9


def test_time_scale_paces_the_scan_and_zero_runs_flat_out() -> None:
    async def timed(scale: float) -> tuple[float, float]:
        d = SimDriver(h.options(time_scale=scale))
        await d.connect()
        s = h.settings(10e-9, 16, 0.1, lines=20)  # 20 lines x 2 x 0.1 s = 4 s simulated
        t0 = time.perf_counter()
        frame = await d.scan(s)
        wall = time.perf_counter() - t0
        await d.close()
        return wall, frame.finished_at - frame.started_at

    wall, simulated = asyncio.run(timed(100.0))
    assert simulated == pytest.approx(4.0)
    assert wall >= 0.8 * 4.0 / 100.0
    wall0, simulated0 = asyncio.run(timed(0.0))
    assert simulated0 == pytest.approx(4.0)
    assert wall0 < 4.0 / 10  # far faster than real time (a generous bound, not a benchmark)


def test_a_coarse_move_brings_a_fresh_area_and_lands_tunnelling() -> None:
    m = h.scope(h.surface(adsorbates=10e15, seed=2), h.single())
    s = h.settings(SIZE, 64, LT)
    before = h.acquire(m, s).z_forward
    m.coarse_move("x+", 2)
    assert m.in_contact() and m.feedback and not m.withdrawn
    assert m.offset[0] == pytest.approx(2 * m.options.coarse_step, rel=0.3)
    after = h.acquire(m, s).z_forward
    assert abs(np.corrcoef(h.level(before).ravel(), h.level(after).ravel())[0, 1]) < 0.3
    # The stick-slip jolt creeps: the next frames keep sliding, by nanometres.
    later = h.acquire(m, s).z_forward
    assert np.hypot(*h.shift_between(after, later)) * SIZE / 64 > 0.3e-9
