"""The session: transitions, persistence before analysis, operator commands, faults, safety."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from probepilot import events as ev
from probepilot.events import Event
from probepilot.model import Dip, Finding, Pulse
from probepilot.session import ScanLine, Session
from probepilot.store.journal import read_journal
from probepilot.store.sxm import read_sxm

from .session_fakes import (
    ScriptedAnalyzer,
    ScriptedDriver,
    ScriptedPolicy,
    make_config,
    make_session,
)


def journal(session: Session) -> list[Event]:
    return read_journal(session.folder / "journal.msgpack").events


def states(events: list[Event]) -> list[str]:
    return [str(e.data["state"]) for e in events if e.type == ev.STATE_CHANGED]


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def run(session: Session) -> str:
    return asyncio.run(session.run())


def test_a_good_tip_images_region_after_region(tmp_path: Path) -> None:
    session, driver, analyzer = make_session(tmp_path, ["good"], frames=6)
    assert run(session) == "completed"
    events = journal(session)
    assert types(events)[0] == ev.RUN_STARTED and types(events)[-1] == ev.RUN_FINISHED
    assert states(events) == ["approach", "choose_region", "image"] + [
        "choose_region",
        "image",
    ] * 2 + ["stopped"]
    # Two frames per region (drift needs overlap), three regions, none twice.
    centres = [c[1] for c in driver.calls if c[0] == "scan"]
    assert len(centres) == 6 and len(set(centres)) == 3
    assert centres[0] == centres[1] and centres[2] == centres[3]
    assert analyzer.persisted_first == [True] * 6
    assert session.stats.good_fraction == 1.0
    assert driver.names()[:2] == ["connect", "approach"] and driver.calls[-1] == ("close",)


def test_every_frame_is_persisted_before_it_is_analysed(tmp_path: Path) -> None:
    session, _, _ = make_session(tmp_path, ["good"], frames=3)
    run(session)
    order = [e.type for e in journal(session) if e.type in (ev.FRAME_PERSISTED, ev.FRAME_ANALYSED)]
    assert order == [ev.FRAME_PERSISTED, ev.FRAME_ANALYSED] * 3
    frame = read_sxm(session.folder / "frames" / "frame-000001.sxm")
    assert frame.area.pixels == 16


def test_a_bad_tip_is_conditioned_on_a_spot_away_from_further_imaging(tmp_path: Path) -> None:
    policy = ScriptedPolicy([Pulse(4.0, 0.2)])
    session, driver, _ = make_session(
        tmp_path, ["double", "double", "good"], policy=policy, frames=5
    )
    assert run(session) == "completed"
    events = journal(session)
    assert "condition" in states(events)
    pulses = [c for c in driver.calls if c[0] == "pulse"]
    assert len(pulses) == 2  # after each of the two double-tip frames
    # The pulse went to the conditioning spot, and that region is never imaged again.
    moves = [c for c in driver.calls if c[0] == "move"]
    assert moves, "the tip was moved to the conditioning spot"
    spot = moves[0][1:]
    later = [c[1] for c in driver.calls[driver.calls.index(moves[0]) :] if c[0] == "scan"]
    assert all(c != spot for c in later)
    # The learning policy heard how each action went; the last one ended with a good tip.
    assert [o.reward for o in policy.outcomes] == [-1.0, 9.0]
    assert policy.observations[1].actions_since_good == 1


def test_out_of_range_actions_never_reach_the_driver(tmp_path: Path) -> None:
    policy = ScriptedPolicy([Pulse(50.0, 0.2), Dip(100e-9)])
    session, driver, _ = make_session(tmp_path, ["blunt"], policy=policy, frames=4)
    assert run(session) == "completed"
    assert not [c for c in driver.calls if c[0] in ("pulse", "dip")]
    rejected = [e for e in journal(session) if e.type == ev.SAFETY_REJECTED]
    assert len(rejected) == 4
    assert any("max_pulse" in r for r in rejected[0].data["reasons"])
    assert session.stats.rejected == 4


def test_driver_errors_are_retried_with_backoff_and_the_run_resumes(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.fail["scan"] = 2
    session, _, _ = make_session(tmp_path, ["good"], driver=driver, frames=3)
    assert run(session) == "completed"
    events = journal(session)
    errors = [e for e in events if e.type == ev.DRIVER_ERROR]
    assert [e.data["operation"] for e in errors] == ["scan", "scan"]
    assert [e.data["attempt"] for e in errors] == [1, 2]
    assert "recover" in states(events)
    # It reconnected and scanned the same region again: resume where it was.
    scans = [c[1] for c in driver.calls if c[0] == "scan"]
    assert len(scans) == 5 and len(set(scans[:3])) == 1
    assert driver.names().count("connect") == 3
    assert len([e for e in events if e.type == ev.FRAME_PERSISTED]) == 3


def test_too_many_driver_errors_fail_the_run_and_say_why(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.fail["scan"] = 100
    session, _, _ = make_session(tmp_path, ["good"], driver=driver, retries=2)
    outcome = run(session)
    assert outcome.startswith("failed: scan: no reply")
    events = journal(session)
    assert events[-1].type == ev.RUN_FINISHED and events[-1].data["outcome"] == outcome
    assert len([e for e in events if e.type == ev.DRIVER_ERROR]) == 3


def test_a_crash_withdraws_the_tip_first_then_approaches_again(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.crash_on_dip = True
    policy = ScriptedPolicy([Dip(1e-9)])
    session, _, _ = make_session(
        tmp_path, ["double", "good"], driver=driver, policy=policy, frames=3
    )
    assert run(session) == "completed"
    names = driver.names()
    dip = names.index("dip")
    assert names[dip + 1 : dip + 3] == ["withdraw", "approach"]
    assert session.stats.crashes == 1
    assert "recover" in states(journal(session))


def test_an_analyzer_reported_crash_also_withdraws(tmp_path: Path) -> None:
    session, driver, analyzer = make_session(tmp_path, ["blunt"], frames=2)
    analyzer.extra = [Finding("scripted", "crash", 0.9, {"status": "ok"})]
    run(session)
    assert driver.names().count("withdraw") == 2
    assert not [c for c in driver.calls if c[0] in ("pulse", "dip")]


def test_the_range_used_up_means_a_coarse_move(tmp_path: Path) -> None:
    # 40 nm of range with 10 nm margins leaves one 20 nm cell.
    driver = ScriptedDriver(piezo=40e-9)
    session, _, _ = make_session(
        tmp_path, ["good"], driver=driver, frames=4, frames_per_region=1, coarse_steps=50
    )
    assert run(session) == "completed"
    assert driver.calls.count(("coarse", "x+", 50)) == 3
    names = driver.names()
    first = names.index("coarse")
    assert names[first - 1] == "withdraw" and names[first + 1] == "approach"
    assert "move_coarse" in states(journal(session))


def test_the_duration_budget_counts_instrument_time(tmp_path: Path) -> None:
    # 16 lines x 2 directions x 0.1 s = 3.2 s of instrument time per frame.
    session, _, _ = make_session(tmp_path, ["good"], frames=None)
    session.max_duration = 10.0
    run(session)
    assert session.stats.frames == 4  # 3.2, 6.4, 9.6, 12.8 s


def test_drift_findings_feed_the_drift_compensation(tmp_path: Path) -> None:
    session, driver, analyzer = make_session(tmp_path, ["good"], frames=3)
    drift = {"status": "ok", "vx": 2e-11, "vy": -1e-11, "sigma_vx": 1e-12, "sigma_vy": 1e-12}
    analyzer.extra = [Finding("scripted", "drift", 0.9, drift)]
    run(session)
    comp = [c for c in driver.calls if c[0] == "drift"]
    # Each measurement is the residual drift, so the compensation accumulates.
    assert comp[0][1:3] == pytest.approx((2e-11, -1e-11))
    assert comp[1][1:3] == pytest.approx((4e-11, -2e-11))


# --------------------------------------------------------------------------------------------
# Operator commands


async def _run_with(session: Session, script: object) -> str:
    task = asyncio.ensure_future(session.run())
    await script  # type: ignore[misc]
    return await asyncio.wait_for(task, 20)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll the session under test until ``condition`` holds (10 s at most)."""
    async with asyncio.timeout(10.0):
        while not condition():  # noqa: ASYNC110 - polling the object under test is the point
            await asyncio.sleep(0.001)


