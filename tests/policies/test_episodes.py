"""Conditioning episodes: reset, step, seeding, the safety envelope between policy and driver."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from probepilot.config import Config, validate
from probepilot.contracts import Driver
from probepilot.episodes import (
    ConditioningEpisode,
    EpisodeSettings,
    describe_action,
    required_clean_side,
    run_episode,
)
from probepilot.errors import ConfigError, NotConnectedError
from probepilot.model import (
    DEFAULT_CONDITIONING_ACTIONS,
    Action,
    Dip,
    KeepImaging,
    Observation,
    Outcome,
    Pulse,
    TipState,
)
from probepilot.plugins import PluginManager

SHORT = EpisodeSettings(max_actions=4, max_scans=3, pixels=32)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Scripted:
    """A policy that replays a list of actions and records what it was told."""

    name = "scripted"

    def __init__(self, actions: Sequence[Action]) -> None:
        self.actions = list(actions)
        self.seen: list[Observation] = []
        self.outcomes: list[Outcome] = []

    def decide(self, observation: Observation) -> Action:
        self.seen.append(observation)
        return self.actions[(len(self.seen) - 1) % len(self.actions)]

    def feedback(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


class SpyDriver:
    """Wraps a driver and records every conditioning call that reaches it."""

    def __init__(self, inner: Driver) -> None:
        self._inner = inner
        self.calls: list[tuple[str, float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def bias_pulse(self, voltage: float, width: float) -> None:
        self.calls.append(("pulse", voltage, width))
        await self._inner.bias_pulse(voltage, width)

    async def dip(self, depth: float, bias: float) -> None:
        self.calls.append(("dip", depth, bias))
        await self._inner.dip(depth, bias)


class SpiedConfig:
    """A config whose driver is wrapped in a :class:`SpyDriver`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.spies: list[SpyDriver] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)

    def build(self, manager: PluginManager, kind: str, name: str, overrides: Any = None) -> Any:
        built = self._config.build(manager, kind, name, overrides)
        if kind == "driver":
            built = SpyDriver(built)
            self.spies.append(built)
        return built


def test_reset_starts_from_a_bad_tip_and_scans_one_frame(
    config: Config, manager: PluginManager
) -> None:
    episode = ConditioningEpisode(config, manager, SHORT)

    async def go() -> Observation:
        try:
            return await episode.reset(3)
        finally:
            await episode.close()

    observation = run(go())
    assert observation.frame is not None
    assert observation.frame.topography.shape == (32, 32)
    assert episode.last_truth in (TipState.DOUBLE, TipState.BLUNT, TipState.UNSTABLE)
    assert episode.actions == 0
    assert episode.sim_time > 0


def test_step_before_reset_is_a_clear_error(config: Config, manager: PluginManager) -> None:
    episode = ConditioningEpisode(config, manager, SHORT)
    with pytest.raises(NotConnectedError, match="reset"):
        run(episode.step(KeepImaging()))


def test_same_seed_same_episode(config: Config, manager: PluginManager) -> None:
    script = [DEFAULT_CONDITIONING_ACTIONS[i] for i in (3, 7, 8, 1)]

    async def play(seed: int) -> list[tuple[Any, ...]]:
        episode = ConditioningEpisode(config, manager, SHORT)
        out = []
        try:
            obs = await episode.reset(seed)
            out.append((obs.frame.topography.tobytes(), obs.tip_state, None, 0.0))  # type: ignore[union-attr]
            for action in script:
                step = await episode.step(action)
                frame = step.observation.frame
                assert frame is not None
                out.append((frame.topography.tobytes(), step.truth, step.done, step.sim_time))
        finally:
            await episode.close()
        return out

    first, again, other = run(play(5)), run(play(5)), run(play(6))
    assert first == again
    assert first != other


def test_steps_image_fresh_areas_and_condition_on_the_last_one(
    config: Config, manager: PluginManager
) -> None:
    episode = ConditioningEpisode(config, manager, SHORT)

    async def go() -> list[tuple[float, float]]:
        try:
            obs = await episode.reset(1)
            assert obs.frame is not None
            centres = [obs.frame.area.centre]
            for _ in range(3):
                step = await episode.step(Dip(depth=1.2e-9))
                assert step.verdict.accepted
                assert isinstance(step.verdict.action, Dip)
                assert step.verdict.action.position is not None  # placed on the last frame
                frame = step.observation.frame
                assert frame is not None
                centres.append(frame.area.centre)
            return centres
        finally:
            await episode.close()

    centres = run(go())
    assert len(set(centres)) == len(centres)
    for (x0, y0), (x1, y1) in itertools.pairwise(centres):
        assert max(abs(x1 - x0), abs(y1 - y0)) >= SHORT.spacing * SHORT.size * 0.999


