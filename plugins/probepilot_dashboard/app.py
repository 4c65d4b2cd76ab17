"""The Textual dashboard: panels from the plugins, controls bound to keys, and the run hosted on
a thread of its own.

How data flows (DESIGN.md §5): the app subscribes a :class:`~probepilot_dashboard.bridge.
LinkBridge` to the run's :class:`~probepilot.link.RunLink`; the bridge only stores. A timer
(10 Hz) drains the events into the panels and hands them the newest frame, so frames that
arrive faster than the terminal draws are coalesced (only the newest is drawn). Commands go back
through ``link.command``. Nothing else of the run is touched, so a remote link can replace the
in-process session unchanged.

When the run is in this process (``main`` given), it runs on its own thread with its own event
loop: drawing, however slow, never delays it. Link calls are then made on the run's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from probepilot import events as ev
from probepilot.errors import ProbepilotError
from probepilot.events import Event
from probepilot.plugins import error_summary
from probepilot.units import UnitError, parse_quantity
from probepilot_dashboard.bridge import LinkBridge
from probepilot_dashboard.fmt import STATE_COLOURS, TIP_COLOURS, q
from probepilot_dashboard.panels import BUILTIN, View
from probepilot_dashboard.render import COLORMAPS

#: Drawing ticks per second: events are handed to the panels and the newest frame drawn.
TICK_HZ = 10.0
#: How often the run's snapshot (statistics, limits) is fetched, s.
SNAPSHOT_EVERY = 0.5
#: Most events handed to the panels per tick (the rest wait for the next tick).
EVENTS_PER_TICK = 2000
#: Longest wait for the run to answer a command or a snapshot, s.
LINK_TIMEOUT = 15.0


def _normalise(event: Event) -> Event:
    """In-process events may carry actions and findings as objects; panels see plain maps, as
    a remote link delivers them."""
    from probepilot.store.journal import plain

    try:
        data = plain(event.data)
    except ValueError:
        data = {
            k: (v if isinstance(v, str | int | float) else repr(v)) for k, v in event.data.items()
        }
    return Event(event.type, event.seq, data, event.time)


# --------------------------------------------------------------------------------------------
# Panels


@dataclass
class PanelSlot:
    """One panel as the dashboard holds it: the object, where it goes, and its error if any."""

    name: str
    title: str
    panel: Any = None
    column: str = "right"
    error: str | None = None
    box: Widget | None = None


def build_panels(manager: Any, config: Any = None) -> list[PanelSlot]:
    """Build every panel the plugins registered (built-in ones first, in their layout order).
    A panel whose factory raises becomes a slot with its error, shown as a placeholder."""
    registry = manager.registry("panel")
    names = [n for n in BUILTIN if n in registry] + [
        n for n in registry.names() if n not in BUILTIN
    ]
    slots = []
    extra_columns = ("middle", "right")
    for i, name in enumerate(names):
        entry = registry.get(name)
        column = BUILTIN[name][1] if name in BUILTIN else extra_columns[i % 2]
        slot = PanelSlot(name, name, column=column)
        try:
            if config is not None:
                panel = config.build(manager, "panel", name)
            else:
                panel = entry.factory(entry.options() if entry.options is not None else None)
            slot.panel = panel
            slot.title = str(getattr(panel, "title", name))
            slot.column = str(getattr(panel, "column", column))
            if slot.column not in ("left", "middle", "right"):
                slot.column = column
        # A third-party panel's factory may raise anything; the dashboard shows it instead.
        except Exception as exc:  # noqa: BLE001
            slot.error = error_summary(exc)
        slots.append(slot)
    return slots


class PanelBox(Vertical):
    """The frame around one panel: a border titled with the panel's title."""

    DEFAULT_CSS = """
    PanelBox {
        border: round $primary 60%;
        border-title-color: $text;
        border-title-style: bold;
        height: 1fr;
        padding: 0 1;
    }
    PanelBox.broken { border: round $error; }
    """


def _placeholder(name: str, error: str) -> Static:
    return Static(
        Text.assemble(("panel ", "dim"), (name, "bold"), (" failed: ", "dim"), (error, "red")),
        classes="panel-error",
    )


