"""The ga policy: recipes, the genetic algorithm, online evolution, `probepilot train ga`."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from probepilot.cli import cli
from probepilot.config import Config
from probepilot.episodes import ConditioningEpisode, EpisodeSettings, run_episode
from probepilot.errors import ConfigError
from probepilot.model import (
    Dip,
    Finding,
    KeepImaging,
    Observation,
    Outcome,
    Pulse,
    TipState,
)
from probepilot.plugins import PluginManager
from probepilot.safety import SafetyLimits
from probepilot_policies.ga import GaOptions, GaPolicy, OnlineEvolution, shipped_recipe_path
from probepilot_policies.genetic import GaSettings, GeneticAlgorithm, reflect
from probepilot_policies.recipe import GENES_PER_SLOT, GENOME_LENGTH, SLOTS, Recipe, SlotRecipe

SHORT = EpisodeSettings(max_actions=4, max_scans=3, pixels=32)


def observation(state: TipState) -> Observation:
    return Observation(frame=None, findings=(), tip_state=state)


def pure(p_dip: float, voltage: float = 4.0, depth: float = 1.2e-9) -> SlotRecipe:
    return SlotRecipe(p_dip=p_dip, voltage=voltage, width=0.2, depth=depth, p_negative=0.0)


def fixed_recipe(patience: int = 30) -> Recipe:
    """Dips for double and blunt tips, 4 V pulses for unstable ones, a 5 V pulse fallback."""
    return Recipe(
        {
            "double": pure(1.0),
            "blunt": pure(1.0, depth=1.4e-9),
            "unstable": pure(0.0),
            "fallback": pure(0.0, voltage=5.0),
        },
        patience,
    )


# ------------------------------------------------------------------ recipes


def test_genome_round_trip_and_bounds() -> None:
    rng = np.random.default_rng(0)
    limits = SafetyLimits()
    for _ in range(20):
        genome = rng.random(GENOME_LENGTH)
        recipe = Recipe.from_genome(genome)
        assert np.allclose(recipe.genome()[:-1], genome[:-1])  # patience is rounded
        again = Recipe.from_genome(recipe.genome())
        assert again.patience == recipe.patience
        assert np.allclose(again.genome(), recipe.genome())
        for _ in range(20):
            for state in (TipState.DOUBLE, TipState.BLUNT, TipState.UNSTABLE):
                action = recipe.action(state, rng, streak=int(rng.integers(40)))
                if isinstance(action, Pulse):
                    assert abs(action.voltage) <= limits.max_pulse
                    assert 0 < action.width <= limits.max_pulse_width
                else:
                    assert 0 < action.depth <= limits.max_dip_depth


def test_json_round_trip_and_errors(tmp_path: Path) -> None:
    recipe = Recipe.from_genome(np.linspace(0, 1, GENOME_LENGTH))
    path = tmp_path / "r.json"
    path.write_text(recipe.to_json({"note": 1}))
    assert Recipe.load(path) == recipe
    doc = json.loads(path.read_text())
    doc["slots"]["blunt"]["depth"] = 12e-9  # deeper than the default safety limit
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"slots\.blunt\.depth"):
        Recipe.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Recipe.load(tmp_path / "missing.json")


def test_shipped_recipe_loads() -> None:
    recipe = Recipe.load(shipped_recipe_path())
    assert set(recipe.slots) == set(SLOTS)
    meta = json.loads(shipped_recipe_path().read_text())["meta"]
    assert meta["trained_by"] == "probepilot train ga"
    assert math.isfinite(meta["validation_cost"])


# ------------------------------------------------------------------ the genetic algorithm


def test_reflect_stays_in_unit_interval() -> None:
    x = reflect(np.array([-0.3, 0.2, 1.4, 2.7, -1.9]))
    assert np.allclose(x, [0.3, 0.2, 0.6, 0.7, 0.1])


def noisy_cost(target: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
    """A tiny problem: squared distance to ``target`` plus noise common to each generation."""

    def cost(population: np.ndarray, generation: int) -> np.ndarray:
        noise = np.random.default_rng([seed, generation]).normal(0, 0.05, len(population))
        return ((population - target) ** 2).sum(axis=1) + noise

    return cost


def test_evolution_improves_cost_on_a_tiny_problem() -> None:
    target = np.array([0.2, 0.9, 0.5, 0.1, 0.7, 0.3])
    ga = GeneticAlgorithm(6, GaSettings(population=12, block=2), np.random.default_rng(1))
    initial = ((ga.ask() - target) ** 2).sum(axis=1)
    best = ga.evolve(noisy_cost(target, 1), generations=30)
    final = float(((best.genome - target) ** 2).sum())
    assert final < 0.25 * initial.min()
    assert final < 0.05


def test_evolution_is_deterministic_from_the_seed() -> None:
    target = np.full(5, 0.3)
    runs = []
    for _ in range(2):
        ga = GeneticAlgorithm(5, GaSettings(population=6), np.random.default_rng(7))
        ga.evolve(noisy_cost(target, 3), generations=5)
        runs.append(ga.ask())
    assert np.array_equal(runs[0], runs[1])
    other = GeneticAlgorithm(5, GaSettings(population=6), np.random.default_rng(8))
    other.evolve(noisy_cost(target, 3), generations=5)
    assert not np.array_equal(runs[0], other.ask())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="population"):
        GaSettings(population=1)
    with pytest.raises(ValueError, match="elite"):
        GaSettings(population=4, elite=4)


# ------------------------------------------------------------------ the policy


def test_keeps_imaging_while_good_or_unknown() -> None:
    policy = GaPolicy(GaOptions(seed=0), recipe=fixed_recipe())
    assert isinstance(policy.decide(observation(TipState.GOOD)), KeepImaging)
    assert isinstance(policy.decide(observation(TipState.UNKNOWN)), KeepImaging)


def test_slots_per_state_and_fallback_after_patience() -> None:
    policy = GaPolicy(GaOptions(seed=0), recipe=fixed_recipe(patience=3))
    assert isinstance(policy.decide(observation(TipState.UNSTABLE)), Pulse)
    actions = [policy.decide(observation(TipState.DOUBLE)) for _ in range(8)]
    kinds = ["dip" if isinstance(a, Dip) else f"{a.voltage:g} V" for a in actions]
    # three dips, then the fallback once, then the usual cure again
    assert kinds == ["dip", "dip", "dip", "5 V", "dip", "dip", "dip", "5 V"]
    assert actions[0] == Dip(depth=1.2e-9, bias=0.0)
    assert policy.decide(observation(TipState.BLUNT)) == Dip(depth=1.4e-9, bias=0.0)


def test_default_policy_builds_from_config(config: Config, manager: PluginManager) -> None:
    policy = config.build(manager, "policy", "ga", overrides={"seed": 3})
    assert isinstance(policy, GaPolicy)
    assert policy.recipe == Recipe.load(shipped_recipe_path())
    action = policy.decide(observation(TipState.DOUBLE))
    assert isinstance(action, Pulse | Dip)


def test_seeded_short_episode_is_reproducible(config: Config, manager: PluginManager) -> None:
    async def play(seed: int) -> tuple[int, tuple[str, ...]]:
        episode = ConditioningEpisode(config, manager, SHORT)
        try:
            result = await run_episode(GaPolicy(GaOptions(seed=1)), episode, seed)
        finally:
            await episode.close()
        assert result.actions <= SHORT.max_actions
        return result.actions, result.trace

    first = asyncio.run(play(5))
    assert first == asyncio.run(play(5))


# ------------------------------------------------------------------ online evolution


def test_online_evolution_follows_the_cheaper_recipe() -> None:
    """Tips conditioned by recipes with many dips for double tips cost fewer actions."""
    rng = np.random.default_rng(0)
    online = OnlineEvolution(fixed_recipe(), rng, size=4, mutation=0.3, prior_cost=10.0)
    start = online.members[0].genome.copy()

    def cost(member_genome: np.ndarray) -> float:
        p_dip_double = Recipe.from_genome(member_genome).slots["double"].p_dip
        return 4.0 + 12.0 * (1.0 - p_dip_double) + rng.normal(0, 0.5)

    for _ in range(120):
        online.record(cost(online.current.genome))
    assert online.recorded == 120
    assert len(online.members) == 4
    assert Recipe.from_genome(online.best.genome).slots["double"].p_dip > 0.8
    assert not all(np.array_equal(m.genome, start) for m in online.members)


def test_policy_scores_each_bad_tip_online() -> None:
    options = GaOptions(seed=2, learn_online=True, online_population=4)
    policy = GaPolicy(options, recipe=fixed_recipe())
    assert policy.online is not None
    bad = observation(TipState.DOUBLE)
    good = Observation(None, (Finding("x", "tip_state", 1.0),), tip_state=TipState.GOOD)
    for _ in range(3):
        action = policy.decide(bad)
        policy.feedback(Outcome(action, bad, -1.0, False))
        action = policy.decide(bad)
        policy.feedback(Outcome(action, good, 9.0, True))
    # each member conditioned one tip, in turn; the fourth is next
    assert [m.costs for m in policy.online.members] == [[2.0], [2.0], [2.0], []]
    assert policy.online.index == 3


# ------------------------------------------------------------------ probepilot train ga


def test_train_ga_tiny_run_is_deterministic(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", "ga", "--seed", "4", "--generations", "1", "--population", "2"]
    args += ["--episodes", "1", "--validation", "1", "--max-actions", "2", "--pixels", "32"]
    outputs = []
    for name in ("a.json", "b.json"):
        result = runner.invoke(cli, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "generation 1/1" in result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["out"].endswith(name)
        outputs.append(Recipe.load(tmp_path / name))
    assert outputs[0] == outputs[1]
    assert GaPolicy(GaOptions(recipe=str(tmp_path / "a.json"))).recipe == outputs[0]


def test_genome_layout_matches_slots() -> None:
    assert GENES_PER_SLOT * len(SLOTS) + 1 == GENOME_LENGTH
