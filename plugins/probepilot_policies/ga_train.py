"""Evolving a conditioning recipe offline on the simulator (``probepilot train ga``).

Fitness is what the benchmark measures: the number of conditioning actions from a random bad tip
to a good one, on seeded episodes of :mod:`probepilot.episodes` (the whole simulated microscope:
frames, analyzers, safety envelope), with an episode that gives up counting ``max_actions``.
Every generation draws fresh episode seeds, shared by the whole population (see
:mod:`probepilot_policies.genetic` for why). At the end the best few recipes by running mean
are measured again on ``validation`` common episodes and the best of them is written out.

Episode seeds are drawn from ``[TRAIN_SEED_BASE, 2 * TRAIN_SEED_BASE)``, away from the small
seeds benchmarks use, so a benchmark never scores a recipe on the episodes it was evolved on.
Everything is derived from ``seed``: the same seed and settings give the same recipe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from probepilot.config import Config
from probepilot.contracts import Analyzer
from probepilot.plugins import PluginManager
from probepilot.progress import ProgressCallback, Stage
from probepilot_policies.ga import GaOptions, GaPolicy
from probepilot_policies.genetic import GaSettings, Generation, GeneticAlgorithm
from probepilot_policies.recipe import GENES_PER_SLOT, GENOME_LENGTH, Recipe

#: Training episodes use seeds from here up (benchmarks use small seeds).
TRAIN_SEED_BASE = 1_000_000_000


@dataclass(frozen=True)
class GaTraining:
    """Settings of one offline evolution."""

    seed: int = 0
    generations: int = 20
    population: int = 10
    episodes: int = 20
    """Episodes per individual and generation (common to the whole generation)."""
    validation: int = 100
    """Episodes on which the final candidates are compared."""
    candidates: int = 4
    """How many of the best recipes by running mean are validated."""
    max_actions: int = 50
    max_scans: int = 20
    """Frames without conditioning (the verdict said good, the tip was not) after which a
    training episode gives up and costs ``max_actions``: a recipe that leaves tips the
    analyzers misjudge is penalised, and training does not image them for 50 frames."""
    pixels: int = 64


@dataclass(frozen=True)
class GaResult:
    """The evolved recipe and what training measured."""

    recipe: Recipe
    meta: dict[str, Any]


class RecipeEvaluator:
    """Scores recipes on seeded conditioning episodes (one simulator at a time)."""

    def __init__(
        self,
        config: Config,
        manager: PluginManager,
        *,
        max_actions: int = 50,
        max_scans: int = 50,
        pixels: int = 64,
        analyzers: Sequence[Analyzer] | None = None,
    ) -> None:
        from probepilot.episodes import ConditioningEpisode, EpisodeSettings

        self.max_actions = max_actions
        settings = EpisodeSettings(max_actions=max_actions, max_scans=max_scans, pixels=pixels)
        self.episode = ConditioningEpisode(config, manager, settings, analyzers)
        self.episodes_run = 0
        self.on_episode: Callable[[], None] | None = None
        """Called after every episode (progress within a generation)."""

    async def cost(self, recipe: Recipe, seeds: Sequence[int], policy_seed: int) -> float:
        """Mean actions to a good tip over ``seeds`` (``max_actions`` for a failed episode)."""
        from probepilot.episodes import run_episode

        costs = []
        for seed in seeds:
            policy = GaPolicy(GaOptions(seed=policy_seed + int(seed)), recipe=recipe)
            result = await run_episode(policy, self.episode, int(seed))
            costs.append(result.actions if result.success else self.max_actions)
            self.episodes_run += 1
            if self.on_episode is not None:
                self.on_episode()
        return float(np.mean(costs))

    async def close(self) -> None:
        await self.episode.close()


def episode_seeds(seed: int, stream: int, n: int) -> list[int]:
    """``n`` training episode seeds for one generation (``stream``) of a run seeded ``seed``."""
    rng = np.random.default_rng([seed, stream, 0x6A])
    return [int(s) for s in TRAIN_SEED_BASE + rng.integers(0, TRAIN_SEED_BASE, n)]


def train_ga(
    training: GaTraining,
    config: Config,
    manager: PluginManager,
    *,
    analyzers: Sequence[Analyzer] | None = None,
    log: Callable[[str], None] = lambda line: None,
    progress: ProgressCallback | None = None,
) -> GaResult:
    """Evolve a recipe; the closing line goes to ``log``.

    ``progress`` is told of every episode (a generation or a validated candidate in progress),
    every generation (``generation``: mean and lowest cost of the generation, the best
    recipe's running mean) and every validated candidate (``validating candidate``, its
    cost); it does not change the result."""
    return asyncio.run(_train(training, config, manager, analyzers, log, progress))


async def _train(
    t: GaTraining,
    config: Config,
    manager: PluginManager,
    analyzers: Sequence[Analyzer] | None,
    log: Callable[[str], None],
    progress: ProgressCallback | None = None,
) -> GaResult:
    start = time.perf_counter()
    evaluator = RecipeEvaluator(
        config,
        manager,
        max_actions=t.max_actions,
        max_scans=t.max_scans,
        pixels=t.pixels,
        analyzers=analyzers,
    )
    settings = GaSettings(population=t.population, elite=min(2, t.population - 1))
    settings = GaSettings(**{**asdict(settings), "block": GENES_PER_SLOT})
    ga = GeneticAlgorithm(GENOME_LENGTH, settings, np.random.default_rng([t.seed, 0x6A]))
    stage = Stage(progress, "generation", t.generations, t.population * t.episodes)
    evaluator.on_episode = lambda: stage.part()
    try:
        for generation in range(t.generations):
            seeds = episode_seeds(t.seed, generation, t.episodes)
            costs = np.array(
                [
                    await evaluator.cost(Recipe.from_genome(g), seeds, policy_seed=generation)
                    for g in ga.ask()
                ]
            )
            report: Generation = ga.tell(costs)
            best = report.best
            stage.step(
                {
                    "mean cost": f"{costs.mean():.2f}",
                    "lowest": f"{costs.min():.2f}",
                    "best so far": f"{best.mean_cost:.2f}",
                    "over": f"{len(best.costs)} evaluation(s)",
                }
            )
        candidates = ga.ranked()[: max(1, t.candidates)]
        seeds = episode_seeds(t.seed, 1_000_000, t.validation)
        stage = Stage(progress, "validating candidate", len(candidates), t.validation)
        validated: list[float] = []
        for c in candidates:
            cost = await evaluator.cost(Recipe.from_genome(c.genome), seeds, policy_seed=1_000_000)
            validated.append(cost)
            stage.step({"cost": f"{cost:.2f}", "in training": f"{c.mean_cost:.2f}"})
    finally:
        await evaluator.close()
    winner = int(np.argmin(validated))
    recipe = Recipe.from_genome(candidates[winner].genome)
    elapsed = time.perf_counter() - start
    log(
        "validation ("
        + ", ".join(f"{v:.2f}" for v in validated)
        + f" actions over {t.validation} episodes): candidate {winner + 1} wins "
        f"[{elapsed:.0f} s, {evaluator.episodes_run} episodes]"
    )
    meta = {
        "trained_by": "probepilot train ga",
        **asdict(t),
        "analyzers": list(config.analyzers) if analyzers is None else [a.name for a in analyzers],
        "training_cost": candidates[winner].mean_cost,
        "validation_cost": validated[winner],
        "episodes_run": evaluator.episodes_run,
        "seconds": round(elapsed, 1),
    }
    return GaResult(recipe, meta)