@dataclass
class PanelContext:
    """What a panel's optional ``on_attach`` receives from the dashboard."""

    app: DashboardApp
    view: View
    clock: Callable[[], float]
    """Wall-clock time (s since the epoch), comparable with event times."""

    def health(self) -> dict[str, Any]:
        """Link figures: ``link`` (what it is), ``lines`` and ``events`` received,
        ``last_heard_age`` (s since the run was last heard from, None before)."""
        return self.app.health()

    def command(self, name: str, /, **args: Any) -> None:
        """Send an operator command through the link (the reply is shown as a notification)."""
        self.app.send(name, **args)


# --------------------------------------------------------------------------------------------
# Dialogs


class QuantityScreen(ModalScreen[float | None]):
    """Ask for one quantity with its unit (``0.5 V``, ``-250 mV``, ``50 pA``)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    QuantityScreen { align: center middle; }
    QuantityScreen > Vertical {
        width: 72; height: auto; border: thick $primary; background: $surface; padding: 1 2;
    }
    QuantityScreen #error { color: $error; }
    QuantityScreen .hint { color: $text-muted; }
    """

    def __init__(self, title: str, unit: str, value: str, hint: str) -> None:
        super().__init__()
        self.title_text, self.unit, self.value, self.hint = title, unit, value, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"))
            yield Input(value=self.value, id="quantity")
            yield Label(self.hint, classes="hint")
            yield Label("", id="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = parse_quantity(event.value.strip(), self.unit)
        except UnitError as exc:
            self.query_one("#error", Label).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PolicyScreen(ModalScreen[str | None]):
    """Pick one of the registered policies."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PolicyScreen { align: center middle; }
    PolicyScreen > Vertical {
        width: 50; height: auto; border: thick $primary; background: $surface; padding: 1 2;
    }
    PolicyScreen OptionList { height: auto; max-height: 12; }
    """

    def __init__(self, policies: Iterable[str], current: str | None) -> None:
        super().__init__()
        self.policies = list(policies)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Switch policy (Enter picks, Esc cancels)", style="bold"))
            options = [
                Option(f"{name}{'  (current)' if name == self.current else ''}", id=name)
                for name in self.policies
            ]
            yield OptionList(*options, id="policies")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.policies:
            options.highlighted = self.policies.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------------------------
# The app


class RunEnded(Message):
    """The hosted run returned (posted from the run's thread)."""

    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome = outcome


@dataclass
class RunInfo:
    """What the status line shows, kept from events and snapshots."""

    run_id: str = ""
    state: str = ""
    policy: str = ""
    policies: list[str] = field(default_factory=list)
    tip: str = "unknown"
    frames: int = 0
    budget: int | None = None
    bias: float | None = None
    setpoint: float | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)
    outcome: str | None = None


