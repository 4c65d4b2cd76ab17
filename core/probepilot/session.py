"""The autonomous run: a state machine on asyncio over the loop of DESIGN.md §1.

::

    approach -> choose region -> image -> persist -> analyse -> decide -> safety -> act --+
                     ^                                                                     |
                     +---------------------------------------------------------------------+

Every frame is written to the run folder before any analyzer sees it; every step is an event
that is journaled first and then published (``probepilot_event`` hook, in-process subscribers
such as the dashboard); every action, from the policy or from an operator, passes the safety
envelope and then :func:`probepilot.actions.perform`.

States: ``approach``, ``choose_region``, ``image``, ``spectroscopy``, ``condition``,
``move_coarse``, ``recover``, ``paused``, ``stopped``. Operator commands
(:meth:`Session.command`, or :meth:`Session.post` from another thread): ``pause``, ``resume``,
``stop`` (``mode="finish"`` lets the frame finish, ``"abort"`` cancels it and keeps the lines
scanned), ``withdraw`` (now, cancelling a scan), ``switch_policy`` (``name``), ``set_bias``
(``voltage``, V), ``set_setpoint`` (``current``, A).

Faults: a driver error is journaled, the run enters ``recover``, waits with exponential backoff,
reconnects and retries the same step (the same region is scanned again), up to
``[run] retries`` times in a row; then the run fails. A tip crash (reported by the driver as
:class:`~probepilot.errors.TipCrashError`, or a ``crash`` finding) withdraws the tip first, then
approaches again and lets the policy condition the (now blunt) tip.

Spectroscopy (``[spectroscopy]``, :mod:`probepilot.spectroscopy`): after a frame the image calls
good, the session takes the point spectra and grids the :class:`~probepilot.spectroscopy.
Spectroscopist` plans (each through the safety envelope), persists them, and adds the spectrum
analyzers' findings (and their second opinion on the tip) to the frame's before the policy
decides. The run's auxiliary instruments (``instruments``) are connected after the driver and
closed at the end; a coarse positioner among them makes the coarse moves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from probepilot import events as ev
from probepilot.actions import perform
from probepilot.config import Config
from probepilot.contracts import Analyzer, Driver, Policy
from probepilot.errors import (
    DriverError,
    LimitError,
    NotSupportedError,
    ProbepilotError,
    SafetyError,
    TipCrashError,
)
from probepilot.events import Event
from probepilot.instruments import Instruments
from probepilot.model import (
    CONDITIONING_ACTIONS,
    Action,
    Approach,
    Channel,
    CoarseStep,
    CompensateDrift,
    Dip,
    Finding,
    Frame,
    InstrumentLimits,
    KeepImaging,
    LineProgress,
    Observation,
    Outcome,
    Pulse,
    Scan,
    ScanArea,
    ScanSettings,
    SetBias,
    SetSetpoint,
    Spectrum,
    Stop,
    TipState,
    Withdraw,
)
from probepilot.observe import HISTORY, ObservationTracker, run_analyzers
from probepilot.plugins import PluginManager
from probepilot.regions import Cell, RegionMap, conditioning_spot, damage_radius
from probepilot.safety import EnvelopeState, SafetyEnvelope
from probepilot.spectroscopy import Spectroscopist
from probepilot.store.grid import Grid
from probepilot.store.runfolder import RunFolder

_log = logging.getLogger(__name__)
T = TypeVar("T")

STATES = (
    "approach",
    "choose_region",
    "image",
    "spectroscopy",
    "condition",
    "move_coarse",
    "recover",
    "paused",
    "stopped",
)
COMMANDS = ("pause", "resume", "stop", "withdraw", "switch_policy", "set_bias", "set_setpoint")
#: Reward a learning policy gets per conditioning action, and when the tip becomes good.
ACTION_REWARD = -1.0
GOOD_REWARD = 10.0
#: Not journaled: the live lines of the frame being scanned, for the dashboard.
SCAN_LINE = "scan.line"


@dataclass(frozen=True, slots=True)
class ScanLine:
    """One freshly scanned line of the frame in progress (published, never journaled).

    ``frame`` is the 1-based number the frame will have; ``forward``/``backward`` map channel
    names to the line's data (SI units).
    """

    frame: int
    row: int
    lines: int
    pixels: int
    area: ScanArea
    forward: Mapping[str, np.ndarray]
    backward: Mapping[str, np.ndarray]


Subscriber = Callable[[Event | ScanLine], None]


@dataclass
class Stats:
    """Running figures of a run (the dashboard and the headless display show them)."""

    frames: int = 0
    complete_frames: int = 0
    good_frames: int = 0
    analysed: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    conditioning: int = 0
    rejected: int = 0
    driver_errors: int = 0
    crashes: int = 0
    coarse_moves: int = 0
    recoveries: list[int] = field(default_factory=list)
    """Conditioning actions it took each time the tip went from bad to good."""
    time_in_state: dict[str, float] = field(default_factory=dict)
    tip_state: str = TipState.UNKNOWN.value
    started: float = field(default_factory=time.monotonic)
    instrument_time: float = 0.0
    """Seconds of instrument time since the first frame (simulated time on the simulator)."""

    @property
    def good_fraction(self) -> float | None:
        return self.good_frames / self.analysed if self.analysed else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["actions"] = dict(self.actions)
        out["time_in_state"] = dict(self.time_in_state)
        out["good_fraction"] = self.good_fraction
        return out


class Stopped(Exception):
    """Raised inside the loop when the operator stopped the run."""


class Session:
    """One autonomous run. Build it, then ``await session.run()`` (or ``run_session``).

    :param config: the validated configuration.
    :param manager: the plugin manager the config was validated against (builds the driver,
        analyzers and policy, and carries the observer hooks).
    :param driver: use this driver instead of building ``config.driver`` (tests, wrappers).
    :param policy: use this policy instead of building ``config.policy``.
    :param analyzers: use these instead of building ``config.analyzers``.
    :param frames: stop after this many frames (default ``[run] frames``).
    :param duration: stop after this much instrument time, s (default ``[run] duration``).
    :param root: where the run folder goes (default ``config.run_folder()``).
    :param instruments: use these instead of building ``config.instruments``.
    """

    def __init__(
        self,
        config: Config,
        manager: PluginManager,
        *,
        driver: Driver | None = None,
        policy: Policy | None = None,
        analyzers: Sequence[Analyzer] | None = None,
        frames: int | None = None,
        duration: float | None = None,
        root: Path | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self.config = config
        self.manager = manager
        self.options = config.run
        self.driver: Driver = driver or config.build(manager, "driver", config.driver)
        self.policy: Policy = policy or config.build(manager, "policy", config.policy)
        self.policy_name = getattr(self.policy, "name", config.policy)
        self.analyzers: list[Analyzer] = list(
            analyzers
            if analyzers is not None
            else [config.build(manager, "analyzer", name) for name in config.analyzers]
        )
        self.instruments = (
            instruments if instruments is not None else Instruments.build(config, manager)
        )
        self.spectroscopy = Spectroscopist(config.spectroscopy, self.instruments)
        self.max_frames = frames if frames is not None else self.options.frames
        self.max_duration = duration if duration is not None else self.options.duration
        self.root = root or config.run_folder()
        self.stats = Stats()
        self.state = ""  # set by the first transition, to "approach"
        self.run_id = ""
        self.folder = self.root
        self.tracker = ObservationTracker()
        self.envelope = SafetyEnvelope(config.safety, clock=self._instrument_clock)
        self.history: deque[Frame] = deque(maxlen=HISTORY)
        self.observation: Observation | None = None
        self._subscribers: list[Subscriber] = []
        self._run: RunFolder | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limits: InstrumentLimits | None = None
        self._regions: RegionMap | None = None
        self._area: ScanArea | None = None
        self._frames_in_region = 0
        self._pending: Action | None = None
        self._paused = asyncio.Event()
        self._paused.set()  # set = running
        self._stop: str | None = None  # None, "finish" or "abort"
        self._scan_task: asyncio.Task[Frame] | None = None
        self._withdraw_now = False
        self._state_since = time.monotonic()
        self._first_frame_at: float | None = None
        self._last_instrument_time = 0.0
        self._compensation = (0.0, 0.0)

    # -- event stream ------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` (on the run's loop) with every event and every live scan line.
        It must not block; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _publish(self, item: Event | ScanLine) -> None:
        for callback in list(self._subscribers):
            try:
                callback(item)
            # A broken subscriber must not stop the run; it is dropped and logged.
            except Exception:  # noqa: BLE001
                _log.exception("event subscriber %r failed; unsubscribed", callback)
                self._subscribers.remove(callback)

    def emit(self, type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Journal an event, then tell the observer hooks and the subscribers."""
        assert self._run is not None
        event = self._run.emit(type, data)
        self._notify(event)
        return event

    def _notify(self, event: Event) -> None:
        for impl in self.manager.hook.probepilot_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception as exc:  # noqa: BLE001
                assert self._run is not None
                error = self._run.emit(
                    ev.PLUGIN_ERROR, {"plugin": impl.plugin_name, "error": f"{exc!r}"}
                )
                self._publish(error)
        self._publish(event)

    def _book_time(self) -> None:
        now = time.monotonic()
        if self.state:
            spent = self.stats.time_in_state
            spent[self.state] = spent.get(self.state, 0.0) + now - self._state_since
        self._state_since = now

    def _enter(self, state: str) -> None:
        if state == self.state:
            return
        self._book_time()
        self.state = state
        self.emit(ev.STATE_CHANGED, {"state": state})

    # -- clocks ------------------------------------------------------------------------------

    def _instrument_clock(self) -> float:
        """Instrument time (frame timestamps; simulated time on the simulator), for the safety
        envelope's rate limit and the run's duration."""
        return self._last_instrument_time

    def _advance_clock(self, frame: Frame) -> None:
        if self._first_frame_at is None:
            self._first_frame_at = frame.started_at
        self._last_instrument_time = max(
            self._last_instrument_time, frame.finished_at - self._first_frame_at
        )
        self.stats.instrument_time = self._last_instrument_time

    def snapshot(self) -> dict[str, Any]:
        """The run's current state (see :meth:`probepilot.link.RunLink.snapshot`)."""
        return {
            "run_id": self.run_id,
            "folder": str(self.folder),
            "state": self.state,
            "driver": self.config.driver,
            "policy": self.policy_name,
            "policies": self.manager.registry("policy").names(),
            "stats": self.stats.as_dict(),
            "limits": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self.config.safety).items()
            },
            "tip_state": self.stats.tip_state,
            "budget": {"frames": self.max_frames, "duration": self.max_duration},
        }

    # -- operator commands ---------------------------------------------------------------------

    async def command(self, name: str, /, **args: Any) -> str:
        """Carry out an operator command on the run's loop; returns a one-line reply.

        :raises ProbepilotError: an unknown command or bad arguments (the run is unaffected).
        """
        if name not in COMMANDS:
            raise ProbepilotError(
                f"unknown operator command {name!r}", hint=f"commands: {', '.join(COMMANDS)}"
            )
        if self._run is not None:
            self.emit(ev.OPERATOR_COMMAND, {"command": name, **args})
        if name == "pause":
            self._paused.clear()
            return "pausing after the current frame"
        if name == "resume":
            self._paused.set()
            return "resumed"
        if name == "stop":
            mode = str(args.get("mode", "finish"))
            if mode not in ("finish", "abort"):
                raise ProbepilotError(f"stop: mode {mode!r} is not 'finish' or 'abort'")
            self._stop = mode
            self._paused.set()
            if mode == "abort" and self._scan_task is not None:
                self._scan_task.cancel()
            return "stopping " + ("now" if mode == "abort" else "after the current frame")
        if name == "withdraw":
            self._withdraw_now = True
            self._paused.clear()
            if self._scan_task is not None:
                self._scan_task.cancel()
            else:
                await self._operator_action(Withdraw())
                self._withdraw_now = False
            return "withdrawing; the run is paused (resume approaches again)"
        if name == "switch_policy":
            policy_name = str(args.get("name", ""))
            self.policy = self.config.build(self.manager, "policy", policy_name)
            self.policy_name = policy_name
            return f"policy is now {policy_name!r}"
        if name == "set_bias":
            return await self._operator_action(SetBias(float(args["voltage"])))
        return await self._operator_action(SetSetpoint(float(args["current"])))

    def post(self, name: str, /, **args: Any) -> concurrent.futures.Future[str]:
        """:meth:`command` from any thread (the dashboard's, a network listener's)."""
        if self._loop is None:
            raise ProbepilotError("the run has not started; commands reach a running session")
        return asyncio.run_coroutine_threadsafe(self.command(name, **args), self._loop)

    async def _operator_action(self, action: Action) -> str:
        verdict = await self._check(action)
        if not verdict:
            return "refused by the safety envelope"
        await self._act(verdict, source="operator")
        return f"done: {action.kind}"

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> str:
        """Run until the frame/duration budget is reached, the operator stops it or it fails.

        :returns: the outcome, ``"completed"``, ``"stopped"`` or ``"failed: <error>"``.
        """
        self._loop = asyncio.get_running_loop()
        self._run = await asyncio.to_thread(RunFolder.create, self.root, self.config)
        self.run_id, self.folder = self._run.run_id, self._run.path
        if self._run.started is not None:
            self._notify(self._run.started)
        outcome = "completed"
        connected = False
        try:
            await self._with_retries("connect", self.driver.connect)
            connected = True
            await self.instruments.connect()
            self._limits = await self._with_retries("limits", self.driver.limits)
            self._regions = RegionMap(self._limits.piezo_range[:2], self.options.frame_size)
            self.manager.hook.probepilot_session_start(session=self)
            self._enter("approach")
            await self._with_retries("approach", self.driver.approach)
            while not self._done():
                await self._step()
        except Stopped:
            outcome = "stopped"
        except asyncio.CancelledError:
            outcome = "stopped"
        except ProbepilotError as exc:
            outcome = f"failed: {exc}"
        finally:
            self._enter("stopped")
            await self.instruments.close()
            if connected:
                with contextlib.suppress(ProbepilotError, OSError):
                    await asyncio.wait_for(self.driver.close(), 10.0)
            self._book_time()
            await asyncio.to_thread(self._run.close, outcome)
            # The journal's last record goes to the subscribers too, so a watcher sees the end
            # (the observer hooks have probepilot_session_finish for it).
            last = self._run.journal.last_seq or 0
            self._publish(Event(ev.RUN_FINISHED, last, {"outcome": outcome}))
            self.manager.hook.probepilot_session_finish(session=self, outcome=outcome)
        return outcome

    def _done(self) -> bool:
        if self._stop is not None:
            raise Stopped
        if self.max_frames is not None and self.stats.frames >= self.max_frames:
            return True
        return self.max_duration is not None and self._last_instrument_time >= self.max_duration

    async def _step(self) -> None:
        if not self._paused.is_set():
            await self._pause()
            return
        area = await self._choose_region()
        if area is None:
            return
        frame = await self._image(area)
        if frame is None:
            return
        await self._after_frame(area, frame)

    async def _pause(self) -> None:
        self._enter("paused")
        if self._withdraw_now:
            self._withdraw_now = False
            await self._operator_action(Withdraw())
            await self._paused.wait()
            if self._stop is None:
                self._enter("approach")
                await self._with_retries("approach", self.driver.approach)
            return
        await self._paused.wait()

    async def _choose_region(self) -> ScanArea | None:
        assert self._regions is not None
        if self._area is not None and self._frames_in_region < self.options.frames_per_region:
            return self._area
        self._enter("choose_region")
        tip = await self._with_retries("tip position", self.driver.get_tip_position)
        choice = self._regions.next_region((tip.x, tip.y), self.options.pixels)
        if choice.area is None:
            await self._coarse_move(choice.reason)
            return None
        self._area = choice.area
        self._frames_in_region = 0
        return choice.area

    async def _coarse_move(self, reason: str) -> None:
        assert self._regions is not None
        self._enter("move_coarse")
        steps = (Withdraw(), *self._coarse_steps(), Approach())
        for action in steps:
            verdict = await self._check(action)
            if verdict is None:
                raise SafetyError(action, (f"a coarse move is needed ({reason})",))
            await self._act(verdict, source="session")
        self._regions.after_coarse_move()
        self.stats.coarse_moves += 1
        self._area = None

    def _coarse_steps(self) -> list[Action]:
        return [CoarseStep(self.options.coarse_axis, self.options.coarse_steps)]

    async def _bias_setpoint(self) -> tuple[float, float]:
        """Bias and setpoint for a partial frame's header (NaN when the driver cannot say)."""
        try:
            bias = await asyncio.wait_for(self.driver.get_bias(), 5.0)
            setpoint = await asyncio.wait_for(self.driver.get_setpoint(), 5.0)
        except (DriverError, TimeoutError):
            return math.nan, math.nan
        return bias, setpoint

    async def _image(self, area: ScanArea) -> Frame | None:
        self._enter("image")
        settings = ScanSettings(area, self.options.line_time)
        verdict = await self._check(Scan(settings))
        if verdict is None:
            # The region search keeps areas inside the range, so what the envelope refuses is
            # the [run] frame settings themselves (speed, size): every frame would be refused.
            # Going on would only make coarse moves forever; stop and say which limit.
            last = self.envelope.rejections[-1].verdict.reasons if self.envelope.rejections else ()
            raise SafetyError("the frames the [run] settings ask for", tuple(last))
        index = self.stats.frames + 1
        partial = _PartialFrame(settings)

        def progress(line: LineProgress) -> None:
            partial.add(line)
            self._publish(
                ScanLine(
                    index,
                    line.index,
                    line.total,
                    area.pixels,
                    area,
                    line.forward,
                    line.backward,
                )
            )

        self._scan_task = asyncio.ensure_future(
            self._with_retries("scan", lambda: self.driver.scan(settings, progress))
        )
        try:
            frame = await self._scan_task
        except asyncio.CancelledError:
            if self._stop is None and not self._withdraw_now:
                raise
            cut = partial.frame(*await self._bias_setpoint())
            if cut is None:
                return None
            frame = cut
        finally:
            self._scan_task = None
        self._advance_clock(frame)
        return frame

    async def _after_frame(self, area: ScanArea, frame: Frame) -> None:
        assert self._run is not None and self._regions is not None
        # Persist before anything looks at it.
        event = await asyncio.to_thread(self._run.add_frame, frame)
        self._notify(event)
        self.stats.frames += 1
        self.stats.complete_frames += frame.complete
        self._frames_in_region += 1
        self._regions.mark(area, Cell.IMAGED)
        if not frame.complete:
            return  # aborted: nothing to judge on a partial frame
        findings = await asyncio.to_thread(
            run_analyzers, self.analyzers, frame, tuple(self.history)
        )
        findings = [*findings, *await self._spectra(frame, findings)]
        self.history.append(frame)
        self._regions.note_findings(area, findings)
        was_bad = self.tracker.actions_since_good
        observation = self.tracker.observe(frame, findings, self._last_instrument_time)
        self.observation = observation
        state = observation.tip_state
        self.stats.analysed += 1
        self.stats.good_frames += state == TipState.GOOD
        self.stats.tip_state = state.value
        if state == TipState.GOOD and was_bad:
            self.stats.recoveries.append(was_bad)
        self.emit(
            ev.FRAME_ANALYSED,
            {"frame": event.data["file"], "tip_state": state.value, "findings": list(findings)},
        )
        self._feedback(observation)
        if self._stop is not None:
            return
        if any(f.kind == "crash" and f.confidence >= 0.5 for f in findings):
            await self._crashed("an analyzer reported a crash")
            return
        await self._compensate_drift(findings)
        await self._decide(observation, area, findings)

    async def _spectra(self, frame: Frame, findings: Sequence[Finding]) -> list[Finding]:
        """Take the spectra and grids planned after ``frame`` (none unless it looks good),
        persist each, and return the spectrum analyzers' findings plus their second opinion."""
        actions = self.spectroscopy.plan(frame, findings, self.driver.capabilities())
        if not actions:
            return []
        assert self._run is not None
        previous = self.state
        self._enter("spectroscopy")
        await self._with_retries("lock-in setup", self.spectroscopy.prepare)
        extra: list[Finding] = []
        for action in actions:
            if self._stop is not None:
                break
            verdict = await self._check(action)
            if verdict is None:
                continue
            result = await self._act(verdict, source="session")
            if isinstance(result, Spectrum):
                event = await asyncio.to_thread(self._run.add_spectrum, result)
                self._notify(event)
                extra += await asyncio.to_thread(
                    self.spectroscopy.analyze, result, event.data["file"], self.analyzers
                )
            elif isinstance(result, Grid):
                self._notify(await asyncio.to_thread(self._run.add_grid, result))
        self._enter(previous)
        return [*extra, *self.spectroscopy.second_opinion(extra)]

    def _feedback(self, observation: Observation) -> None:
        if self._pending is None:
            return
        good = observation.tip_state == TipState.GOOD
        reward = ACTION_REWARD + (GOOD_REWARD if good else 0.0)
        self.policy.feedback(Outcome(self._pending, observation, reward, good))
        self._pending = None

    async def _compensate_drift(self, findings: Sequence[Finding]) -> None:
        if not self.options.compensate_drift:
            return
        drift = [f for f in findings if f.kind == "drift" and f.values.get("status") == "ok"]
        if not drift or drift[0].confidence < 0.5:
            return
        v = drift[0].values
        vx, vy = float(v["vx"]), float(v["vy"])
        sx, sy = float(v.get("sigma_vx", math.inf)), float(v.get("sigma_vy", math.inf))
        if math.hypot(vx, vy) <= 3 * math.hypot(sx, sy):
            return  # not distinguishable from no drift
        target = CompensateDrift(self._compensation[0] + vx, self._compensation[1] + vy)
        verdict = await self._check(target)
        if verdict is not None:
            await self._act(verdict, source="session")
            if isinstance(verdict, CompensateDrift):
                self._compensation = (verdict.vx, verdict.vy)

    async def _decide(
        self, observation: Observation, area: ScanArea, findings: Sequence[Finding]
    ) -> None:
        action = self.policy.decide(observation)
        self.emit(ev.POLICY_DECIDED, {"action": action, "policy": self.policy_name})
        if isinstance(action, KeepImaging):
            return
        if isinstance(action, Stop):
            self._stop = "finish"
            return
        if isinstance(action, (Pulse, Dip)) and action.position is None:
            spot = conditioning_spot(findings, area)
            if spot is not None:
                action = replace(action, position=spot)
        if isinstance(action, CONDITIONING_ACTIONS):
            self._enter("condition")
        verdict = await self._check(action)
        if verdict is None:
            return
        await self._act(verdict, source="policy")
        if isinstance(verdict, (Pulse, Dip)):
            self._pending = verdict
            self.tracker.acted(verdict)
            self.stats.conditioning += 1
            spot = verdict.position or area.centre
            assert self._regions is not None
            self._regions.mark_damaged(*spot, damage_radius(verdict))
            here = self._regions.cell_of(*area.centre)
            if here is not None and self._regions.cells[here] == Cell.DAMAGED:
                self._area = None  # never image the spot just conditioned on again

    # -- safety and acting ------------------------------------------------------------------------

    async def _check(self, action: Action) -> Action | None:
        """The envelope's accepted (maybe clamped) action, or None after journaling why not."""
        assert self._limits is not None
        # The envelope checks a dip against the z range only when it knows where the tip is.
        tip = await self._with_retries("tip position", self.driver.get_tip_position)
        verdict = self.envelope.check(action, EnvelopeState(self._limits, tip))
        if not verdict.accepted:
            self.stats.rejected += 1
            self.emit(ev.SAFETY_REJECTED, {"action": action, "reasons": list(verdict.reasons)})
            return None
        return verdict.action

    async def _act(self, action: Action, *, source: str) -> Frame | Spectrum | Grid | None:
        """Carry out an accepted action; what it measured (a spectrum, a grid), if anything."""
        started = time.monotonic()
        try:
            result = await self._with_retries(
                action.kind,
                lambda: perform(self.driver, action, self.instruments),
                repeat=not isinstance(action, NOT_REPEATED),
            )
        except _NotRepeated:
            return None  # journaled as a driver error; the next frame tells what happened
        except TipCrashError as exc:
            await self._crashed(str(exc))
            return None
        except (LimitError, NotSupportedError) as exc:
            self.emit(
                ev.DRIVER_ERROR,
                {"error": type(exc).__name__, "message": str(exc), "operation": action.kind},
            )
            return None
        self.stats.actions[action.kind] += 1
        self.emit(
            ev.ACTION_EXECUTED,
            {"action": action, "source": source, "duration": time.monotonic() - started},
        )
        return result

    async def _crashed(self, why: str) -> None:
        self.stats.crashes += 1
        self._enter("recover")
        self.emit(ev.DRIVER_ERROR, {"error": "TipCrashError", "message": why, "operation": "crash"})
        await self._with_retries("withdraw", self.driver.withdraw)
        self.emit(ev.ACTION_EXECUTED, {"action": Withdraw(), "source": "session", "duration": 0})
        self._area = None  # the crater makes this region useless
        self._enter("approach")
        await self._with_retries("approach", self.driver.approach)

    async def _with_retries(
        self, operation: str, call: Callable[[], Awaitable[T]], *, repeat: bool = True
    ) -> T:
        """``call()``; on a driver error: journal, back off, reconnect and retry the same step.
        Tip crashes, limits and unsupported operations are not retried (retrying cannot help).

        With ``repeat=False`` (pulses, dips, coarse steps: a timed-out one may have happened)
        the step is not repeated after the recovery: :class:`_NotRepeated` is raised instead and
        the next frame shows what the instrument did.
        """
        failures = 0
        while True:
            try:
                return await call()
            except (TipCrashError, LimitError, NotSupportedError):
                raise
            except DriverError as exc:
                failures += 1
                self.stats.driver_errors += 1
                if self._run is not None:
                    self.emit(
                        ev.DRIVER_ERROR,
                        {
                            "error": type(exc).__name__,
                            "message": str(exc),
                            "operation": operation,
                            "attempt": failures,
                        },
                    )
                if failures > self.options.retries:
                    raise
                previous = self.state
                if self._run is not None:
                    self._enter("recover")
                await asyncio.sleep(min(self.options.retry_backoff * 2 ** (failures - 1), 60.0))
                if operation != "connect":
                    with contextlib.suppress(DriverError):
                        await asyncio.wait_for(self.driver.close(), 10.0)
                    with contextlib.suppress(DriverError):
                        await self.driver.connect()
                if self._run is not None:
                    self._enter(previous)
                if not repeat:
                    raise _NotRepeated(operation) from exc


