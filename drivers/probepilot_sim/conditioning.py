"""How bias pulses and dips change the apex, and what they do to the surface.

The model (``docs/simulator.md`` has the tables and the calibration):

1. An action first *touches* the apex with probability ``change_probability``: a logistic in the
   pulse strength ``|V| (width / 200 ms)^0.2`` (half at 3 V) or in the dip depth (half at
   0.6 nm). Gentle actions often do nothing.
2. If it does, the new state is drawn from a table indexed by the action's class (mild / moderate
   / strong pulse, shallow / medium / deep dip) and the current state: moderate pulses are best
   at stabilising unstable tips, dips reshape double and blunt tips, strong pulses and deep dips
   scramble the apex and often blunt it. The weight of ``good`` is scaled by how hard the present
   apex is to fix (double tips with far-apart mini-tips, very wide blunt apexes) and by one
   global factor, :data:`GOOD_GAIN`, calibrated so that a uniformly random policy over
   :data:`~probepilot.model.DEFAULT_CONDITIONING_ACTIONS` needs a median of 10-15 actions from
   a random bad tip to a good one.
3. A new apex of the drawn state is generated (a different geometry even if the state stays).
4. Every dip, and every pulse that touched the apex, damages the surface under the tip: dips
   leave a crater with a rim and sometimes a cluster of tip material; positive pulses deposit a
   mound, negative pulses dig a pit. A dip deeper than the crash depth crashes the tip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probepilot.model import Dip, Pulse, TipState
from probepilot_sim import tip as tips
from probepilot_sim.features import Blobs
from probepilot_sim.tip import Apex

#: Global scale of the weight of a good outcome; calibrated (see module docstring).
GOOD_GAIN = 0.34

G, D, B, U = TipState.GOOD, TipState.DOUBLE, TipState.BLUNT, TipState.UNSTABLE

#: Outcome weights once an action touched the apex: TABLE[action class][from state][to state].
TABLE: dict[str, dict[TipState, dict[TipState, float]]] = {
    "mild pulse": {
        G: {G: 0.80, D: 0.08, B: 0.02, U: 0.10},
        D: {G: 0.10, D: 0.60, B: 0.10, U: 0.20},
        B: {G: 0.05, D: 0.15, B: 0.65, U: 0.15},
        U: {G: 0.20, D: 0.15, B: 0.05, U: 0.60},
    },
    "moderate pulse": {
        G: {G: 0.55, D: 0.15, B: 0.10, U: 0.20},
        D: {G: 0.18, D: 0.45, B: 0.15, U: 0.22},
        B: {G: 0.12, D: 0.20, B: 0.50, U: 0.18},
        U: {G: 0.35, D: 0.15, B: 0.10, U: 0.40},
    },
    "strong pulse": {
        G: {G: 0.30, D: 0.35, B: 0.20, U: 0.15},
        D: {G: 0.14, D: 0.41, B: 0.25, U: 0.20},
        B: {G: 0.14, D: 0.30, B: 0.36, U: 0.20},
        U: {G: 0.16, D: 0.34, B: 0.25, U: 0.25},
    },
    "shallow dip": {
        G: {G: 0.50, D: 0.25, B: 0.10, U: 0.15},
        D: {G: 0.24, D: 0.40, B: 0.16, U: 0.20},
        B: {G: 0.22, D: 0.25, B: 0.33, U: 0.20},
        U: {G: 0.18, D: 0.30, B: 0.14, U: 0.38},
    },
    "medium dip": {
        G: {G: 0.35, D: 0.25, B: 0.25, U: 0.15},
        D: {G: 0.18, D: 0.35, B: 0.30, U: 0.17},
        B: {G: 0.20, D: 0.25, B: 0.38, U: 0.17},
        U: {G: 0.15, D: 0.30, B: 0.30, U: 0.25},
    },
    "deep dip": {
        G: {G: 0.10, D: 0.20, B: 0.60, U: 0.10},
        D: {G: 0.06, D: 0.22, B: 0.60, U: 0.12},
        B: {G: 0.08, D: 0.20, B: 0.60, U: 0.12},
        U: {G: 0.06, D: 0.22, B: 0.58, U: 0.14},
    },
}


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def pulse_strength(voltage: float, width: float) -> float:
    """Effective strength (V) of a pulse: its magnitude, weakly growing with duration."""
    return float(abs(voltage) * (max(width, 1e-6) / 0.2) ** 0.2)


def action_class(action: Pulse | Dip) -> str:
    """Which row of :data:`TABLE` an action uses."""
    if isinstance(action, Pulse):
        s = pulse_strength(action.voltage, action.width)
        return "mild pulse" if s < 3.25 else "moderate pulse" if s < 6.0 else "strong pulse"
    d = action.depth
    return "shallow dip" if d < 1.5e-9 else "medium dip" if d < 3e-9 else "deep dip"


def change_probability(action: Pulse | Dip) -> float:
    """Probability that the action changes the apex at all."""
    if isinstance(action, Pulse):
        return _logistic((pulse_strength(action.voltage, action.width) - 3.0) / 0.6)
    return _logistic((action.depth - 0.6e-9) / 0.15e-9)


def difficulty(apex: Apex) -> float:
    """Factor (<= 1.5) on the good weight: far-apart double tips and wide blunt apexes are
    harder to fix."""
    if apex.state == TipState.DOUBLE:
        return math.exp(-max(apex.reach - 1.5e-9, 0.0) / 3e-9)
    if apex.state == TipState.BLUNT:
        return min(1.5, max(0.25, 0.7e-9 / max(t.width for t in apex.tips)))
    return 1.0


def outcome_weights(action: Pulse | Dip, apex: Apex) -> dict[TipState, float]:
    """Normalised probabilities of the next state, given that the action touched the apex."""
    row = dict(TABLE[action_class(action)][apex.state])
    if apex.state != TipState.GOOD:
        row[G] *= GOOD_GAIN * difficulty(apex)
    total = sum(row.values())
    return {s: w / total for s, w in row.items()}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: the new apex, whether it changed, the damage (blobs centred on the
    tip position, relative coordinates) and whether the tip crashed."""

    apex: Apex
    changed: bool
    damage: Blobs
    crashed: bool = False


