"""Tip-conditioning episodes: one bad tip, a policy, and the loop that conditions it good.

An episode is the laboratory unit for comparing and training conditioning policies
(``probepilot bench policies``, the gymnasium environment ``probepilot/Conditioning-v0``, the
genetic algorithm's fitness): a freshly seeded simulated microscope starts with a random *bad*
tip, and every step is what the autonomous run does when the tip is bad:

    policy -> safety envelope -> act (at a conditioning spot) -> scan a fresh area -> analyse
    -> observation

Why it looks the way it does:

* **The safety envelope sits between the policy and the driver**, exactly as in a run: a
  rejected action never reaches the instrument (:attr:`Step.verdict` says why). Its conditioning
  rate limit counts *simulated* seconds (the frames' timestamps), not wall-clock seconds, so an
  episode that runs a thousand times faster than an instrument still obeys "at most N pulses and
  dips per minute". When the limit would reject an action the episode by default *waits* (the
  microscope idles, tunnelling, and the waiting time is added to :attr:`Step.sim_time`), as an
  instrument operator would; :attr:`EpisodeSettings.wait_for_rate_limit` turns that off.
* **Conditioning damages the surface** (craters, mounds, pits), so the episode conditions at the
  clean spot of the frame just imaged (the roughness analyzer's largest clean square, else the
  frame's centre) and images the next frame on a fresh cell of a square spiral around the
  piezo's centre, cells ``spacing`` frame sizes apart: a frame never shows an earlier crater.
* **Ground truth only scores.** The simulator reports the tip state at the start of every frame
  (``frame.metadata["sim_tip_state"]``); the episode uses it to end and score episodes
  (:attr:`Step.truth`), never as the policy's input, which is the :class:`Observation` built by
  :class:`~probepilot.observe.ObservationTracker` from the analyzers' findings, as in a run.

:func:`run_episode` plays one episode with any :class:`~probepilot.contracts.Policy`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probepilot.actions import perform
from probepilot.config import Config
from probepilot.contracts import Analyzer, Driver, Policy
from probepilot.errors import ConfigError, InstrumentError, NotConnectedError
from probepilot.model import (
    CONDITIONING_ACTIONS,
    Action,
    Dip,
    Frame,
    InstrumentLimits,
    KeepImaging,
    Observation,
    Outcome,
    Pulse,
    Scan,
    ScanArea,
    ScanSettings,
    TipState,
)
from probepilot.observe import HISTORY, ObservationTracker, run_analyzers
from probepilot.plugins import PluginManager
from probepilot.safety import CONDITIONING_WINDOW, EnvelopeState, SafetyEnvelope, Verdict

__all__ = [
    "ACTION_REWARD",
    "GOOD_REWARD",
    "ConditioningEpisode",
    "EpisodeResult",
    "EpisodeSettings",
    "Step",
    "describe_action",
    "required_clean_side",
    "run_episode",
]

#: Reward for each conditioning action (pulse or dip): every one costs time and risks the tip.
ACTION_REWARD = -1.0
#: Reward when the tip becomes good.
GOOD_REWARD = 10.0


@dataclass(frozen=True)
class EpisodeSettings:
    """How an episode images and when it gives up. SI units.

    ``driver_options`` are extra option overrides for the driver (raw config values, unit
    strings allowed); for the simulator the episode already sets ``seed`` (the episode's seed),
    ``tip = "random"`` (a random bad tip) and ``time_scale = 0`` (as fast as possible), which
    ``driver_options`` may override.
    """

    max_actions: int = 50
    """Give up after this many conditioning actions (pulses and dips asked for)."""
    pixels: int = 64
    """Pixels and lines of the evaluation frames."""
    size: float = 10e-9
    """Side (m) of the evaluation frames."""
    line_time: float = 0.05
    """Seconds per line (one direction)."""
    driver: str = "sim"
    """The driver plugin; episodes are meant for the simulator (ground truth ends them)."""
    driver_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra option overrides for the driver."""
    max_scans: int = 50
    """Give up after this many frames imaged without conditioning (the policy kept imaging,
    e.g. because the analyzers did not see that the tip is bad): otherwise a policy that never
    acts would never end its episode."""
    spacing: float = 2.0
    """Distance between the centres of consecutive frames, in frame sizes (> 1 leaves a gap
    so the damage of a conditioning spot never shows in the next frame)."""
    wait_for_rate_limit: bool = True
    """When the conditioning rate limit would reject an action, let simulated time pass until
    it allows it (False: the action is rejected, as any other violation)."""

    def __post_init__(self) -> None:
        checks: list[tuple[str, object, bool, str]] = [
            ("max_actions", self.max_actions, _int(self.max_actions) >= 1, "an integer >= 1"),
            ("max_scans", self.max_scans, _int(self.max_scans) >= 1, "an integer >= 1"),
            ("pixels", self.pixels, 8 <= _int(self.pixels) <= 8192, "an integer in 8..8192"),
            ("size", self.size, _positive(self.size), "a positive length in metres"),
            ("line_time", self.line_time, _positive(self.line_time), "a positive time in s"),
            ("spacing", self.spacing, _positive(self.spacing - 1.0), "a number > 1"),
        ]
        for key, value, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"invalid episode setting {key} = {value!r}",
                    source="<episode settings>",
                    key=key,
                    value=value,
                    expected=expected,
                )


