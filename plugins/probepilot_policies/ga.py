"""The ``ga`` policy: conditioning recipes evolved by a genetic algorithm.

A :class:`~probepilot_policies.recipe.Recipe` says which pulse or dip to try for each tip state
the analyzers report. The recipe shipped in the package (``data/ga_recipe.json``) was evolved
offline on the simulator by ``probepilot train ga`` (:mod:`probepilot_policies.ga_train`),
whose fitness is the measured number of actions to a good tip on seeded episodes.

With ``learn_online = true`` the policy keeps evolving on the run's own outcomes
(:class:`OnlineEvolution`): it holds a small population (the loaded recipe and mutants of it),
conditions each bad tip with one member, scores the member by the conditioning actions that tip
needed, and now and then replaces the worst member by a child of the best two. A real tip, a
real sample or a real classifier differ from the simulator's; this is how the recipe follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np

from probepilot.model import (
    CONDITIONING_ACTIONS,
    Action,
    KeepImaging,
    Observation,
    Outcome,
    TipState,
)
from probepilot.options import Doc, Range
from probepilot_policies.genetic import reflect
from probepilot_policies.recipe import GENES_PER_SLOT, GENOME_LENGTH, Recipe, read_meta

#: The recipe shipped with the package.
SHIPPED_RECIPE = "data/ga_recipe.json"


def shipped_recipe_path() -> Path:
    """Path of the recipe file shipped in the package."""
    return Path(str(resources.files("probepilot_policies").joinpath(SHIPPED_RECIPE)))


@dataclass(frozen=True)
class GaOptions:
    """The ``[policies.ga]`` table."""

    seed: Annotated[
        int | None, Doc("seed of the recipe's random draws (default: fresh each run)")
    ] = None
    recipe: Annotated[
        str | None,
        Doc("a recipe file written by `probepilot train ga` (default: the shipped recipe)"),
    ] = None
    learn_online: Annotated[
        bool, Doc("keep evolving the recipe from this run's own conditioning outcomes")
    ] = False
    online_population: Annotated[
        int, Range(2, 64), Doc("recipes kept and compared online (the loaded one and mutants)")
    ] = 6
    online_mutation: Annotated[
        float, Range(0.0, 1.0), Doc("spread of online mutations, as a fraction of each range")
    ] = 0.1
    online_prior: Annotated[
        float,
        Range(0.0, 1000.0),
        Doc("weight, in conditioned tips, of the offline cost a recipe starts with online"),
    ] = 3.0


class GaPolicy:
    """Conditions the tip by a :class:`~probepilot_policies.recipe.Recipe`.

    While the verdict is ``good`` or ``unknown`` it keeps imaging; otherwise it draws an action
    from the recipe's slot for the observed state, or from the fallback slot once ``patience``
    actions in a row left the observed state unchanged.
    """

    name = "ga"

    def __init__(self, options: GaOptions | None = None, recipe: Recipe | None = None) -> None:
        options = options or GaOptions()
        self.options = options
        self._rng = np.random.default_rng(options.seed)
        if recipe is None:
            path = Path(options.recipe) if options.recipe else shipped_recipe_path()
            recipe = Recipe.load(path)
            prior_cost = _offline_cost(path)
        else:
            prior_cost = math.nan
        self.online: OnlineEvolution | None = None
        if options.learn_online:
            self.online = OnlineEvolution(
                recipe,
                self._rng,
                size=options.online_population,
                mutation=options.online_mutation,
                prior_weight=options.online_prior,
                prior_cost=prior_cost,
            )
        self._recipe = recipe
        self._state: TipState | None = None
        self._streak = 0
        self._actions = 0

    @property
    def recipe(self) -> Recipe:
        """The recipe conditioning the current (or next) bad tip."""
        return self.online.current.recipe if self.online is not None else self._recipe

    def decide(self, observation: Observation) -> Action:
        state = observation.tip_state
        if state in (TipState.GOOD, TipState.UNKNOWN):
            self._state, self._streak = None, 0
            return KeepImaging()
        if state != self._state:
            self._state, self._streak = state, 0
        recipe = self.recipe
        action = recipe.action(state, self._rng, self._streak)
        # The fallback fires once, then the slot's usual cure gets another `patience` tries.
        self._streak = 0 if self._streak >= recipe.patience else self._streak + 1
        return action

    def feedback(self, outcome: Outcome) -> None:
        """Count the conditioning actions of the current bad tip; when it is good (or the
        episode ends) score the recipe that conditioned it (online learning only)."""
        if isinstance(outcome.action, CONDITIONING_ACTIONS):
            self._actions += 1
        good = outcome.observation.tip_state == TipState.GOOD
        if not (outcome.done or good):
            return
        if self.online is not None and self._actions > 0:
            self.online.record(float(self._actions))
        self._actions = 0
        self._state, self._streak = None, 0


def _offline_cost(path: Path) -> float:
    """The validation cost the training measured for a recipe file (NaN when unknown)."""
    try:
        value = read_meta(path).get("validation_cost")
    except (OSError, ValueError):
        return math.nan
    return float(value) if isinstance(value, int | float) else math.nan


@dataclass
class Member:
    """One recipe of the online population with the costs it was measured at online."""

    genome: np.ndarray
    prior_weight: float
    costs: list[float] = field(default_factory=list)

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_genome(self.genome)

    def score(self, prior_cost: float) -> float:
        """Mean online cost, shrunk towards ``prior_cost`` by ``prior_weight`` pseudo-tips."""
        weight = self.prior_weight if math.isfinite(prior_cost) else 0.0
        if not self.costs and weight == 0:
            return prior_cost if math.isfinite(prior_cost) else 0.0
        return (sum(self.costs) + weight * prior_cost) / (len(self.costs) + weight)


class OnlineEvolution:
    """A steady-state genetic algorithm on the run's own conditioning outcomes.

    Each bad tip is conditioned by one member (:attr:`current`); :meth:`record` scores it with
    the actions that tip needed. Members are tried in turn until each has been measured once;
    after that the best-scoring member conditions most tips and every ``size`` recorded tips
    the worst member (never the best) is replaced by a mutated child of the best two. Scores are
    shrunk towards the offline cost, so one lucky tip does not make a mutant the incumbent.
    """

    def __init__(
        self,
        recipe: Recipe,
        rng: np.random.Generator,
        *,
        size: int = 6,
        mutation: float = 0.1,
        prior_weight: float = 3.0,
        prior_cost: float = math.nan,
        explore: float = 0.2,
    ) -> None:
        self.rng = rng
        self.mutation = mutation
        self.explore = explore
        self.prior_cost = prior_cost
        self.prior_weight = prior_weight
        base = recipe.genome()
        # The loaded recipe is trusted more than its untested mutants.
        self.members = [Member(base, prior_weight * 2)]
        self.members += [Member(self._mutate(base), prior_weight) for _ in range(size - 1)]
        self.index = 0
        self.recorded = 0

    @property
    def current(self) -> Member:
        return self.members[self.index]

    @property
    def best(self) -> Member:
        return min(self.members, key=lambda m: m.score(self._prior()))

    def record(self, cost: float) -> None:
        """The current member needed ``cost`` actions for its tip; choose the next member."""
        self.current.costs.append(cost)
        self.recorded += 1
        if self.recorded % len(self.members) == 0 and all(m.costs for m in self.members):
            self._replace_worst()
        self.index = self._next()

    def _prior(self) -> float:
        if math.isfinite(self.prior_cost):
            return self.prior_cost
        measured = [c for m in self.members for c in m.costs]
        return float(np.mean(measured)) if measured else math.nan

    def _next(self) -> int:
        untried = [i for i, m in enumerate(self.members) if not m.costs]
        if untried:
            return untried[0]
        if self.rng.random() < self.explore:
            counts = np.array([len(m.costs) for m in self.members])
            return int(np.argmin(counts))
        prior = self._prior()
        return int(np.argmin([m.score(prior) for m in self.members]))

    def _replace_worst(self) -> None:
        prior = self._prior()
        order = np.argsort([m.score(prior) for m in self.members], kind="stable")
        a, b = self.members[order[0]].genome, self.members[order[1]].genome
        # Whole slots from either parent (a slot's genes belong together), then mutate.
        take = np.repeat(self.rng.random(GENOME_LENGTH // GENES_PER_SLOT + 1) < 0.5, GENES_PER_SLOT)
        child = np.where(take[:GENOME_LENGTH], a, b)
        self.members[order[-1]] = Member(self._mutate(child), self.prior_weight)

    def _mutate(self, genome: np.ndarray) -> np.ndarray:
        return reflect(genome + self.rng.normal(0.0, self.mutation, genome.shape))