def condition(
    apex: Apex, action: Pulse | Dip, rng: np.random.Generator, *, crash_depth: float = 6e-9
) -> Outcome:
    """Apply a pulse or a dip to ``apex``; draws from ``rng`` only."""
    if isinstance(action, Dip) and action.depth > crash_depth:
        new = tips.crashed(rng, tips.jump_length(rng, apex.length))
        return Outcome(new, True, crater(rng, action.depth, scale=3.0), crashed=True)
    touched = rng.random() < change_probability(action)
    if touched:
        weights = outcome_weights(action, apex)
        states = list(weights)
        pick = states[int(rng.choice(len(states), p=np.array([weights[s] for s in states])))]
        new = tips.make_apex(pick, rng, tips.jump_length(rng, apex.length))
    else:
        new = apex
    if isinstance(action, Dip):
        damage = crater(rng, action.depth)
    elif touched:
        damage = pulse_mark(rng, action.voltage)
    else:
        damage = Blobs()
    return Outcome(new, touched, damage)


def crater(rng: np.random.Generator, depth: float, scale: float = 1.0) -> Blobs:
    """A dip's crater: a Gaussian pit with a rim of piled-up atoms, sometimes a tip cluster."""
    d_nm = depth * 1e9
    sigma = (0.5 + 0.3 * min(d_nm, 5.0)) * 1e-9 * scale
    pit = -min(0.15 + 0.1 * d_nm, 0.8) * 1e-9 * scale
    n = 6
    angles = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(n) / n
    ring = 1.6 * sigma
    x = np.concatenate([[0.0], ring * np.cos(angles)])
    y = np.concatenate([[0.0], ring * np.sin(angles)])
    h = np.concatenate([[pit], np.full(n, -0.35 * pit)])
    s = np.concatenate([[sigma], np.full(n, 0.5 * sigma)])
    blobs = Blobs(x, y, h, s)
    if rng.random() < 0.5:  # tip material left next to the crater
        angle = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(1.0, 2.5) * sigma
        cluster = Blobs(
            np.array([r * math.cos(angle)]),
            np.array([r * math.sin(angle)]),
            np.array([rng.uniform(0.3e-9, 1.0e-9) * scale]),
            np.array([rng.uniform(0.5e-9, 1.0e-9) * scale]),
        )
        blobs = Blobs.concat([blobs, cluster])
    return blobs


def pulse_mark(rng: np.random.Generator, voltage: float) -> Blobs:
    """A pulse's mark: positive pulses deposit a mound of tip atoms, negative ones dig a pit."""
    sigma = (0.5 + 0.2 * abs(voltage)) * 1e-9
    height = rng.uniform(0.2e-9, 0.6e-9) if voltage > 0 else -rng.uniform(0.1e-9, 0.3e-9)
    jitter = rng.normal(0, 0.3e-9, 2)
    return Blobs(
        np.array([jitter[0]]), np.array([jitter[1]]), np.array([height]), np.array([sigma])
    )


# --------------------------------------------------------------------------------------------
# Calibration


def random_policy_episode(
    seed: int,
    actions: tuple[Pulse | Dip, ...] | None = None,
    *,
    max_actions: int = 1000,
) -> int:
    """Actions a uniformly random policy needs from a random bad tip to a good one."""
    from probepilot.model import DEFAULT_CONDITIONING_ACTIONS as DEFAULT_ACTIONS

    choices = actions or DEFAULT_ACTIONS
    rng = np.random.default_rng([seed, 0xCA11])
    apex = tips.make_apex("random", rng)
    for n in range(1, max_actions + 1):
        action = choices[int(rng.integers(len(choices)))]
        apex = condition(apex, action, rng).apex
        if apex.state == TipState.GOOD:
            return n
    return max_actions


def calibration_median(episodes: int = 500, first_seed: int = 0) -> float:
    """Median of :func:`random_policy_episode` over ``episodes`` seeds."""
    counts = [random_policy_episode(first_seed + i) for i in range(episodes)]
    return float(np.median(counts))