def _int(value: object) -> int:
    """``value`` if it is an integer (not a bool), else -1 (fails every range check)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class Step:
    """What one :meth:`ConditioningEpisode.step` did and saw."""

    observation: Observation
    """What the policy sees after the action and the new frame."""
    truth: TipState | None
    """The tip state at the start of the new frame as the driver reports it (the simulator's
    ``sim_tip_state``), None when the driver does not know."""
    done: bool
    """The tip is good (by ``truth``, or without truth by the observation), or the episode
    reached ``max_actions`` conditioning actions or ``max_scans`` frames without one."""
    verdict: Verdict
    """The safety envelope's verdict on the action (rejected: it never reached the driver)."""
    sim_time: float
    """Simulated seconds since the simulator started, waiting for the rate limit included."""
    success: bool = False
    """The episode ended because the tip is good."""
    actions: int = 0
    """Conditioning actions asked for so far in the episode (rejected ones included)."""
    scans: int = 0
    """Steps so far that were not conditioning actions (the policy kept imaging)."""


@dataclass(frozen=True)
class EpisodeResult:
    """The score of one episode."""

    seed: int
    actions: int
    """Conditioning actions asked for (rejected ones included; a rejected action is a wasted
    decision, and counting it keeps a policy that only emits rejected actions from looping)."""
    success: bool
    """The tip became good within ``max_actions`` (by ground truth when the driver has it)."""
    sim_seconds: float
    """Simulated seconds from the simulator's start to the end of the episode."""
    trace: tuple[str, ...]
    """Every decision, as :func:`describe_action` writes it (``"pulse +4 V 200 ms"``,
    ``"dip 1.2 nm"``, ``"image"``); rejected ones end in ``" (rejected)"``."""
    scans: int = 0
    """Frames the policy asked for without conditioning (KeepImaging) while the tip was bad."""
    rejected: int = 0
    """Actions the safety envelope rejected."""
    states: tuple[str, ...] = ()
    """The true tip state after each step (empty when the driver does not report it)."""


def describe_action(action: Action) -> str:
    """A short human label: ``"pulse +4 V 200 ms"``, ``"dip 1.2 nm"``, else the action's kind."""
    if isinstance(action, Pulse):
        return f"pulse {action.voltage:+g} V {action.width * 1e3:g} ms"
    if isinstance(action, Dip):
        text = f"dip {action.depth * 1e9:g} nm"
        return text if action.bias == 0 else f"{text} at {action.bias:+g} V"
    kind = getattr(action, "kind", None)
    return str(kind) if isinstance(kind, str) else type(action).__name__


def required_clean_side(action: Action) -> float:
    """Side (m) of the clean square an action needs around the conditioning spot.

    As in DeepSPM, a conditioning action should land on a clean, flat patch large enough for
    the damage it does, or the tip picks up debris: a pulse marks the surface over a Gaussian of
    width ``0.5 nm + 0.2 nm/V |V|``, a dip digs a crater of width ``0.5 nm + 0.3 d`` with a rim
    at 1.6 widths; the side asked for is about four widths. Other actions need none.
    """
    if isinstance(action, Pulse):
        return 4.0 * (0.5e-9 + 0.2 * abs(action.voltage) * 1e-9)
    if isinstance(action, Dip):
        depth_nm = min(max(action.depth, 0.0) * 1e9, 5.0)
        return 4.0 * (0.5 + 0.3 * depth_nm) * 1e-9
    return 0.0