def test_pause_and_resume(tmp_path: Path) -> None:
    session, _, _ = make_session(tmp_path, ["good"], frames=4)

    async def script() -> None:
        await _until(lambda: session.stats.frames >= 1)
        assert await session.command("pause") == "pausing after the current frame"
        await _until(lambda: session.state == "paused")
        frames = session.stats.frames
        await asyncio.sleep(0.05)
        assert session.stats.frames == frames  # nothing happens while paused
        assert await session.command("resume") == "resumed"

    assert asyncio.run(_run_with(session, script())) == "completed"
    events = journal(session)
    commands = [e.data["command"] for e in events if e.type == ev.OPERATOR_COMMAND]
    assert commands == ["pause", "resume"]
    assert "paused" in states(events)


def test_stop_finishing_the_frame(tmp_path: Path) -> None:
    session, _, _ = make_session(tmp_path, ["good"], frames=None)

    async def script() -> None:
        await _until(lambda: session.stats.frames >= 2)
        await session.command("stop")

    assert asyncio.run(_run_with(session, script())) == "stopped"
    frames = [e for e in journal(session) if e.type == ev.FRAME_PERSISTED]
    assert frames and all(f.data["complete"] for f in frames)


def test_stop_aborting_the_frame_keeps_the_lines_scanned(tmp_path: Path) -> None:
    driver = ScriptedDriver(line_delay=0.01)
    session, _, _ = make_session(tmp_path, ["good"], driver=driver, frames=None)
    lines: list[ScanLine] = []
    session.subscribe(lambda item: lines.append(item) if isinstance(item, ScanLine) else None)

    async def script() -> None:
        await _until(lambda: len(lines) >= 5)
        await session.command("stop", mode="abort")

    assert asyncio.run(_run_with(session, script())) == "stopped"
    frames = [e for e in journal(session) if e.type == ev.FRAME_PERSISTED]
    assert len(frames) == 1 and not frames[0].data["complete"]
    assert 5 <= frames[0].data["lines_done"] < 16
    partial = read_sxm(session.folder / frames[0].data["file"])
    assert partial.lines_done == frames[0].data["lines_done"]


