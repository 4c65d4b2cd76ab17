"""Conditioning recipes: what the ``ga`` policy evolves and ships.

A recipe says, for each tip state the analyzers can report, how to condition the tip: a
*distribution* over one bias pulse (voltage, width, polarity) and one dip (depth), mixed with
probability ``p_dip``. Distributions rather than single actions because the observed state is an
estimate: when the analyzers mistake a blunt tip for a double one, a mixture still helps, and the
genetic algorithm is free to make a slot pure (``p_dip`` at 0 or 1) when that is best.

Slots are the bad states (``double``, ``blunt``, ``unstable``) and a ``fallback``: after
``patience`` actions in a row that left the observed state unchanged, the next action comes from
the fallback slot instead. It is the recipe's escape from a state its usual cure does not fix
(a double tip whose apexes are far apart, a very wide blunt apex, or a state the analyzers keep
misjudging), and the genetic algorithm decides whether it is worth having (a ``patience`` at the
top of its range switches it off in practice).

The genetic algorithm works on a *genome*: every gene in [0, 1], mapped linearly onto its
bounds (:data:`GENES`). The bounds stay inside the default safety envelope
(:class:`~probepilot.safety.SafetyLimits`: pulses up to 8 V and 500 ms, dips up to 5 nm), so no
evolved recipe can ask for an action the default envelope would reject.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.errors import ConfigError
from probepilot.model import Dip, Pulse, TipState
from probepilot.safety import SafetyLimits

#: The recipe's slots, in genome order.
SLOTS: tuple[str, ...] = ("double", "blunt", "unstable", "fallback")

_LIMITS = SafetyLimits()


@dataclass(frozen=True, slots=True)
class Gene:
    """One evolvable parameter of a slot: its name, bounds (SI units) and meaning."""

    name: str
    low: float
    high: float
    doc: str


#: The genes of one slot, in genome order.
GENES: tuple[Gene, ...] = (
    Gene("p_dip", 0.0, 1.0, "probability of a dip rather than a pulse"),
    Gene("voltage", 1.0, _LIMITS.max_pulse, "pulse magnitude (V)"),
    Gene("width", 0.01, _LIMITS.max_pulse_width, "pulse duration (s)"),
    Gene("depth", 0.3e-9, _LIMITS.max_dip_depth, "dip depth (m)"),
    Gene("p_negative", 0.0, 1.0, "probability that a pulse is negative"),
)
GENES_PER_SLOT = len(GENES)
#: The last gene of a genome: actions in the same observed state before the fallback slot.
PATIENCE = Gene("patience", 2.0, 30.0, "actions in one observed state before the fallback")
#: Length of a whole recipe's genome.
GENOME_LENGTH = GENES_PER_SLOT * len(SLOTS) + 1

#: Bias during a recipe's dips (V): at 0 V, as in the default action set.
DIP_BIAS = 0.0
#: Identifies recipe files.
FORMAT = "probepilot-ga-recipe"
VERSION = 1


@dataclass(frozen=True, slots=True)
class SlotRecipe:
    """How to condition a tip in one observed state (SI units)."""

    p_dip: float
    voltage: float
    width: float
    depth: float
    p_negative: float

    def sample(self, rng: np.random.Generator) -> Pulse | Dip:
        """Draw one action from this slot's distribution."""
        if rng.random() < self.p_dip:
            return Dip(depth=self.depth, bias=DIP_BIAS)
        sign = -1.0 if rng.random() < self.p_negative else 1.0
        return Pulse(voltage=sign * self.voltage, width=self.width)

    def as_dict(self) -> dict[str, float]:
        return {g.name: float(getattr(self, g.name)) for g in GENES}