def _spiral() -> Iterator[tuple[int, int]]:
    """Integer cells in a square spiral around (0, 0): each one next to the one before."""
    x = y = 0
    yield (0, 0)
    leg = 1
    while True:
        for dx, dy, n in ((1, 0, leg), (0, 1, leg), (-1, 0, leg + 1), (0, -1, leg + 1)):
            for _ in range(n):
                x, y = x + dx, y + dy
                yield (x, y)
        leg += 2


def _truth(frame: Frame) -> TipState | None:
    value = frame.metadata.get("sim_tip_state")
    if not isinstance(value, str):
        return None
    try:
        return TipState(value)
    except ValueError:
        return None


class ConditioningEpisode:
    """A seeded simulated microscope with a bad tip, stepped one conditioning action at a time.

    ``analyzers`` default to the config's analyzer list, built once; the episode hands them only
    this episode's frames as history, so analyzers that follow the history they are given (as
    the built-in ones do) start afresh at every :meth:`reset`.

    Not thread-safe; one episode at a time per instance. Use it from one event loop.
    """

    def __init__(
        self,
        config: Config,
        manager: PluginManager,
        settings: EpisodeSettings = EpisodeSettings(),
        analyzers: Sequence[Analyzer] | None = None,
    ) -> None:
        self.config = config
        self.manager = manager
        self.settings = settings
        if analyzers is None:
            analyzers = [config.build(manager, "analyzer", name) for name in config.analyzers]
        self.analyzers: tuple[Analyzer, ...] = tuple(analyzers)
        self._driver: Driver | None = None
        self._limits: InstrumentLimits | None = None
        self._envelope: SafetyEnvelope | None = None
        self._tracker = ObservationTracker()
        self._history: deque[Frame] = deque(maxlen=HISTORY)
        self._cells: Iterator[tuple[float, float]] = iter(())
        self._origin = 0.0
        self._frame_time = 0.0
        self._idle = 0.0
        self._conditioned: deque[float] = deque()
        self._seed: int | None = None
        self.actions = 0
        """Conditioning actions asked for since :meth:`reset` (rejected ones included)."""
        self.scans = 0
        """Steps since :meth:`reset` that were not conditioning actions."""
        self.last_frame: Frame | None = None
        """The newest frame."""
        self.last_truth: TipState | None = None
        """The true tip state at the start of the newest frame (None: the driver cannot say)."""

    # ------------------------------------------------------------------ properties

    @property
    def driver(self) -> Driver:
        """The driver of the current episode (after :meth:`reset`)."""
        if self._driver is None:
            raise NotConnectedError(
                "the conditioning episode has no driver", hint="await episode.reset(seed) first"
            )
        return self._driver

    @property
    def envelope(self) -> SafetyEnvelope:
        """The safety envelope of the current episode (after :meth:`reset`)."""
        if self._envelope is None:
            raise NotConnectedError(
                "the conditioning episode has no safety envelope",
                hint="await episode.reset(seed) first",
            )
        return self._envelope

    @property
    def observation(self) -> Observation | None:
        """The newest observation (None before the first :meth:`reset`)."""
        return self._tracker.last

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the simulator started, rate-limit waits included."""
        return self._frame_time + self._idle

    @property
    def seed(self) -> int | None:
        return self._seed

    # ------------------------------------------------------------------ lifecycle

    async def reset(self, seed: int) -> Observation:
        """Start a new episode: a fresh simulator seeded with ``seed`` and a random bad tip,
        approached, and its first frame scanned and analysed.

        :raises ConfigError: when a driver option override is invalid.
        :raises PluginError: when the driver is not installed.
        """
        await self.close()
        s = self.settings
        overrides: dict[str, Any] = {}
        if s.driver == "sim":
            overrides = {"seed": int(seed), "tip": "random", "time_scale": 0.0}
        overrides.update(s.driver_options)
        driver: Driver = self.config.build(self.manager, "driver", s.driver, overrides=overrides)
        await driver.connect()
        self._driver = driver
        if not await driver.get_feedback():
            await driver.approach()
        self._limits = await driver.limits()
        self._envelope = SafetyEnvelope(self.config.safety, clock=lambda: self.sim_time)
        self._tracker = ObservationTracker()
        self._history.clear()
        self._cells = self._positions(self._limits)
        self._origin = 0.0
        self._frame_time = 0.0
        self._idle = 0.0
        self._conditioned.clear()
        self._seed = int(seed)
        self.actions = 0
        self.scans = 0
        self.last_frame = None
        frame = await self._scan(first=True)
        return self._analyse(frame)

    async def step(self, action: Action) -> Step:
        """Carry out ``action`` (through the safety envelope), scan a fresh area next to the
        conditioning spot, analyse it and return what the policy sees now.

        A pulse or dip without a ``position`` is placed on the conditioning spot of the newest
        frame. Any action counts as a conditioning action if it is a pulse or dip, else as a
        scan. :class:`KeepImaging` just scans.

        :raises NotConnectedError: before :meth:`reset`.
        """
        driver, envelope, limits = self.driver, self.envelope, self._limits
        assert limits is not None
        conditioning = isinstance(action, CONDITIONING_ACTIONS)
        if conditioning:
            self.actions += 1
            action = self._placed(action)
            self._wait_for_rate_limit()
        else:
            self.scans += 1
        if isinstance(action, KeepImaging):
            # A decision for the episode, not an instrument command: nothing to check.
            verdict = Verdict(True, action, requested=action)
        else:
            tip = await driver.get_tip_position()
            verdict = envelope.check(action, EnvelopeState(limits, tip))
        if verdict.accepted:
            if isinstance(verdict.action, CONDITIONING_ACTIONS):
                self._conditioned.append(self.sim_time)
            try:
                await perform(driver, verdict.action)
            except InstrumentError:
                # A crash or instrument fault (the simulator withdraws the tip after a crash):
                # come back to the surface and let the next frame show what is left of the tip.
                await driver.approach()
            self._tracker.acted(verdict.action)
        frame = await self._scan()
        observation = self._analyse(frame)
        truth = self.last_truth
        good = (
            truth == TipState.GOOD if truth is not None else observation.tip_state == TipState.GOOD
        )
        s = self.settings
        done = good or self.actions >= s.max_actions or self.scans >= s.max_scans
        return Step(
            observation=observation,
            truth=truth,
            done=done,
            verdict=verdict,
            sim_time=self.sim_time,
            success=good,
            actions=self.actions,
            scans=self.scans,
        )

    async def close(self) -> None:
        """Disconnect the current driver; idempotent."""
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    # ------------------------------------------------------------------ internals

    def _positions(self, limits: InstrumentLimits) -> Iterator[tuple[float, float]]:
        """Frame centres: a square spiral around the piezo's centre, skipping cells whose frame
        would leave the range; starts again from the centre when the range is used up."""
        s = self.settings
        pitch = s.spacing * s.size
        half_x = limits.piezo_range[0] / 2 - s.size / 2
        half_y = limits.piezo_range[1] / 2 - s.size / 2
        reach = int(max(half_x, half_y) / pitch) + 1
        while True:
            found = False
            for i, j in _spiral():
                if max(abs(i), abs(j)) > reach:
                    break
                x, y = i * pitch, j * pitch
                if abs(x) <= half_x and abs(y) <= half_y:
                    found = True
                    yield (x, y)
            if not found:  # a frame larger than the range: image the centre, clamped
                yield (0.0, 0.0)

    def _placed(self, action: Action) -> Action:
        """A pulse or dip without a position, placed on the newest frame's conditioning spot."""
        if not isinstance(action, (Pulse, Dip)) or action.position is not None:
            return action
        spot = self._conditioning_spot()
        return action if spot is None else dataclasses.replace(action, position=spot)

    def _conditioning_spot(self) -> tuple[float, float] | None:
        """The centre of the largest clean square of the newest frame, else its centre."""
        frame = self.last_frame
        if frame is None:
            return None
        obs = self._tracker.last
        if obs is not None:
            for finding in obs.findings:
                if finding.kind != "roughness" or finding.values.get("status", "ok") != "ok":
                    continue
                x, y = finding.values.get("clean_x"), finding.values.get("clean_y")
                side = finding.values.get("clean_square", 0.0)
                if (
                    isinstance(x, float)
                    and isinstance(y, float)
                    and isinstance(side, float)
                    and side > 0
                    and math.isfinite(x)
                    and math.isfinite(y)
                ):
                    return (x, y)
        return frame.area.centre

    def _wait_for_rate_limit(self) -> None:
        """Let simulated time pass until one more conditioning action fits the rate limit."""
        limit = self.config.safety.max_conditioning_per_minute
        if not self.settings.wait_for_rate_limit or limit <= 0:
            return
        now = self.sim_time
        while self._conditioned and now - self._conditioned[0] >= CONDITIONING_WINDOW:
            self._conditioned.popleft()
        if len(self._conditioned) >= limit:
            oldest = self._conditioned[len(self._conditioned) - limit]
            wait = CONDITIONING_WINDOW - (now - oldest)
            # a hair more than needed: the envelope's window is strict (now - t < 60 s)
            self._idle += math.nextafter(max(wait, 0.0), math.inf) + 1e-6

    async def _scan(self, *, first: bool = False) -> Frame:
        """Scan the next fresh cell (through the envelope too: a driver's range can be smaller
        than the frame) and advance the episode clock to the frame's end."""
        s = self.settings
        centre = next(self._cells)
        area = ScanArea(centre, (s.size, s.size), s.pixels, s.pixels)
        settings = ScanSettings(area, s.line_time)
        tip = await self.driver.get_tip_position()
        assert self._limits is not None
        verdict = self.envelope.check(Scan(settings), EnvelopeState(self._limits, tip))
        if not verdict.accepted or not isinstance(verdict.action, Scan):
            raise ConfigError(
                "the episode's evaluation frame is outside the safety limits: "
                + "; ".join(verdict.reasons),
                source="<episode settings>",
                key="size",
                hint="use smaller frames or a longer line_time",
            )
        frame = await self.driver.scan(verdict.action.settings)
        if first:
            offset = frame.metadata.get("sim_time")
            self._origin = frame.started_at - (
                float(offset) if isinstance(offset, (int, float)) else 0.0
            )
        # Rounded to the microsecond: the timestamps carry the wall-clock epoch of the
        # driver's start, whose rounding must not make a seeded episode's clock differ.
        self._frame_time = max(self._frame_time, round(frame.finished_at - self._origin, 6))
        return frame

    def _analyse(self, frame: Frame) -> Observation:
        findings = run_analyzers(self.analyzers, frame, list(self._history))
        self._history.append(frame)
        self.last_frame = frame
        self.last_truth = _truth(frame)
        return self._tracker.observe(frame, findings, elapsed=self.sim_time)