# --------------------------------------------------------------------------------------------

#: Actions a driver error leaves in doubt (did the pulse happen before the timeout?): the
#: session recovers the connection but never repeats them.
NOT_REPEATED: tuple[type, ...] = (Pulse, Dip, CoarseStep)


class _NotRepeated(Exception):
    """A driver error interrupted an action that must not be repeated blindly."""


class _PartialFrame:
    """The lines reported so far, so an aborted scan still leaves a (partial) frame."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self.rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.done = 0
        self.started = time.time()

    def add(self, line: LineProgress) -> None:
        area = self.settings.area
        for name, data in line.forward.items():
            if name not in self.rows:
                shape = (area.lines, area.pixels)
                self.rows[name] = (np.full(shape, np.nan), np.full(shape, np.nan))
            fwd, bwd = self.rows[name]
            fwd[line.index] = data
            if name in line.backward:
                bwd[line.index] = line.backward[name]
        self.done = max(self.done, line.index + 1)

    def frame(self, bias: float, setpoint: float) -> Frame | None:
        if not self.done or "Z" not in self.rows:
            return None
        units = {"Z": "m", "Current": "A"}
        channels = {
            name: Channel(name, units.get(name, ""), fwd, bwd)
            for name, (fwd, bwd) in self.rows.items()
        }
        return Frame(
            channels=channels,
            area=self.settings.area,
            direction=self.settings.direction,
            bias=bias,
            setpoint=setpoint,
            line_time=self.settings.line_time,
            started_at=self.started,
            finished_at=time.time(),
            lines_done=self.done,
            source="partial",
        )


async def run_session(session: Session) -> str:
    """Run ``session`` until it ends (a helper for the CLI and tests)."""
    return await session.run()