def test_the_envelope_sits_between_policy_and_driver(
    config: Config, manager: PluginManager
) -> None:
    """Out-of-range actions are rejected and never reach the driver; good ones do."""
    spied = SpiedConfig(config)
    settings = dataclasses.replace(SHORT, max_actions=6)
    episode = ConditioningEpisode(spied, manager, settings)  # type: ignore[arg-type]
    bad = [
        Pulse(voltage=12.0, width=0.2),  # above max_pulse (8 V) and the hard ceiling
        Dip(depth=50e-9),  # far beyond max_dip_depth
        Pulse(voltage=float("nan"), width=0.2),
        Pulse(voltage=4.0, width=5.0),  # too long
    ]
    policy = Scripted([*bad, Pulse(voltage=4.0, width=0.2)])

    async def go() -> Any:
        try:
            return await run_episode(policy, episode, 2)
        finally:
            await episode.close()

    result = run(go())
    (spy,) = spied.spies
    assert result.rejected >= len(bad)
    assert all(label.endswith("(rejected)") for label in result.trace[: len(bad)])
    # Only the in-range pulse ever reached the instrument.
    assert spy.calls
    assert all(call == ("pulse", 4.0, 0.2) for call in spy.calls)
    assert all(o.reward == -1.0 or o.reward == 9.0 for o in policy.outcomes)


def test_rate_limit_counts_simulated_minutes(config: Config, manager: PluginManager) -> None:
    """The envelope's clock is the simulator's: without waiting, the 7th action in a simulated
    minute is refused; with waiting (the default), simulated time passes instead."""
    strict = dataclasses.replace(SHORT, max_actions=9, wait_for_rate_limit=False)
    patient = dataclasses.replace(SHORT, max_actions=9)
    pulse = Pulse(voltage=2.5, width=0.2)  # gentle: rarely changes the tip

    async def go(settings: EpisodeSettings) -> list[Any]:
        episode = ConditioningEpisode(config, manager, settings)
        try:
            await episode.reset(4)
            return [await episode.step(pulse) for _ in range(8)]
        finally:
            await episode.close()

    steps = run(go(strict))
    assert [s.verdict.accepted for s in steps][:6] == [True] * 6
    assert not all(s.verdict.accepted for s in steps)
    assert any("conditioning rate" in r for s in steps for r in s.verdict.reasons)
    waited = run(go(patient))
    assert all(s.verdict.accepted for s in waited)
    assert waited[-1].sim_time > steps[-1].sim_time + 10


def test_keep_imaging_is_a_scan_and_scans_are_bounded(
    config: Config, manager: PluginManager
) -> None:
    episode = ConditioningEpisode(config, manager, SHORT)
    policy = Scripted([KeepImaging()])

    async def go() -> Any:
        try:
            return await run_episode(policy, episode, 0)
        finally:
            await episode.close()

    result = run(go())
    assert result.actions == 0
    assert result.scans == SHORT.max_scans
    assert not result.success  # seed 0's bad tip does not heal by itself in three frames
    assert all(o.reward == 0.0 for o in policy.outcomes)


def test_run_episode_rewards_and_gives_up(config: Config, manager: PluginManager) -> None:
    episode = ConditioningEpisode(config, manager, SHORT)
    policy = Scripted([Pulse(voltage=2.5, width=0.2)])

    async def go() -> Any:
        try:
            return await run_episode(policy, episode, 0)
        finally:
            await episode.close()

    result = run(go())
    assert result.actions <= SHORT.max_actions
    assert len(result.trace) == result.actions
    assert result.trace[0] == "pulse +2.5 V 200 ms"
    assert policy.outcomes[-1].done
    assert result.success == (result.states[-1] == "good")
    if not result.success:
        assert result.actions == SHORT.max_actions
    assert len(policy.seen) == len(policy.outcomes)


def test_episode_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_actions"):
        EpisodeSettings(max_actions=0)
    with pytest.raises(ConfigError, match="spacing"):
        EpisodeSettings(spacing=0.5)
    with pytest.raises(ConfigError, match="size"):
        EpisodeSettings(size=-1e-9)


def test_evaluation_frames_outside_the_limits_are_a_config_error(
    manager: PluginManager, config: Config
) -> None:
    slow = validate(
        {"safety": {"max_scan_speed": "10 nm/s"}}, manager, source="t", base_dir=config.base_dir
    )
    settings = dataclasses.replace(SHORT, line_time=0.05)
    episode = ConditioningEpisode(slow, manager, settings)
    # clamping is off by default: a scan the envelope rejects cannot be an evaluation frame
    with pytest.raises(ConfigError, match="safety limits"):
        run(episode.reset(0))
    run(episode.close())


def test_labels_and_clean_area_needs() -> None:
    assert describe_action(Pulse(voltage=-4.0, width=0.2)) == "pulse -4 V 200 ms"
    assert describe_action(Dip(depth=1.2e-9)) == "dip 1.2 nm"
    assert describe_action(KeepImaging()) == "image"
    needs = [required_clean_side(a) for a in DEFAULT_CONDITIONING_ACTIONS]
    assert all(n > 0 for n in needs)
    assert needs[4] > needs[0]  # 8 V needs more room than 2.5 V
    assert needs[-1] > needs[6]  # 5 nm dips more than 0.8 nm
    assert required_clean_side(KeepImaging()) == 0.0