async def run_episode(policy: Policy, episode: ConditioningEpisode, seed: int) -> EpisodeResult:
    """Play one episode of ``policy`` from ``episode.reset(seed)`` until the tip is good or the
    episode gives up.

    The policy sees only observations. It is fed back an :class:`~probepilot.model.Outcome`
    after every step: reward :data:`ACTION_REWARD` per conditioning action, plus
    :data:`GOOD_REWARD` when the step ended the episode with a good tip; ``done`` as the step
    says. A :class:`~probepilot.model.KeepImaging` (or any other non-conditioning action)
    while the tip is bad counts as a scan, not an action; ``max_scans`` bounds them.
    """
    observation = await episode.reset(seed)
    if episode.last_truth == TipState.GOOD:  # a driver option asked for a good tip
        return EpisodeResult(seed, 0, True, episode.sim_time, ())
    trace: list[str] = []
    states: list[str] = []
    rejected = 0
    step: Step | None = None
    while step is None or not step.done:
        action = policy.decide(observation)
        step = await episode.step(action)
        conditioning = isinstance(action, CONDITIONING_ACTIONS)
        label = describe_action(action)
        if not step.verdict.accepted:
            rejected += 1
            label += " (rejected)"
        trace.append(label)
        if step.truth is not None:
            states.append(step.truth.value)
        reward = (ACTION_REWARD if conditioning else 0.0) + (GOOD_REWARD if step.success else 0.0)
        policy.feedback(Outcome(step.verdict.action, step.observation, reward, step.done))
        observation = step.observation
    return EpisodeResult(
        seed=seed,
        actions=step.actions,
        success=step.success,
        sim_seconds=step.sim_time,
        trace=tuple(trace),
        scans=step.scans,
        rejected=rejected,
        states=tuple(states),
    )
