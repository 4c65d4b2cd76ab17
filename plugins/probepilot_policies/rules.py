"""The ``rules`` policy: what a careful microscopist does, written down as escalation tables.

When ``bad_frames`` of the last ``window`` judged frames looked bad, it works down an ordered
table of conditioning steps, ``repeats`` attempts per step, from gentle to harsh: each frame that
still shows the same problem after an attempt counts as a failed attempt and moves it on. At
the end of the table it moves to a fresh area (a coarse step: the surface under the tip may be
what spoils it) and starts the table again. When the tip looks good it forgets everything.

Tables are per observed tip state, because the cure depends on the problem: an unstable tip
(a loosely bound atom) is best calmed by moderate bias pulses, a double tip reshaped by shallow
dips that leave one apex, a blunt tip sharpened by dips that pick up a new apex; and strong
pulses or deep dips scramble any apex, so they come last. A state the analyzers cannot name
uses the general ``steps`` table, as does every state with ``per_state = false``. When the
observed state changes, the new state's table starts from its first step (the apex changed;
the gentle cure may work now).

The defaults (and their order) follow the simulator's conditioning model
(``docs/simulator.md``), which follows what real tip-conditioning loops report:

====================  =====================================================================
``unstable``          pulse -4 V, pulse +4 V, dip 1 nm, dip 1.2 nm, pulse -8 V, dip 1.8 nm,
                      move
``double``            dip 1 nm, dip 1.2 nm, dip 0.8 nm, dip 1.8 nm, pulse -4 V, dip 2.5 nm,
                      move
``blunt``             dip 1.2 nm, dip 1 nm, dip 1.8 nm, dip 2.5 nm, pulse +8 V, move
``steps`` (general)   pulse -4 V, pulse +4 V, dip 1 nm, dip 1.2 nm, dip 1.8 nm, dip 2.5 nm,
                      pulse -8 V, move
====================  =====================================================================

with ``bad_frames = 3`` (of the last 4: ``window`` defaults to ``bad_frames + 1``),
``trust_after = 4``, ``trust_features = 3``, ``double_evidence = 3`` and ``repeats = 2``. Once
conditioning, every frame that still looks bad gets the next attempt; after a conditioning the
verdict calls good, and at the end of an episode, the count starts afresh.

Against a double-tip verdict a trusted run weighs evidence instead of counting verdicts: the
double-tip detector's log-odds, log(P / (1 - P)) of its P(double), summed over the same window,
must reach ``double_evidence`` (3: odds of 20 to 1, a sequential probability ratio test over the
last frames). The detector's P is calibrated on balanced sets, so on a good tip it says 0.5-0.7
in about one frame in seven (a verdict "double" each time), while a real double tip mostly shows
0.9 and more: a count of three weak verdicts in four frames sets off conditioning of a good tip,
two confident frames are evidence enough, and good frames in between count against it. In the
endurance campaign's frames (12 simulated hours, seeds 0-7, recorded before this rule) it would
set off on 0.23 % of four-frame windows of a good tip, against 1.8 % for the count, and on 40 %
of a double tip's windows, against 33 %. Blunt and unstable verdicts are counted as before; a
frame without a double-tip finding makes the window fall back on the count.

Confirmation is for a tip with a good record. Waiting costs a few frames; a false alarm costs far
more: a dip or pulse spoils a good apex about half the time, and in the endurance campaign's
frames the per-frame verdict calls about one good frame in six bad. In 12 simulated hours of that
campaign (seed 0) the tip was truly good in 49 % of the frames when acting on the first bad one,
in 74 % with two bad frames in a row, 79 % with three in a row and 82 % with three of four
(Scanbot waits for five bad images). But a tip that has not yet shown ``trust_after`` good frames
in a row (the start of a run; the benchmark builds a policy per episode) has no record to weigh a
bad frame against, and waiting there only lets a bad tip spoil frames, all the more where the
verdict misses bad tips now and then (small frames, doubles seen only in some): so, as a
microscopist does with a fresh tip, the first bad frame is acted on. Trust, once earned, lasts the
run (the ends of conditioning episodes included): it says the run's frames can look good, so that
a lone bad verdict is more likely a false alarm. Against a double-tip verdict only good frames
that could have shown a ghost count: those in which the double-tip detector had at least
``trust_features`` features to look at (on a bare terrace a double tip looks as good as any, so
such frames say nothing for the tip; they do count against blunt and unstable verdicts). In the
policy benchmark's small frames this is what lets the rules act on the double tips they see, and
the run, whose frames hold more features, earns trust as before. A longer probation for every
verdict does not pay: with ``trust_after = 10``, or with featureless good frames counting for no
verdict at all, the policy benchmark meets its target, but in the endurance campaign a run whose
false alarms keep spoiling the tip may never earn trust (12 simulated hours, seed 2: the tip truly
good in 42 % of the frames, against 75 % now).

A step is ``"pulse <voltage> [<width>]"`` (200 ms by default), ``"dip <depth> [<bias>]"`` (0 V
by default) or ``"move"``; quantities take units (``"pulse -4 V 100 ms"``, ``"dip 1.2 nm"``,
``"dip 1.2 nm -0.5 V"``). Every action still passes the safety envelope.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Literal

from probepilot.model import (
    Action,
    CoarseStep,
    Dip,
    KeepImaging,
    Observation,
    Outcome,
    Pulse,
    TipState,
)
from probepilot.options import Doc, Range
from probepilot.safety import HARD_MAX_DIP_DEPTH, HARD_MAX_PULSE, HARD_MAX_PULSE_WIDTH
from probepilot.units import UnitError, parse_quantity

__all__ = [
    "DEFAULT_BLUNT",
    "DEFAULT_DOUBLE",
    "DEFAULT_STEPS",
    "DEFAULT_UNSTABLE",
    "MOVE",
    "RulesOptions",
    "RulesPolicy",
    "parse_step",
]

#: The table entry that moves to a fresh area.
MOVE = "move"
#: Width of a pulse step that names none (s): the default conditioning set's 200 ms.
DEFAULT_PULSE_WIDTH = 0.2

DEFAULT_UNSTABLE: tuple[str, ...] = (
    "pulse -4 V",
    "pulse +4 V",
    "dip 1 nm",
    "dip 1.2 nm",
    "pulse -8 V",
    "dip 1.8 nm",
    MOVE,
)
DEFAULT_DOUBLE: tuple[str, ...] = (
    "dip 1 nm",
    "dip 1.2 nm",
    "dip 0.8 nm",
    "dip 1.8 nm",
    "pulse -4 V",
    "dip 2.5 nm",
    MOVE,
)
DEFAULT_BLUNT: tuple[str, ...] = (
    "dip 1.2 nm",
    "dip 1 nm",
    "dip 1.8 nm",
    "dip 2.5 nm",
    "pulse +8 V",
    MOVE,
)
DEFAULT_STEPS: tuple[str, ...] = (
    "pulse -4 V",
    "pulse +4 V",
    "dip 1 nm",
    "dip 1.2 nm",
    "dip 1.8 nm",
    "dip 2.5 nm",
    "pulse -8 V",
    MOVE,
)

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"\s*({_NUMBER})\s*([^\s\d+\-.][^\s]*)\s*")
_FORMS = "'pulse <voltage> [<width>]', 'dip <depth> [<bias>]' or 'move'"

Step = Pulse | Dip | Literal["move"]


def _quantities(text: str, entry: str) -> list[tuple[str, float]]:
    """``"-4 V 100 ms"`` -> ``[("V", -4.0), ("s", 0.1)]``; each quantity must carry a unit."""
    found: list[tuple[str, float]] = []
    pos = 0
    while pos < len(text):
        match = _QUANTITY.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot read {entry!r}: expected {_FORMS}")
        quantity = f"{match[1]} {match[2]}"
        for unit in ("V", "s", "m"):
            try:
                found.append((unit, parse_quantity(quantity, unit)))
                break
            except UnitError:
                continue
        else:
            raise ValueError(f"cannot read {quantity!r} in {entry!r}: expected {_FORMS}")
        pos = match.end()
    return found


def parse_step(entry: str) -> Step:
    """One table entry as an action (or :data:`MOVE`).

    :raises ValueError: naming the entry and the forms it may take, or the hard ceiling it
        exceeds (:mod:`probepilot.safety`).
    """
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a step: expected {_FORMS}")
    words = entry.strip().split(maxsplit=1)
    kind = words[0].lower() if words else ""
    rest = words[1] if len(words) > 1 else ""
    if kind == MOVE and not rest.strip():
        return MOVE
    if kind not in ("pulse", "dip"):
        raise ValueError(f"cannot read {entry!r}: expected {_FORMS}")
    values: dict[str, float] = {}
    for unit, value in _quantities(rest, entry):
        if unit in values:
            raise ValueError(f"{entry!r} gives two quantities in {unit}")
        values[unit] = value
    if kind == "pulse":
        if "V" not in values or "m" in values:
            raise ValueError(f"{entry!r}: a pulse takes a voltage and optionally a width")
        voltage, width = values["V"], values.get("s", DEFAULT_PULSE_WIDTH)
        if not 0 < abs(voltage) <= HARD_MAX_PULSE:
            raise ValueError(f"{entry!r}: |voltage| must be above 0 and at most {HARD_MAX_PULSE} V")
        if not 0 < width <= HARD_MAX_PULSE_WIDTH:
            raise ValueError(f"{entry!r}: the width must be above 0 and at most 1 s")
        return Pulse(voltage=voltage, width=width)
    if "m" not in values or "s" in values:
        raise ValueError(f"{entry!r}: a dip takes a depth and optionally a bias")
    depth, bias = values["m"], values.get("V", 0.0)
    if not 0 < depth <= HARD_MAX_DIP_DEPTH:
        raise ValueError(f"{entry!r}: the depth must be above 0 and at most 10 nm")
    if abs(bias) > HARD_MAX_PULSE:
        raise ValueError(f"{entry!r}: |bias| must be at most {HARD_MAX_PULSE} V")
    return Dip(depth=depth, bias=bias)


def _table(name: str, entries: list[str]) -> tuple[Step, ...]:
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(f"{name}: the table needs at least one step")
    steps: list[Step] = []
    for i, entry in enumerate(entries):
        try:
            steps.append(parse_step(entry))
        except ValueError as exc:
            raise ValueError(f"{name}[{i}]: {exc}") from None
    return tuple(steps)


@dataclass(frozen=True)
class RulesOptions:
    """The ``[policies.rules]`` table (see the module docstring for the defaults' reasons)."""

    bad_frames: Annotated[
        int,
        Range(1, 1000),
        Doc("bad frames among the last `window` judged ones before conditioning starts"),
    ] = 3
    window: Annotated[
        int | None,
        Range(1, 1000),
        Doc(
            "judged frames among which `bad_frames` must look bad, at least bad_frames "
            "(default: bad_frames + 1, so one missed detection does not restart the count)"
        ),
    ] = None
    trust_after: Annotated[
        int,
        Range(0, 1000),
        Doc(
            "good frames in a row that earn the run trust; until then (at the start of a run) "
            "the first bad frame is acted on, after that bad_frames of window must look bad; "
            "trust lasts the run (0: always ask for bad_frames of window)"
        ),
    ] = 4
    trust_features: Annotated[
        int,
        Range(0, 1000),
        Doc(
            "against a double-tip verdict, a good frame counts toward trust only when the "
            "double-tip detector had at least this many features to look at (a frame with "
            "nothing a ghost could copy cannot show a double tip); 0: every good frame counts"
        ),
    ] = 3
    double_evidence: Annotated[
        float,
        Range(0.0, 100.0),
        Doc(
            "against a double-tip verdict, once the run has earned trust: the double-tip "
            "detector's log-odds, summed over the last `window` judged frames, that start "
            "conditioning (3: odds of 20 to 1); 0: count bad verdicts as for other states"
        ),
    ] = 3.0
    repeats: Annotated[
        int, Range(1, 100), Doc("attempts of each step before escalating to the next")
    ] = 2
    per_state: Annotated[
        bool,
        Doc("use the double/blunt/unstable tables for those states (false: `steps` for all)"),
    ] = True
    steps: Annotated[
        list[str],
        Doc(
            "general escalation table, for bad tips of no named state (or all, without "
            "per_state): 'pulse <V> [<width>]', 'dip <depth> [<bias>]' or 'move'"
        ),
    ] = field(default_factory=lambda: list(DEFAULT_STEPS))
    unstable: Annotated[list[str], Doc("escalation table for an unstable tip")] = field(
        default_factory=lambda: list(DEFAULT_UNSTABLE)
    )
    double: Annotated[list[str], Doc("escalation table for a double tip")] = field(
        default_factory=lambda: list(DEFAULT_DOUBLE)
    )
    blunt: Annotated[list[str], Doc("escalation table for a blunt tip")] = field(
        default_factory=lambda: list(DEFAULT_BLUNT)
    )
    move_axis: Annotated[
        Literal["x+", "x-", "y+", "y-"], Doc("coarse-step direction of a 'move' step")
    ] = "x+"
    move_steps: Annotated[
        int, Range(1, 1000), Doc("coarse steps of a 'move' step (to a fresh area)")
    ] = 1

    def __post_init__(self) -> None:
        if self.window is not None and self.window < self.bad_frames:
            raise ValueError(
                f"window = {self.window} is less than bad_frames = {self.bad_frames}: the "
                "window must hold that many frames"
            )
        for name in ("steps", "unstable", "double", "blunt"):
            _table(name, getattr(self, name))

    def tables(self) -> dict[TipState, tuple[Step, ...]]:
        """The parsed tables by observed state; :attr:`TipState.UNKNOWN` is the general one."""
        general = _table("steps", self.steps)
        out = {state: general for state in (TipState.DOUBLE, TipState.BLUNT, TipState.UNSTABLE)}
        if self.per_state:
            out[TipState.DOUBLE] = _table("double", self.double)
            out[TipState.BLUNT] = _table("blunt", self.blunt)
            out[TipState.UNSTABLE] = _table("unstable", self.unstable)
        out[TipState.UNKNOWN] = general
        return out


class RulesPolicy:
    """Escalation tables (see the module docstring). Deterministic: no random choices."""

    name = "rules"

    def __init__(self, options: RulesOptions | None = None) -> None:
        self.options = options or RulesOptions()
        self.tables = self.options.tables()
        # Each table unrolled: every action ``repeats`` times, a move once.
        self._sequences = {
            state: tuple(
                entry
                for step in table
                for entry in ([step] if step == MOVE else [step] * self.options.repeats)
            )
            for state, table in self.tables.items()
        }
        self._state: TipState | None = None
        self._attempts = 0
        self._acted = False
        # Whether each of the last `window` judged frames looked bad (unknown ones do not count).
        window = self.options.window or self.options.bad_frames + 1
        self._recent: deque[bool] = deque(maxlen=window)
        # The double-tip detector's log-odds on the same frames (None: it gave no finding).
        self._double_odds: deque[float | None] = deque(maxlen=window)
        # Good verdicts in a row so far, and whether they have earned trust this run: against
        # a double-tip verdict only frames that could have shown a ghost count (see _telling),
        # against the others every good frame.
        self._good_run = self._telling_run = 0
        self._trusted = self._trusted_double = self.options.trust_after == 0

    @property
    def attempts(self) -> int:
        """Failed attempts on the present state since its table (re)started."""
        return self._attempts

    def reset(self) -> None:
        """Forget the escalation (the tip is good, or a new run starts)."""
        self._state = None
        self._attempts = 0
        self._acted = False

    def decide(self, observation: Observation) -> Action:
        state = observation.tip_state
        if state != TipState.UNKNOWN:
            self._recent.append(state != TipState.GOOD)
            self._double_odds.append(_double_log_odds(observation))
            if state != TipState.GOOD:
                self._good_run = self._telling_run = 0
            else:
                self._good_run += 1
                # A good frame with nothing a ghost could copy neither counts nor breaks a run.
                self._telling_run += self._telling(observation)
            self._trusted |= self._good_run >= self.options.trust_after
            self._trusted_double |= self._telling_run >= self.options.trust_after
        if state in (TipState.GOOD, TipState.UNKNOWN):
            # Good: nothing to do. Unknown: nothing judged the frame; do not act blind.
            if state == TipState.GOOD:
                if self._state is not None:
                    # Conditioning worked: the bad frames before it say nothing about this apex.
                    self._recent.clear()
                    self._double_odds.clear()
                self.reset()
            return KeepImaging()
        # A tip with no good record yet is as likely bad as good: one bad frame says enough.
        trusted = self._trusted_double if state == TipState.DOUBLE else self._trusted
        if not self._confirmed(state, trusted):
            self._acted = False
            return KeepImaging()
        if state != self._state:
            self._state = state
            self._attempts = 0
        elif self._acted:
            self._attempts += 1  # the same problem after an attempt: that attempt failed
        sequence = self._sequences.get(state, self._sequences[TipState.UNKNOWN])
        step = sequence[self._attempts % len(sequence)]
        self._acted = True
        if step == MOVE:
            return CoarseStep(axis=self.options.move_axis, steps=self.options.move_steps)
        return step

    def _confirmed(self, state: TipState, trusted: bool) -> bool:
        """Whether the recent frames say enough to act on a ``state`` verdict."""
        if not trusted or self._state is not None:
            # No good record to weigh this bad frame against; or conditioning is under way
            # and the tip has not looked good since: the next attempt is due.
            return True
        evidence = self.options.double_evidence
        odds = [o for o in self._double_odds if o is not None]
        if state == TipState.DOUBLE and evidence > 0 and len(odds) == len(self._recent):
            return sum(odds) >= evidence
        return sum(self._recent) >= self.options.bad_frames

    def _telling(self, observation: Observation) -> bool:
        """Whether a good verdict on this frame says much: the double-tip detector had
        ``trust_features`` features to look for ghosts of (without its finding, every frame
        counts)."""
        finding = observation.finding("double_tip")
        if finding is None or self.options.trust_features == 0:
            return True
        features = finding.values.get("features")
        return isinstance(features, int | float) and features >= self.options.trust_features

    def feedback(self, outcome: Outcome) -> None:
        """The tables do not learn; the end of an episode resets the escalation (a good tip
        seen by :meth:`decide` does too)."""
        if outcome.done:
            self.reset()
            # The next episode is another tip. Trust stays: it says this run's frames can look
            # good, so that a lone bad verdict is more likely a false alarm than a bad tip.
            self._recent.clear()
            self._double_odds.clear()


#: Log-odds bound of one frame: a detector's P(double) of 0 or 1 is never that certain.
_MAX_LOG_ODDS = 6.0


def _double_log_odds(observation: Observation) -> float | None:
    """log(P / (1 - P)) of the frame's double-tip finding (P: its confidence), bounded; None
    without a usable finding."""
    finding = observation.finding("double_tip")
    if finding is None or finding.values.get("status", "ok") != "ok":
        return None
    p = min(max(float(finding.confidence), 0.0), 1.0)
    bound = _MAX_LOG_ODDS
    if p <= 1.0 / (1.0 + math.exp(bound)):
        return -bound
    if p >= 1.0 / (1.0 + math.exp(-bound)):
        return bound
    return math.log(p / (1.0 - p))
