"""A small real-coded genetic algorithm for noisy costs (numpy only).

The cost of a conditioning recipe is a number of actions on random episodes: a noisy measure
(the spread of actions-to-good is about its mean). The algorithm is built for that:

* every generation evaluates the *whole* population, elites included, on the same fresh episode
  seeds (common random numbers: differences between individuals are not drowned by differences
  between episodes, and no elite survives on one lucky evaluation);
* each individual keeps a running mean of every cost it was ever measured at, so elites that stay
  accumulate evidence and the final choice rests on many episodes;
* selection is by tournament, crossover swaps whole blocks (the genes of one slot of a recipe
  belong together) and blends a pair of parents, mutation is Gaussian and reflected into [0, 1].

It knows nothing about microscopes: a genome is a vector in [0, 1]^n and the cost function is
given. Deterministic for a given generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: ``cost(population, generation) -> costs``: one cost per row, lower is better.
CostFunction = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class GaSettings:
    """Knobs of :class:`GeneticAlgorithm`."""

    population: int = 16
    elite: int = 2
    tournament: int = 3
    crossover_rate: float = 0.8
    mutation_rate: float = 0.2
    mutation_scale: float = 0.15
    #: Genes per block for crossover (1: plain uniform crossover).
    block: int = 1

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError("the population needs at least 2 individuals")
        if not 0 <= self.elite < self.population:
            raise ValueError("elite must be in [0, population)")
        if self.tournament < 1 or self.block < 1:
            raise ValueError("tournament and block must be at least 1")


@dataclass
class Individual:
    """A genome with every cost it was measured at."""

    genome: np.ndarray
    costs: list[float] = field(default_factory=list)

    @property
    def mean_cost(self) -> float:
        return float(np.mean(self.costs)) if self.costs else float("inf")

    def score(self, prior: float, weight: float = 1.0) -> float:
        """Mean cost shrunk towards ``prior`` as if ``weight`` more measurements had given
        it: one lucky evaluation does not outrank an individual measured many times."""
        if not self.costs:
            return prior
        return (sum(self.costs) + weight * prior) / (len(self.costs) + weight)


@dataclass(frozen=True)
class Generation:
    """What one generation measured (for progress reports)."""

    index: int
    costs: np.ndarray
    best: Individual


class GeneticAlgorithm:
    """Ask/tell genetic algorithm over genomes in [0, 1]^``n_genes``."""

    def __init__(
        self,
        n_genes: int,
        settings: GaSettings,
        rng: np.random.Generator,
        initial: list[np.ndarray] | None = None,
    ) -> None:
        self.n_genes = n_genes
        self.settings = settings
        self.rng = rng
        seeds = [np.clip(np.asarray(g, dtype=float), 0, 1) for g in (initial or [])]
        seeds = seeds[: settings.population]
        rest = rng.random((settings.population - len(seeds), n_genes))
        self.population = [Individual(g.copy()) for g in seeds] + [Individual(g) for g in rest]
        self.generation = 0
        self._prior = 0.0
        #: The last population measured (by :meth:`tell`), with its costs.
        self.evaluated: list[Individual] = []

    def ask(self) -> np.ndarray:
        """The genomes to evaluate next, one per row."""
        return np.stack([ind.genome for ind in self.population])

    def tell(self, costs: np.ndarray) -> Generation:
        """Record the costs of :meth:`ask`'s genomes and breed the next population."""
        costs = np.asarray(costs, dtype=float)
        if costs.shape != (len(self.population),):
            raise ValueError(f"expected {len(self.population)} costs, got shape {costs.shape}")
        for ind, c in zip(self.population, costs, strict=True):
            ind.costs.append(float(c))
        self._prior = float(np.mean(costs))
        self.evaluated = list(self.population)
        ranked = self.ranked()
        report = Generation(self.generation, costs, ranked[0])
        s = self.settings
        # Selection uses this generation's costs (common seeds: a fair comparison).
        elites = ranked[: s.elite]
        children = [Individual(self._child(costs)) for _ in range(s.population - len(elites))]
        self.population = elites + children
        self.generation += 1
        return report

    def ranked(self) -> list[Individual]:
        """The last measured population (the initial one before any :meth:`tell`), best first
        by :meth:`Individual.score` towards its mean cost (ties: population order)."""
        return sorted(self.evaluated or self.population, key=lambda ind: ind.score(self._prior))

    def evolve(
        self,
        cost: CostFunction,
        generations: int,
        report: Callable[[Generation], None] | None = None,
    ) -> Individual:
        """Run ``generations`` generations; returns the best individual (:meth:`ranked`)."""
        for _ in range(generations):
            result = self.tell(cost(self.ask(), self.generation))
            if report is not None:
                report(result)
        return self.ranked()[0]

    # -- breeding ----------------------------------------------------------------------------

    def _pick(self, costs: np.ndarray) -> np.ndarray:
        entrants = self.rng.choice(len(costs), size=min(self.settings.tournament, len(costs)))
        # Elites carried over have several measurements; blend them in so that one unlucky
        # episode set does not throw away a proven parent.
        scores = [0.5 * costs[i] + 0.5 * self.evaluated[i].score(self._prior) for i in entrants]
        return self.evaluated[int(entrants[int(np.argmin(scores))])].genome

    def _child(self, costs: np.ndarray) -> np.ndarray:
        s = self.settings
        a = self._pick(costs)
        if self.rng.random() < s.crossover_rate:
            b = self._pick(costs)
            n_blocks = -(-self.n_genes // s.block)
            take = np.repeat(self.rng.random(n_blocks) < 0.5, s.block)[: self.n_genes]
            child = np.where(take, a, b)
            # Blend: a random point between the parents for some genes (BLX-0 style).
            blend = self.rng.random(self.n_genes) < 0.3
            t = self.rng.random(self.n_genes)
            child = np.where(blend, t * a + (1 - t) * b, child)
        else:
            child = a.copy()
        mutate = self.rng.random(self.n_genes) < s.mutation_rate
        child = child + mutate * self.rng.normal(0.0, s.mutation_scale, self.n_genes)
        return reflect(child)


def reflect(x: np.ndarray) -> np.ndarray:
    """Fold values back into [0, 1] (a mutation past a bound bounces off it)."""
    x = np.mod(x, 2.0)
    return np.where(x > 1.0, 2.0 - x, x)