@dataclass(frozen=True, slots=True)
class Recipe:
    """One :class:`SlotRecipe` per slot of :data:`SLOTS`, and the fallback's ``patience``."""

    slots: Mapping[str, SlotRecipe]
    patience: int = 30

    def slot_for(self, state: TipState, streak: int = 0) -> SlotRecipe:
        """The slot for an observed bad state after ``streak`` actions that left it unchanged
        (the fallback once the streak reaches ``patience``, or for a state without a slot)."""
        if streak >= self.patience or state.value not in self.slots:
            return self.slots["fallback"]
        return self.slots[state.value]

    def action(self, state: TipState, rng: np.random.Generator, streak: int = 0) -> Pulse | Dip:
        return self.slot_for(state, streak).sample(rng)

    # -- genome ------------------------------------------------------------------------------

    @classmethod
    def from_genome(cls, genome: np.ndarray) -> Recipe:
        """Decode a genome (genes in [0, 1], clipped) into a recipe."""
        flat = np.clip(np.asarray(genome, dtype=float).ravel(), 0, 1)
        if flat.shape != (GENOME_LENGTH,):
            raise ValueError(f"a recipe genome has {GENOME_LENGTH} genes, not {flat.size}")
        g = flat[:-1].reshape(len(SLOTS), GENES_PER_SLOT)
        patience = round(PATIENCE.low + flat[-1] * (PATIENCE.high - PATIENCE.low))
        slots = {}
        for name, row in zip(SLOTS, g, strict=True):
            values = {
                gene.name: float(gene.low + x * (gene.high - gene.low))
                for gene, x in zip(GENES, row, strict=True)
            }
            slots[name] = SlotRecipe(**values)
        return cls(slots, patience)

    def genome(self) -> np.ndarray:
        """The inverse of :meth:`from_genome`."""
        out = np.empty((len(SLOTS), GENES_PER_SLOT))
        for i, name in enumerate(SLOTS):
            slot = self.slots[name]
            for j, gene in enumerate(GENES):
                out[i, j] = (getattr(slot, gene.name) - gene.low) / (gene.high - gene.low)
        p = (self.patience - PATIENCE.low) / (PATIENCE.high - PATIENCE.low)
        genome: np.ndarray = np.clip(np.append(out.ravel(), p), 0.0, 1.0)
        return genome

    # -- files -------------------------------------------------------------------------------

    def to_json(self, meta: Mapping[str, Any] | None = None) -> str:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "units": {"voltage": "V", "width": "s", "depth": "m"},
            "slots": {name: self.slots[name].as_dict() for name in SLOTS},
            "patience": self.patience,
            "meta": dict(meta or {}),
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<recipe>") -> Recipe:
        """Parse a recipe file; :class:`ConfigError` naming the file and what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not a JSON recipe file: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a probepilot GA recipe (format != {FORMAT!r})")
        slots: dict[str, SlotRecipe] = {}
        for name in SLOTS:
            table = doc.get("slots", {}).get(name)
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: slots.{name} is missing")
            values = {}
            for gene in GENES:
                value = table.get(gene.name)
                number = float(value) if isinstance(value, int | float) else math.nan
                if not gene.low <= number <= gene.high:  # also refuses NaN
                    raise ConfigError(
                        f"{source}: slots.{name}.{gene.name} = {value!r}: expected a number "
                        f"in [{gene.low:g}, {gene.high:g}] ({gene.doc})"
                    )
                values[gene.name] = number
            slots[name] = SlotRecipe(**values)
        patience = doc.get("patience")
        if (
            not isinstance(patience, int)
            or isinstance(patience, bool)
            or not PATIENCE.low <= patience <= PATIENCE.high
        ):
            raise ConfigError(
                f"{source}: patience = {patience!r}: expected an integer in "
                f"[{PATIENCE.low:g}, {PATIENCE.high:g}] ({PATIENCE.doc})"
            )
        return cls(slots, patience)

    @classmethod
    def load(cls, path: Path) -> Recipe:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the GA recipe: {exc.strerror}") from None
        return cls.from_json(text, str(path))

    def describe(self) -> str:
        """One line per slot, for progress messages and the README."""
        lines = []
        for name in SLOTS:
            s = self.slots[name]
            lines.append(
                f"{name:>8}: dip {s.p_dip:4.0%} at {s.depth * 1e9:.2f} nm, else pulse "
                f"{s.voltage:.2f} V {s.width * 1e3:.0f} ms ({s.p_negative:.0%} negative)"
            )
        lines.append(f"fallback after {self.patience} actions in one observed state")
        return "\n".join(lines)


def read_meta(path: Path) -> dict[str, Any]:
    """The ``meta`` table of a recipe file (training settings and measured costs)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    meta = doc.get("meta", {})
    return dict(meta) if isinstance(meta, dict) else {}