class DashboardApp(App[str | None]):
    """Watch and steer one run through its :class:`~probepilot.link.RunLink`.

    :param link: the run's event stream and commands (the only way to the run).
    :param panels: slots from :func:`build_panels` (default: the built-in panels).
    :param main: the run itself when it is in this process; hosted on a thread of its own.
    :param clock: wall clock for "time in state" (tests fix it).
    :param monotonic: clock of the link's health figures (tests fix it).
    :param screenshots: folder for ``x`` screenshots (default: the working directory).
    """

    TITLE = "probepilot"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { height: 1; padding: 0 1; background: $panel; }
    #columns { height: 1fr; }
    .column { height: 1fr; width: 1fr; }
    #col-left { width: 45%; max-width: 100; }
    #panel-frame { height: 1fr; }
    #panel-history { height: 11; }
    #panel-tip { height: 1fr; min-height: 8; }
    #panel-drift { height: 1fr; min-height: 8; }
    #panel-decisions { height: 1fr; }
    #panel-stats { height: 16; }
    #panel-driver { height: 7; }
    #panel-safety { height: 8; }
    #panel-log { height: 1fr; }
    #frame-info { height: 1; }
    #frame-progress { height: 1; }
    #frame-progress Bar { width: 1fr; }
    #tip-strip { height: 2; }
    #drift-summary { height: 2; }
    #safety-limits { height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause_resume", "Pause/Resume"),
        Binding("s", "stop", "Stop"),
        Binding("a", "abort", "Abort"),
        Binding("w", "withdraw", "Withdraw"),
        Binding("o", "policy", "Policy"),
        Binding("b", "bias", "Bias"),
        Binding("t", "setpoint", "Setpoint"),
        Binding("f", "direction", "Fwd/Bwd"),
        Binding("c", "colours", "Colours"),
        Binding("x", "screenshot", "Screenshot"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        link: Any,
        panels: list[PanelSlot] | None = None,
        *,
        main: Callable[[], Awaitable[str]] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        screenshots: Path | None = None,
        tick_hz: float = TICK_HZ,
    ) -> None:
        super().__init__()
        self.link = link
        self.slots = panels if panels is not None else _builtin_slots()
        self.main = main
        self.clock = clock
        self.monotonic = monotonic
        self.screenshots = screenshots
        self.tick_hz = tick_hz
        self.bridge = LinkBridge(clock=monotonic)
        self.view = View()
        self.info = RunInfo()
        self.outcome: str | None = None
        self.notices: list[tuple[str, str]] = []
        """Every notification shown, (severity, text): tests and the log read them."""
        self._unsubscribe: Callable[[], None] | None = None
        self._link_loop: asyncio.AbstractEventLoop | None = None
        self._run_thread: threading.Thread | None = None
        self._main_task: asyncio.Task[str] | None = None
        self._snapshot_busy = False
        self._last_snapshot = -1e9
        self._scan_key: object = None
        self._quit_presses = 0
        self._exit_when_ended = False
        self._ended = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status = Static("", id="status")
        self._status_shown: Text | None = None
        self._heard_events = False
        for slot in self.slots:
            if slot.name == "frame" and slot.panel is not None:
                options = getattr(slot.panel, "options", None)
                self.view.colormap = getattr(options, "colormap", self.view.colormap)

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self._status = Static(self._status_text(), id="status")
        yield self._status
        context = PanelContext(self, self.view, self.clock)
        with Horizontal(id="columns"):
            for column in ("left", "middle", "right"):
                slots = [s for s in self.slots if s.column == column]
                if not slots:
                    continue
                with Vertical(id=f"col-{column}", classes="column"):
                    for slot in slots:
                        yield self._box(slot, context)
        yield Footer()

    def _box(self, slot: PanelSlot, context: PanelContext) -> PanelBox:
        content: Widget
        if slot.error is None:
            try:
                attach = getattr(slot.panel, "on_attach", None)
                if attach is not None:
                    attach(context)
                content = slot.panel.widget()
            # A panel is plugin code: whatever it raises becomes its placeholder.
            except Exception as exc:  # noqa: BLE001
                slot.error = error_summary(exc)
        if slot.error is not None:
            content = _placeholder(slot.name, slot.error)
        box = PanelBox(content, id=f"panel-{slot.name}", classes="broken" if slot.error else "")
        box.border_title = slot.title
        slot.box = box
        return box

    def _break(self, slot: PanelSlot, exc: BaseException) -> None:
        slot.error = error_summary(exc)
        self._say(f"panel {slot.name!r} failed and was switched off: {slot.error}", "error")
        if slot.box is not None:
            slot.box.add_class("broken")
            slot.box.remove_children()
            slot.box.mount(_placeholder(slot.name, slot.error))

    def _call(self, slot: PanelSlot, method: str, *args: Any) -> None:
        if slot.error is not None:
            return
        fn = getattr(slot.panel, method, None)
        if fn is None:
            return
        try:
            fn(*args)
        # A broken panel must not break the dashboard (nor stop the others).
        except Exception as exc:  # noqa: BLE001
            self._break(slot, exc)

    # -- lifecycle ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._unsubscribe = self.link.subscribe(self.bridge)
        if self.main is not None:
            self._link_loop = asyncio.new_event_loop()
            self._run_thread = threading.Thread(
                target=self._host, name="probepilot-run", daemon=True
            )
            self._run_thread.start()
        self.set_interval(1.0 / self.tick_hz, self.tick)
        self.request_snapshot()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _host(self) -> None:
        """The run's thread: its own event loop, so drawing never delays it."""
        loop = self._link_loop
        assert loop is not None and self.main is not None
        asyncio.set_event_loop(loop)
        outcome = "stopped"
        try:
            self._main_task = loop.create_task(_as_coroutine(self.main))
            outcome = loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            outcome = "stopped"
        # Whatever the run raised is its outcome; the dashboard shows it rather than dying.
        except Exception as exc:  # noqa: BLE001
            outcome = f"failed: {error_summary(exc)}"
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()
            self.outcome = outcome
            self._ended.set()
            self.post_message(RunEnded(outcome))

    def stop_run(self, timeout: float = 30.0) -> None:
        """Make sure the hosted run has ended (the frontend calls it after the app closed):
        ask it to stop, then cancel it, waiting up to ``timeout`` seconds in all."""
        thread, loop = self._run_thread, self._link_loop
        if thread is None or loop is None or not thread.is_alive():
            return
        # A RuntimeError means the loop has just closed: the run is over.
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.link.command("stop", mode="abort"), loop)
        thread.join(timeout / 2)
        if thread.is_alive() and self._main_task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._main_task.cancel)
            thread.join(timeout / 2)

    def on_run_ended(self, message: RunEnded) -> None:
        self.outcome = self.info.outcome = message.outcome
        self.tick()
        if self._exit_when_ended:
            self.exit(message.outcome)
            return
        self._say(f"run {message.outcome}; q quits", "information")
        self._update_status()

    # -- talking to the run -----------------------------------------------------------------------

    async def on_link(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await ``coro`` (a link call) on the loop the run lives on."""
        loop = self._link_loop
        if loop is None:
            return await asyncio.wait_for(coro, LINK_TIMEOUT)
        if loop.is_closed() or self._ended.is_set():
            coro.close()
            raise ProbepilotError("the run has ended")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()
            raise ProbepilotError("the run has ended") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), LINK_TIMEOUT)
        except TimeoutError:
            raise ProbepilotError(f"the run did not answer within {LINK_TIMEOUT:g} s") from None

    def send(self, name: str, /, **args: Any) -> None:
        """Send an operator command without waiting for it; the reply becomes a notification."""
        task = asyncio.ensure_future(self.command(name, **args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def command(self, name: str, /, **args: Any) -> str | None:
        """Send an operator command and show its reply (errors as notifications)."""
        try:
            reply = str(await self.on_link(self.link.command(name, **args)))
        except ProbepilotError as exc:
            self._say(f"{name}: {exc}", "error")
            return None
        # A link (remote ones especially) may fail in ways of its own; never crash the UI.
        except Exception as exc:  # noqa: BLE001
            self._say(f"{name} failed: {type(exc).__name__}: {exc}", "error")
            return None
        self._say(reply, "warning" if "refused" in reply else "information")
        return reply

    def request_snapshot(self) -> None:
        if self._snapshot_busy:
            return
        self._snapshot_busy = True
        self._last_snapshot = self.monotonic()
        task = asyncio.ensure_future(self._snapshot())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot(self) -> None:
        async def take() -> dict[str, Any]:
            return dict(self.link.snapshot())

        try:
            if self._ended.is_set():
                snapshot = await take()  # the run's loop is gone; nothing changes any more
            else:
                snapshot = await self.on_link(take())
        except ProbepilotError:
            return
        # A link's snapshot failing must not take the dashboard down.
        except Exception as exc:  # noqa: BLE001
            self._say(f"snapshot failed: {type(exc).__name__}: {exc}", "error")
            return
        finally:
            self._snapshot_busy = False
        self.apply_snapshot(snapshot)

    def apply_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        info = self.info
        info.run_id = str(snapshot.get("run_id") or info.run_id)
        if not self._heard_events:
            # Events are newer than any snapshot: the snapshot only starts a late watcher off.
            info.state = str(snapshot.get("state") or info.state)
            info.tip = str(snapshot.get("tip_state") or info.tip)
        info.policy = str(snapshot.get("policy") or info.policy)
        info.policies = list(snapshot.get("policies") or info.policies)
        info.limits = snapshot.get("limits") or info.limits
        stats = snapshot.get("stats") or {}
        info.frames = int(stats.get("frames", info.frames))
        budget = snapshot.get("budget") or {}
        info.budget = budget.get("frames", info.budget)
        for slot in self.slots:
            self._call(slot, "on_snapshot", snapshot)
        self._update_status()

    def health(self) -> dict[str, Any]:
        bridge = self.bridge
        age = None if bridge.last_heard is None else max(0.0, self.monotonic() - bridge.last_heard)
        link = (
            "in-process"
            if self.main is not None
            else str(getattr(self.link, "address", "attached"))
        )
        return {
            "link": link,
            "lines": bridge.lines_seen,
            "events": bridge.events_seen,
            "last_heard_age": age,
        }

    # -- drawing --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Hand the new events to the panels, then the newest frame (coalesced)."""
        for raw in self.bridge.drain(EVENTS_PER_TICK):
            event = _normalise(raw)
            self._note(event)
            for slot in self.slots:
                self._call(slot, "on_event", event)
        scan = self.bridge.view()
        current = scan.current
        key = (
            None if current is None else (current.number, current.version),
            tuple(scan.recent),
        )
        if key != self._scan_key:
            self._scan_key = key
            for slot in self.slots:
                self._call(slot, "on_scan", scan)
        if self.monotonic() - self._last_snapshot >= SNAPSHOT_EVERY:
            self.request_snapshot()
        self._update_status()

    def _note(self, event: Event) -> None:
        self._heard_events = True
        info, data = self.info, event.data
        if event.type == ev.RUN_STARTED:
            info.run_id = str(data.get("run_id", ""))
            info.policy = str(data.get("policy", info.policy))
        elif event.type == ev.STATE_CHANGED:
            info.state = str(data.get("state"))
        elif event.type == ev.FRAME_PERSISTED:
            info.frames = max(info.frames, int(data.get("index", 0)))
            info.bias, info.setpoint = data.get("bias"), data.get("setpoint")
        elif event.type == ev.FRAME_ANALYSED:
            info.tip = str(data.get("tip_state", info.tip))
        elif event.type == ev.POLICY_DECIDED:
            info.policy = str(data.get("policy", info.policy))
        elif event.type == ev.ACTION_EXECUTED:
            action = data.get("action") or {}
            if isinstance(action, Mapping) and action.get("kind") == "bias":
                info.bias = action.get("voltage")
            elif isinstance(action, Mapping) and action.get("kind") == "setpoint":
                info.setpoint = action.get("current")
        elif event.type == ev.RUN_FINISHED:
            info.outcome = str(data.get("outcome"))

    def _status_text(self) -> Text:
        info = self.info
        text = Text.assemble(("probepilot", "bold"), "  ")
        state = info.state or "starting"
        text.append(f"● {state}", style=STATE_COLOURS.get(state, "bold"))
        budget = f"/{info.budget}" if info.budget else ""
        text.append(f"   frame {info.frames}{budget}")
        text.append("   tip ")
        text.append(info.tip, style=TIP_COLOURS.get(info.tip, ""))
        text.append(f"   policy {info.policy or '?'}")
        if info.bias is not None:
            text.append(f"   bias {q(info.bias, 'V')}", style="dim")
        if info.setpoint is not None:
            text.append(f"  setpoint {q(info.setpoint, 'A')}", style="dim")
        text.append(f"   {self.view.direction}", style="dim")
        if info.run_id:
            text.append(f"   run {info.run_id}", style="dim")
        if info.outcome is not None:
            text.append(f"   run {info.outcome} (q quits)", style="bold reverse")
        elif self._exit_when_ended:
            text.append("   stopping…", style="bold yellow")
        return text

    def _update_status(self) -> None:
        if self._status.is_mounted:
            text = self._status_text()
            if text != self._status_shown:
                self._status_shown = text
                self._status.update(text, layout=False)

    def _say(self, text: str, severity: str = "information") -> None:
        self.notices.append((severity, text))
        self.notify(text, severity=severity, timeout=6)  # type: ignore[arg-type]

    # -- controls -------------------------------------------------------------------------------

    def action_pause_resume(self) -> None:
        self.send("resume" if self.info.state == "paused" else "pause")

    def action_stop(self) -> None:
        self.send("stop", mode="finish")

    def action_abort(self) -> None:
        self.send("stop", mode="abort")

    def action_withdraw(self) -> None:
        self.send("withdraw")

    def action_policy(self) -> None:
        if not self.info.policies:
            self._say("no policies known yet (waiting for the run's snapshot)", "warning")
            return

        def chosen(name: str | None) -> None:
            if name and name != self.info.policy:
                self.send("switch_policy", name=name)

        self.push_screen(PolicyScreen(self.info.policies, self.info.policy), chosen)

    def _ask(self, title: str, unit: str, value: float | None, key: str, command: str) -> None:
        limits = self.info.limits
        if unit == "V":
            low, high = (limits.get("bias_range") or (None, None))[:2]
            hint = f"e.g. 0.5 V or -250 mV; allowed {q(low, 'V')} … {q(high, 'V')}"
        else:
            hint = (
                f"e.g. 50 pA or 0.2 nA; allowed {q(limits.get('min_setpoint'), 'A')} … "
                f"{q(limits.get('max_setpoint'), 'A')}"
            )
        hint += "\nThe safety envelope checks it. Enter sets it, Esc cancels."

        def chosen(quantity: float | None) -> None:
            if quantity is not None:
                self.send(command, **{key: quantity})

        initial = q(value, unit) if value is not None else ""
        self.push_screen(QuantityScreen(title, unit, initial, hint), chosen)

    def action_bias(self) -> None:
        self._ask("Tunnelling bias", "V", self.info.bias, "voltage", "set_bias")

    def action_setpoint(self) -> None:
        self._ask("Current setpoint", "A", self.info.setpoint, "current", "set_setpoint")

    def action_direction(self) -> None:
        self.view.direction = "backward" if self.view.direction == "forward" else "forward"
        self._view_changed()

    def action_colours(self) -> None:
        maps = list(COLORMAPS)
        current = maps.index(self.view.colormap) if self.view.colormap in maps else -1
        self.view.colormap = maps[(current + 1) % len(maps)]
        self._view_changed()

    def _view_changed(self) -> None:
        for slot in self.slots:
            self._call(slot, "on_view", self.view)
        self._update_status()

    def action_screenshot(self) -> None:
        folder = self.screenshots or Path.cwd()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.clock()))
        name = f"probepilot-{self.info.run_id or 'run'}-{stamp}.svg"
        path = self.save_screenshot(filename=name, path=str(folder))
        self._say(f"screenshot saved: {path}")

    async def action_quit(self) -> None:
        """Quit; a run hosted here is asked to stop first (q again cancels it at once)."""
        hosting = self._run_thread is not None and not self._ended.is_set()
        if not hosting:
            self.exit(self.outcome)
            return
        self._quit_presses += 1
        self._exit_when_ended = True
        self._update_status()
        if self._quit_presses == 1:
            self._say("stopping the run: the frame in progress is kept (q again: at once)")
            self.send("stop", mode="abort")
        elif self._quit_presses == 2 and self._main_task is not None and self._link_loop:
            self._say("cancelling the run", "warning")
            with contextlib.suppress(RuntimeError):
                self._link_loop.call_soon_threadsafe(self._main_task.cancel)
        else:
            self.exit(self.outcome)


def _builtin_slots() -> list[PanelSlot]:
    slots = []
    for name, (cls, column) in BUILTIN.items():
        panel = cls()
        slots.append(PanelSlot(name, panel.title, panel, column))
    return slots


async def _as_coroutine(main: Callable[[], Awaitable[str]]) -> str:
    return await main()
