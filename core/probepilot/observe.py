"""From analyzer findings to what a policy sees: the tip-state verdict and the run's counters.

The session, the conditioning episodes (``probepilot bench policies``, the gymnasium
environment) and ``probepilot replay`` all build observations here, so a policy sees the same
thing whether it is trained, benchmarked or running an instrument.

The tip state, in order of evidence:

1. a confident ``resolution`` finding that the frame does not resolve atoms means ``blunt``
   (physics: a sharp apex images the lattice, a blunt one smears it away);
2. a confident ``tip_state`` finding (the classifier) decides, except that it cannot call a
   frame blunt that the ``resolution`` check confidently found atomically resolved;
3. otherwise the other physics-based findings: a confident double-tip finding means ``double``,
   tip changes during the frame mean ``unstable``, and a frame that shows neither is ``good``.

Without any of these findings the state is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probepilot.contracts import Analyzer
from probepilot.model import (
    CONDITIONING_ACTIONS,
    Action,
    Finding,
    Frame,
    Observation,
    TipState,
)

#: Minimum confidence for a ``tip_state`` finding to decide the verdict on its own.
CLASSIFIER_CONFIDENCE = 0.5
#: Minimum confidence for a ``resolution`` finding to say blunt (or to veto the classifier's
#: blunt).
RESOLUTION_CONFIDENCE = 0.5
#: P(double) from the double-tip detector above which the tip is called double.
DOUBLE_THRESHOLD = 0.5
#: Confidence of a tip-change finding above which the tip is called unstable.
UNSTABLE_THRESHOLD = 0.5
#: Frames kept for the analyzers' history (the drift estimator needs the previous ones).
HISTORY = 8


def tip_state_from(findings: Sequence[Finding]) -> TipState:
    """The tip-state verdict of one frame's findings (see the module docstring)."""
    usable = [f for f in findings if f.values.get("status", "ok") == "ok"]
    resolved = [
        float(f.values.get("atomic", 1.0)) > 0.5
        for f in usable
        if f.kind == "resolution" and f.confidence >= RESOLUTION_CONFIDENCE
    ]
    if resolved and not any(resolved):
        return TipState.BLUNT
    classified = [f for f in usable if f.kind == "tip_state" and "state" in f.values]
    if classified:
        best = max(classified, key=lambda f: f.confidence)
        if best.confidence >= CLASSIFIER_CONFIDENCE:
            try:
                state = TipState(str(best.values["state"]))
            except ValueError:
                state = None  # an unknown label: fall back on the physics-based findings
            if state is not None and not (state == TipState.BLUNT and any(resolved)):
                return state
    judged = bool(resolved)
    for f in usable:
        if f.kind == "double_tip":
            judged = True
            if f.confidence >= DOUBLE_THRESHOLD:
                return TipState.DOUBLE
    for f in usable:
        if f.kind == "tip_change":
            judged = True
            if f.confidence >= UNSTABLE_THRESHOLD and float(f.values.get("count", 0)) > 0:
                return TipState.UNSTABLE
    return TipState.GOOD if judged else TipState.UNKNOWN


def clean_area_from(findings: Sequence[Finding]) -> float:
    """Side (m) of the largest clean square the roughness analyzer found, 0 if none."""
    sides = [
        float(f.values.get("clean_square", 0.0))
        for f in findings
        if f.kind == "roughness" and f.values.get("status", "ok") == "ok"
    ]
    return max(sides, default=0.0)


def run_analyzers(
    analyzers: Sequence[Analyzer], frame: Frame, history: Sequence[Frame]
) -> list[Finding]:
    """Every analyzer's findings on ``frame``, in order. Analyzers must not raise for a bad
    frame; one that does is a bug in that analyzer and propagates."""
    return [f for a in analyzers for f in a.analyze(frame, history)]


@dataclass
class ObservationTracker:
    """Turns each analysed frame into an :class:`Observation` and keeps the counters a policy
    needs: conditioning actions since the tip was last good, bad frames in a row.

    Call :meth:`observe` after each frame's analysis and :meth:`acted` after each action that
    reached the instrument.
    """

    actions_since_good: int = 0
    bad_frames_in_row: int = 0
    last: Observation | None = None

    def observe(
        self, frame: Frame | None, findings: Sequence[Finding], elapsed: float = 0.0
    ) -> Observation:
        state = tip_state_from(findings) if frame is not None else TipState.UNKNOWN
        if state == TipState.GOOD:
            self.actions_since_good = 0
            self.bad_frames_in_row = 0
        elif state != TipState.UNKNOWN:
            self.bad_frames_in_row += 1
        self.last = Observation(
            frame=frame,
            findings=tuple(findings),
            tip_state=state,
            actions_since_good=self.actions_since_good,
            bad_frames_in_row=self.bad_frames_in_row,
            clean_area=clean_area_from(findings),
            elapsed=elapsed,
        )
        return self.last

    def acted(self, action: Action) -> None:
        if isinstance(action, CONDITIONING_ACTIONS):
            self.actions_since_good += 1
