"""The tip apex: one or more mini-tips, and the random apexes of each tip state.

A mini-tip sits at a lateral offset ``(dx, dy)`` from the main apex and ``dz`` above it (a
retracted mini-tip carries exponentially less current: ``exp(-2 kappa dz)`` relative weight), and
has a Gaussian ``width`` that blurs what it sees. ``length`` is how far the whole apex protrudes
relative to the tip it replaced: when the apex grows by a picked-up atom the feedback retracts by
the same amount, which is the jump a tip change leaves in Z.

States (:class:`~probepilot.model.TipState`) are the ground truth a microscopist's label would
give: ``good`` one sharp mini-tip (secondary ones, if any, retracted far enough to be invisible),
``double`` two or three comparable sharp mini-tips a few tenths of a nm to a few nm apart (ghost
images at their offsets), ``blunt`` a wide apex (smeared images, no atomic resolution),
``unstable`` a usable-looking apex that changes spontaneously during scans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from probepilot.model import TipState
from probepilot_sim.spectroscopy import DOS

BAD_STATES: tuple[TipState, ...] = (TipState.DOUBLE, TipState.BLUNT, TipState.UNSTABLE)


@dataclass(frozen=True, slots=True)
class MiniTip:
    """One protrusion of the apex; lengths in metres."""

    dx: float = 0.0
    dy: float = 0.0
    dz: float = 0.0
    width: float = 0.03e-9


@dataclass(frozen=True, slots=True)
class Apex:
    """The whole apex and what it does to spectra.

    ``change_rate`` is the probability per scan line of a spontaneous apex change. ``smear``
    (eV) broadens the sample's DOS in spectra; ``dos`` is the tip's own DOS.
    """

    state: TipState
    tips: tuple[MiniTip, ...]
    length: float = 0.0
    change_rate: float = 1e-4
    smear: float = 0.01
    dos: DOS = field(default_factory=DOS)

    @property
    def widths(self) -> tuple[float, ...]:
        return tuple(sorted({t.width for t in self.tips}))

    @property
    def reach(self) -> float:
        """Largest lateral offset of any mini-tip (m)."""
        return max((math.hypot(t.dx, t.dy) for t in self.tips), default=0.0)

    def with_length(self, length: float) -> Apex:
        return replace(self, length=length)


def good(rng: np.random.Generator, length: float = 0.0) -> Apex:
    """A single sharp mini-tip; sometimes a far-retracted second one (invisible in images)."""
    width = rng.uniform(0.02e-9, 0.045e-9)
    tips = [MiniTip(width=width)]
    if rng.random() < 0.3:
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.5e-9, 2e-9)
        tips.append(
            MiniTip(
                dist * math.cos(angle), dist * math.sin(angle), rng.uniform(0.3e-9, 0.5e-9), width
            )
        )
    return Apex(TipState.GOOD, tuple(tips), length, change_rate=1e-4, smear=0.01)


def double(rng: np.random.Generator, length: float = 0.0) -> Apex:
    """Two (sometimes three) comparable sharp mini-tips 0.6-3 nm apart."""
    width = rng.uniform(0.03e-9, 0.06e-9)
    tips = [MiniTip(width=width)]
    for _ in range(2 if rng.random() < 0.2 else 1):
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.6e-9, 3.0e-9)
        # dz up to 60 pm: the ghost carries 30-100 % of the main apex's current.
        tips.append(
            MiniTip(dist * math.cos(angle), dist * math.sin(angle), rng.uniform(0, 0.06e-9), width)
        )
    return Apex(TipState.DOUBLE, tuple(tips), length, change_rate=2e-4, smear=0.03)


def blunt(rng: np.random.Generator, length: float = 0.0, scale: float = 1.0) -> Apex:
    """A wide apex (0.35-1.2 nm Gaussian width times ``scale``) and a smeared, featured DOS."""
    width = rng.uniform(0.35e-9, 1.2e-9) * scale
    tips = [MiniTip(width=width)]
    if scale > 1 or rng.random() < 0.3:  # a rough, multi-lobed blunt apex
        for _ in range(int(rng.integers(1, 4))):
            angle = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(0.5, 1.5) * width
            tips.append(
                MiniTip(
                    dist * math.cos(angle), dist * math.sin(angle), rng.uniform(0, 0.1e-9), width
                )
            )
    peaks = ((float(rng.uniform(-1.0, 1.0)), 0.15, float(rng.uniform(0.2, 0.8))),)
    return Apex(
        TipState.BLUNT,
        tuple(tips),
        length,
        change_rate=3e-4,
        smear=float(rng.uniform(0.12, 0.3)),
        dos=DOS(peaks=peaks),
    )


def unstable(rng: np.random.Generator, length: float = 0.0) -> Apex:
    """A sharp-looking apex (sometimes with a faint ghost) that changes every few tens of lines."""
    width = rng.uniform(0.03e-9, 0.07e-9)
    tips = [MiniTip(width=width)]
    if rng.random() < 0.4:
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.5e-9, 2e-9)
        tips.append(
            MiniTip(
                dist * math.cos(angle), dist * math.sin(angle), rng.uniform(0.08e-9, 0.15e-9), width
            )
        )
    peaks = ((float(rng.uniform(-0.8, 0.8)), 0.08, float(rng.uniform(0.1, 0.5))),)
    return Apex(
        TipState.UNSTABLE,
        tuple(tips),
        length,
        change_rate=float(rng.uniform(0.01, 0.04)),
        smear=float(rng.uniform(0.04, 0.1)),
        dos=DOS(peaks=peaks),
    )


MAKERS = {
    TipState.GOOD: good,
    TipState.DOUBLE: double,
    TipState.BLUNT: blunt,
    TipState.UNSTABLE: unstable,
}


def make_apex(state: TipState | str, rng: np.random.Generator, length: float = 0.0) -> Apex:
    """A random apex of ``state`` (``"random"`` picks one of the bad states)."""
    if state == "random":
        state = BAD_STATES[int(rng.integers(len(BAD_STATES)))]
    return MAKERS[TipState(state)](rng, length)


def crashed(rng: np.random.Generator, length: float) -> Apex:
    """What is left after the tip ran into the surface: very blunt and multi-lobed."""
    return blunt(rng, length, scale=float(rng.uniform(2.0, 4.0)))


def jump_length(rng: np.random.Generator, length: float) -> float:
    """New apex length after a change: 30-150 pm longer or shorter (atoms gained or lost)."""
    return length + float(rng.choice((-1.0, 1.0)) * rng.uniform(0.03e-9, 0.15e-9))


# Where a spontaneous change (during a scan) leads; rows: from, columns: to.
SPONTANEOUS: dict[TipState, dict[TipState, float]] = {
    TipState.UNSTABLE: {
        TipState.UNSTABLE: 0.72,
        TipState.DOUBLE: 0.12,
        TipState.BLUNT: 0.08,
        TipState.GOOD: 0.08,
    },
    TipState.GOOD: {
        TipState.GOOD: 0.3,
        TipState.DOUBLE: 0.3,
        TipState.BLUNT: 0.2,
        TipState.UNSTABLE: 0.2,
    },
    TipState.DOUBLE: {
        TipState.DOUBLE: 0.5,
        TipState.UNSTABLE: 0.25,
        TipState.BLUNT: 0.15,
        TipState.GOOD: 0.1,
    },
    TipState.BLUNT: {
        TipState.BLUNT: 0.6,
        TipState.UNSTABLE: 0.2,
        TipState.DOUBLE: 0.15,
        TipState.GOOD: 0.05,
    },
}


def spontaneous_change(apex: Apex, rng: np.random.Generator) -> Apex:
    """The apex after a sudden change during scanning (an atom jumps on or off the apex)."""
    table = SPONTANEOUS.get(apex.state, SPONTANEOUS[TipState.UNSTABLE])
    states = list(table)
    probs = np.array([table[s] for s in states])
    new = states[int(rng.choice(len(states), p=probs / probs.sum()))]
    return make_apex(new, rng, jump_length(rng, apex.length))