def test_withdraw_now_cancels_the_scan_and_pauses_until_resumed(tmp_path: Path) -> None:
    driver = ScriptedDriver(line_delay=0.005)
    session, _, _ = make_session(tmp_path, ["good"], driver=driver, frames=2)

    async def script() -> None:
        await _until(lambda: driver.names().count("scan") >= 1)
        await session.command("withdraw")
        await _until(lambda: "withdraw" in driver.names())
        await _until(lambda: session.state == "paused")
        await session.command("resume")

    assert asyncio.run(_run_with(session, script())) == "completed"
    names = driver.names()
    w = names.index("withdraw")
    assert names[w + 1] == "approach"  # resuming approaches again
    assert session.stats.complete_frames == 2


def test_switch_policy_and_set_bias_and_setpoint(tmp_path: Path) -> None:
    policy = ScriptedPolicy()
    session, driver, _ = make_session(tmp_path, ["double"], policy=policy, frames=3)

    async def script() -> None:
        await _until(lambda: len(policy.observations) >= 1)
        assert await session.command("switch_policy", name="random") == "policy is now 'random'"
        assert await session.command("set_bias", voltage=0.5) == "done: bias"
        assert await session.command("set_setpoint", current=50e-12) == "done: setpoint"
        assert await session.command("set_bias", voltage=40.0) == "refused by the safety envelope"

    asyncio.run(_run_with(session, script()))
    assert ("set_bias", 0.5) in driver.calls and ("set_setpoint", 50e-12) in driver.calls
    assert ("set_bias", 40.0) not in driver.calls
    decided = [e.data["policy"] for e in journal(session) if e.type == ev.POLICY_DECIDED]
    assert decided[0] == "scripted" and decided[-1] == "random"


def test_an_unknown_command_is_a_clear_error(tmp_path: Path) -> None:
    from probepilot.errors import ProbepilotError

    session, _, _ = make_session(tmp_path)
    with pytest.raises(ProbepilotError, match="unknown operator command 'jump'"):
        asyncio.run(session.command("jump"))


def test_swapping_the_policy_by_config_changes_the_decisions_only(tmp_path: Path) -> None:
    """Two configs that differ in `policy` alone, on the same seeded simulator: the first frame
    is the same, the decisions differ."""
    from probepilot.config import validate

    outcomes = {}
    for name in ("random", "rules"):
        _, manager = make_config(tmp_path)
        raw = {
            "policy": name,
            "drivers": {"sim": {"seed": 3, "tip": "double"}},
            "run": {"folder": str(tmp_path / name), "pixels": 32},
        }
        config = validate(raw, manager, source="test", base_dir=tmp_path)
        # The same scripted verdicts for both, so only the policy can differ.
        session = Session(config, manager, analyzers=[ScriptedAnalyzer(["double"])], frames=4)
        assert run(session) == "completed"
        events = journal(session)
        outcomes[name] = (
            [str(e.data["action"]) for e in events if e.type == ev.POLICY_DECIDED],
            read_sxm(session.folder / "frames" / "frame-000001.sxm").topography,
            {k: v for k, v in config.to_table().items() if k not in ("policy", "policies")},
        )
    (a_actions, a_first, a_rest), (b_actions, b_first, b_rest) = outcomes.values()
    assert np.array_equal(a_first, b_first, equal_nan=True)
    a_rest["run"].pop("folder"), b_rest["run"].pop("folder")
    assert a_rest == b_rest
    assert len(a_actions) == len(b_actions) == 4 and a_actions != b_actions


def test_frame_settings_the_envelope_refuses_end_the_run_with_the_reason(tmp_path: Path) -> None:
    # 20 nm in 2 ms per line is 10 um/s, ten times max_scan_speed: every frame would be refused.
    session, driver, _ = make_session(tmp_path, ["good"], line_time=0.002)
    outcome = run(session)
    assert outcome.startswith("failed: safety envelope rejected 'the frames the [run] settings")
    assert "max_scan_speed" in outcome
    assert "scan" not in driver.names() and "coarse" not in driver.names()


def test_a_pulse_that_timed_out_is_not_repeated(tmp_path: Path) -> None:
    """It may have reached the tip before the reply was lost: the run recovers the connection
    and lets the next frame show what happened, instead of pulsing twice."""
    driver = ScriptedDriver()
    driver.fail["pulse"] = 1
    policy = ScriptedPolicy([Pulse(4.0, 0.2)])
    session, _, _ = make_session(tmp_path, ["double", "good"], driver=driver, policy=policy)
    assert run(session) == "completed"
    assert driver.names().count("pulse") == 1
    errors = [e for e in journal(session) if e.type == ev.DRIVER_ERROR]
    assert [e.data["operation"] for e in errors] == ["pulse"]
    assert driver.names().count("connect") == 2  # recovered
