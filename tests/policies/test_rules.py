"""The rules policy: the escalation tables, their parsing and validation, and short episodes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from probepilot.config import Config, validate
from probepilot.episodes import ConditioningEpisode, EpisodeResult, EpisodeSettings, run_episode
from probepilot.errors import ConfigError
from probepilot.model import (
    CoarseStep,
    Dip,
    Finding,
    KeepImaging,
    Observation,
    Outcome,
    Pulse,
    TipState,
)
from probepilot.plugins import PluginManager
from probepilot_policies.bench import build_policy
from probepilot_policies.rules import (
    DEFAULT_BLUNT,
    DEFAULT_DOUBLE,
    DEFAULT_UNSTABLE,
    MOVE,
    RulesOptions,
    RulesPolicy,
    parse_step,
)


def seen(state: TipState, bad_frames: int = 1) -> Observation:
    return Observation(None, (), state, bad_frames_in_row=bad_frames)


def test_parse_step() -> None:
    assert parse_step("pulse -4 V") == Pulse(voltage=-4.0, width=0.2)
    assert parse_step("pulse 2.5V 100 ms") == Pulse(voltage=2.5, width=0.1)
    assert parse_step("dip 1.2 nm") == Dip(depth=pytest.approx(1.2e-9), bias=0.0)  # type: ignore[arg-type]
    assert parse_step("dip 800 pm -500 mV") == Dip(depth=pytest.approx(0.8e-9), bias=-0.5)  # type: ignore[arg-type]
    assert parse_step(" Move ") == MOVE
    for bad in ("zap 3 V", "pulse", "pulse 4 nm", "dip 1 V", "dip 20 nm", "pulse 12 V", "move 3"):
        with pytest.raises(ValueError):
            parse_step(bad)


def test_escalates_per_failed_attempt_and_moves_at_the_end() -> None:
    policy = RulesPolicy(RulesOptions(repeats=2, bad_frames=1))
    actions = [policy.decide(seen(TipState.UNSTABLE, n)) for n in range(1, 16)]
    table = [parse_step(s) for s in DEFAULT_UNSTABLE]
    expected: list[Any] = []
    for step in table:
        expected += [step] if step == MOVE else [step, step]
    expected = [CoarseStep("x+", 1) if s == MOVE else s for s in expected]
    assert actions[: len(expected)] == expected
    assert actions[len(expected)] == expected[0]  # the table starts again after the move


def test_state_tables_restart_on_a_new_state_and_reset_when_good() -> None:
    policy = RulesPolicy(RulesOptions(bad_frames=1))
    first_double = parse_step(DEFAULT_DOUBLE[0])
    first_unstable = parse_step(DEFAULT_UNSTABLE[0])
    assert policy.decide(seen(TipState.DOUBLE)) == first_double
    assert policy.decide(seen(TipState.DOUBLE, 2)) == first_double  # second attempt
    assert policy.decide(seen(TipState.DOUBLE, 3)) == parse_step(DEFAULT_DOUBLE[1])
    assert policy.attempts == 2
    assert policy.decide(seen(TipState.UNSTABLE, 4)) == first_unstable
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.attempts == 0
    assert policy.decide(seen(TipState.DOUBLE)) == first_double
    policy.feedback(Outcome(first_double, seen(TipState.GOOD, 0), 9.0, True))
    assert policy.attempts == 0


def test_waits_for_bad_frames_and_never_acts_blind() -> None:
    policy = RulesPolicy(RulesOptions(bad_frames=2, trust_after=0))
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.decide(seen(TipState.BLUNT, 1)) == KeepImaging()
    assert isinstance(policy.decide(seen(TipState.BLUNT, 2)), Dip)
    assert policy.decide(seen(TipState.UNKNOWN, 5)) == KeepImaging()


def test_acts_when_enough_of_the_recent_frames_look_bad() -> None:
    policy = RulesPolicy(RulesOptions(bad_frames=2, window=3, trust_after=0))
    first = parse_step(DEFAULT_DOUBLE[0])
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    # A lone false alarm between good frames does nothing.
    assert policy.decide(seen(TipState.DOUBLE, 1)) == KeepImaging()
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE, 1)) == KeepImaging()
    # A double tip seen in two of three frames (the detector missed it once) is acted on.
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE, 1)) == first
    # Once conditioning, every frame that is still bad gets the next attempt.
    assert policy.decide(seen(TipState.DOUBLE, 2)) == first
    assert policy.decide(seen(TipState.DOUBLE, 3)) == parse_step(DEFAULT_DOUBLE[1])
    # Frames nothing could judge neither count nor push judged ones out of the window.
    policy = RulesPolicy(RulesOptions(bad_frames=2, window=3, trust_after=0))
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.decide(seen(TipState.BLUNT, 1)) == KeepImaging()
    assert policy.decide(seen(TipState.UNKNOWN, 1)) == KeepImaging()
    assert policy.decide(seen(TipState.UNKNOWN, 1)) == KeepImaging()
    assert isinstance(policy.decide(seen(TipState.BLUNT, 2)), Dip)


def test_a_successful_conditioning_forgets_the_bad_frames_before_it() -> None:
    policy = RulesPolicy(RulesOptions(bad_frames=2, window=3, trust_after=0))
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE, 1)) == KeepImaging()
    dip = policy.decide(seen(TipState.DOUBLE, 2))
    assert isinstance(dip, Dip)
    # As the session does: the outcome of the action first, then the decision on the frame.
    policy.feedback(Outcome(dip, seen(TipState.GOOD, 0), 9.0, True))
    assert policy.decide(seen(TipState.GOOD, 0)) == KeepImaging()
    # Two of the last three frames looked bad, but before the cure: one false alarm is not
    # enough to condition the new apex.
    assert policy.decide(seen(TipState.DOUBLE, 1)) == KeepImaging()
    assert isinstance(policy.decide(seen(TipState.DOUBLE, 2)), Dip)


def test_by_default_three_of_the_last_four_frames_must_look_bad() -> None:
    policy = RulesPolicy()
    assert (policy.options.bad_frames, policy.options.window) == (3, None)
    assert policy.options.trust_after == 4
    for _ in range(4):  # a good record first
        assert policy.decide(seen(TipState.GOOD)) == KeepImaging()
    for state in (TipState.GOOD, TipState.DOUBLE, TipState.GOOD, TipState.DOUBLE):
        assert policy.decide(seen(state)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE)) == parse_step(DEFAULT_DOUBLE[0])
    policy = RulesPolicy(RulesOptions(bad_frames=5, trust_after=0))  # 5 of the last 6
    verdicts = [TipState.GOOD] + [TipState.BLUNT] * 2 + [TipState.GOOD] + [TipState.BLUNT] * 2
    assert all(policy.decide(seen(state)) == KeepImaging() for state in verdicts)
    assert isinstance(policy.decide(seen(TipState.BLUNT)), Dip)


def test_the_end_of_an_episode_forgets_the_recent_frames() -> None:
    policy = RulesPolicy(RulesOptions(bad_frames=2, window=3, trust_after=0))
    assert policy.decide(seen(TipState.DOUBLE, 1)) == KeepImaging()
    policy.feedback(Outcome(KeepImaging(), seen(TipState.DOUBLE, 1), 1.0, True))
    assert policy.decide(seen(TipState.DOUBLE, 1)) == KeepImaging()
    assert isinstance(policy.decide(seen(TipState.DOUBLE, 2)), Dip)


def test_a_tip_with_no_good_record_is_acted_on_at_the_first_bad_frame() -> None:
    policy = RulesPolicy(RulesOptions(bad_frames=3, window=4, trust_after=2))
    first = parse_step(DEFAULT_DOUBLE[0])
    # The start of a run: nothing says the tip is good, so one bad frame is enough.
    assert policy.decide(seen(TipState.DOUBLE)) == first
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()  # cured (or missed)
    assert policy.decide(seen(TipState.BLUNT)) == parse_step(DEFAULT_BLUNT[0])
    # Two good frames in a row earn trust: from then on a bad frame needs confirming.
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE)) == KeepImaging()
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()  # one miss within the window
    assert policy.decide(seen(TipState.DOUBLE)) == first
    # Trust is kept through conditioning and the end of an episode: the run's frames have
    # shown they can look good, so a lone bad frame is more likely a false alarm.
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()
    policy.feedback(Outcome(first, seen(TipState.GOOD), 1.0, True))
    assert policy.decide(seen(TipState.UNSTABLE)) == KeepImaging()
    assert policy.decide(seen(TipState.UNSTABLE)) == KeepImaging()
    assert policy.decide(seen(TipState.UNSTABLE)) == parse_step(DEFAULT_UNSTABLE[0])
    # A new policy (a new run) starts with no record.
    fresh = RulesPolicy(RulesOptions(bad_frames=3, window=4, trust_after=2))
    assert fresh.decide(seen(TipState.UNSTABLE)) == parse_step(DEFAULT_UNSTABLE[0])


def test_only_frames_that_could_show_a_ghost_earn_trust() -> None:
    def judged(state: TipState, features: int) -> Observation:
        finding = Finding("double_tip", "double_tip", 0.1, {"features": float(features)})
        return Observation(None, (finding,), state)

    policy = RulesPolicy(RulesOptions(bad_frames=3, window=4, trust_after=2, trust_features=3))
    first = parse_step(DEFAULT_DOUBLE[0])
    # Good verdicts on frames with next to nothing a ghost could copy earn no trust ...
    for _ in range(5):
        assert policy.decide(judged(TipState.GOOD, 1)) == KeepImaging()
    assert policy.decide(judged(TipState.DOUBLE, 4)) == first
    # ... good verdicts on frames full of features do.
    assert policy.decide(judged(TipState.GOOD, 8)) == KeepImaging()
    assert policy.decide(judged(TipState.GOOD, 0)) == KeepImaging()  # neither counts nor breaks
    assert policy.decide(judged(TipState.GOOD, 8)) == KeepImaging()
    assert policy.decide(judged(TipState.DOUBLE, 4)) == KeepImaging()
    # Without the double-tip detector's finding, every good frame counts.
    policy = RulesPolicy(RulesOptions(bad_frames=3, window=4, trust_after=2, trust_features=3))
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()
    assert policy.decide(seen(TipState.GOOD)) == KeepImaging()
    assert policy.decide(seen(TipState.DOUBLE)) == KeepImaging()


def test_a_trusted_run_weighs_the_double_tip_evidence_not_the_verdicts() -> None:
    def judged(state: TipState, p_double: float) -> Observation:
        finding = Finding("double_tip", "double_tip", p_double, {"features": 8.0})
        return Observation(None, (finding,), state)

    def trusted(**options: Any) -> RulesPolicy:
        policy = RulesPolicy(RulesOptions(trust_after=2, **options))
        for _ in range(2):  # good verdicts that say nothing either way about a double tip
            assert policy.decide(judged(TipState.GOOD, 0.5)) == KeepImaging()
        return policy

    first = parse_step(DEFAULT_DOUBLE[0])
    # Three weak double verdicts of four (P 0.6: log-odds 0.4 each, 20 to 1 needs 3): by count
    # they would start conditioning; by their evidence they do not.
    policy = trusted()
    for state, p in [(TipState.DOUBLE, 0.6), (TipState.GOOD, 0.3), (TipState.DOUBLE, 0.6)]:
        assert policy.decide(judged(state, p)) == KeepImaging()
    assert policy.decide(judged(TipState.DOUBLE, 0.6)) == KeepImaging()
    counting = trusted(double_evidence=0)
    for state, p in [(TipState.DOUBLE, 0.6), (TipState.GOOD, 0.3), (TipState.DOUBLE, 0.6)]:
        assert counting.decide(judged(state, p)) == KeepImaging()
    assert counting.decide(judged(TipState.DOUBLE, 0.6)) == first
    # Two confident ones (P 0.9: log-odds 2.2 each) are enough, a lone one is not.
    policy = trusted()
    assert policy.decide(judged(TipState.DOUBLE, 0.9)) == KeepImaging()
    assert policy.decide(judged(TipState.DOUBLE, 0.9)) == first
    # Conditioning under way: any frame that still looks double gets the next attempt ...
    assert policy.decide(judged(TipState.DOUBLE, 0.55)) == parse_step(DEFAULT_DOUBLE[0])
    assert policy.attempts == 1
    # ... until the tip looks good; then the evidence starts afresh.
    assert policy.decide(judged(TipState.GOOD, 0.5)) == KeepImaging()
    assert policy.decide(judged(TipState.DOUBLE, 0.9)) == KeepImaging()
    # A certain finding counts as 6 (log-odds bounded): enough alone, but good frames with a
    # confident "single" weigh against it.
    policy = trusted()
    assert policy.decide(judged(TipState.DOUBLE, 1.0)) == first
    policy = trusted()
    for _ in range(3):
        assert policy.decide(judged(TipState.GOOD, 0.05)) == KeepImaging()
    assert policy.decide(judged(TipState.DOUBLE, 1.0)) == KeepImaging()
    # Blunt and unstable verdicts are still counted.
    policy = trusted()
    assert policy.decide(judged(TipState.BLUNT, 0.0)) == KeepImaging()
    assert policy.decide(judged(TipState.BLUNT, 0.0)) == KeepImaging()
    assert policy.decide(judged(TipState.BLUNT, 0.0)) == parse_step(DEFAULT_BLUNT[0])


def test_per_state_off_uses_the_general_table() -> None:
    policy = RulesPolicy(
        RulesOptions(per_state=False, steps=["dip 1 nm", "pulse 3 V"], repeats=1, bad_frames=1)
    )
    assert policy.decide(seen(TipState.UNSTABLE)) == Dip(depth=1e-9)
    assert policy.decide(seen(TipState.UNSTABLE, 2)) == Pulse(voltage=3.0, width=0.2)
    assert policy.decide(seen(TipState.UNSTABLE, 3)) == Dip(depth=1e-9)


def test_config_validation_names_the_key(manager: PluginManager, config: Config) -> None:
    def load(table: dict[str, Any]) -> Config:
        raw = {"policy": "rules", "policies": {"rules": table}}
        return validate(raw, manager, source="my.toml", base_dir=config.base_dir)

    ok = load({"double": ["dip 1 nm", "move"], "bad_frames": 2})
    assert ok.options("policy", "rules").double == ["dip 1 nm", "move"]
    with pytest.raises(ConfigError, match=r"my.toml.*policies.rules.*double\[1\].*'dap 2 nm'"):
        load({"double": ["dip 1 nm", "dap 2 nm"]})
    with pytest.raises(ConfigError, match=r"steps: the table needs at least one step"):
        load({"steps": []})
    with pytest.raises(ConfigError, match="bad_frames"):
        load({"bad_frames": 0})
    with pytest.raises(
        ConfigError, match=r"policies.rules.*window = 2 is less than bad_frames = 3"
    ):
        load({"bad_frames": 3, "window": 2})
    with pytest.raises(ConfigError, match="unstable"):
        load({"unstable": ["pulse 11 V"]})


def _play(config: Config, manager: PluginManager, name: str, seed: int) -> EpisodeResult:
    episode = ConditioningEpisode(config, manager, EpisodeSettings(max_actions=12, pixels=32))

    async def go() -> EpisodeResult:
        try:
            policy = build_policy(config, manager, name, seed)  # seeded where it takes a seed
            return await run_episode(policy, episode, seed)
        finally:
            await episode.close()

    return asyncio.run(go())


@pytest.mark.parametrize("name", ["random", "rules"])
def test_short_seeded_episode(config: Config, manager: PluginManager, name: str) -> None:
    first, again = _play(config, manager, name, 3), _play(config, manager, name, 3)
    assert first == again
    assert 1 <= first.actions <= 12 or first.scans > 0
    assert first.success == (first.states[-1] == "good")
    assert first.rejected == 0  # the default tables and set fit the default envelope
