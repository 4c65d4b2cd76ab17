"""A run's stream and its watchers: every event in order, every frame to a watcher that keeps
up, the newest frame to one that does not (without slowing the run), a snapshot and the
current image for a late watcher, commands back to the run, malformed messages survived."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepilot import events as ev
from probepilot.bus import wire
from probepilot.bus.publisher import StreamPublisher, run_published
from probepilot.bus.watcher import RemoteFrame, RemoteLink
from probepilot.errors import ProbepilotError
from probepilot.events import Event
from probepilot.model import Pulse, ScanArea
from probepilot.session import ScanLine

pytestmark = pytest.mark.timeout(60)

AREA = ScanArea((0.0, 0.0), (10e-9, 10e-9), 16, 8)


class FakeRun:
    """Just enough of a Session for the publisher: subscribers, a snapshot, commands."""

    def __init__(self) -> None:
        self.subscribers: list[Callable[[Any], None]] = []
        self.seq = 0
        self.frames = 0
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def snapshot(self) -> dict[str, Any]:
        return {"run_id": "run-1", "state": "image", "stats": {"frames": self.frames}}

    async def command(self, name: str, /, **args: Any) -> str:
        self.commands.append((name, args))
        if name == "refuse":
            raise ProbepilotError("unknown operator command 'refuse'", hint="commands: pause")
        if name == "set_bias":
            return f"done: bias {float(args['voltage'])}"
        return f"ok {name}"

    def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        self.seq += 1
        event = Event(type, self.seq, data or {})
        for callback in list(self.subscribers):
            callback(event)

    def scan(self, lines: int = AREA.lines) -> None:
        """One frame: its lines, then persisted, then analysed (with a dataclass inside)."""
        index = self.frames + 1
        rng = np.random.default_rng(index)
        for row in range(lines):
            line = ScanLine(
                index,
                row,
                AREA.lines,
                AREA.pixels,
                AREA,
                {"Z": rng.normal(size=AREA.pixels) + index},
                {"Z": rng.normal(size=AREA.pixels)},
            )
            for callback in list(self.subscribers):
                callback(line)
        self.frames = index
        self.emit(
            ev.FRAME_PERSISTED,
            {
                "file": f"frames/frame-{index:06d}.sxm",
                "index": index,
                "lines_done": lines,
                "complete": lines == AREA.lines,
                "lines": AREA.lines,
            },
        )
        self.emit(ev.POLICY_DECIDED, {"action": Pulse(4.0, 0.2), "policy": "random"})


class Published:
    """A FakeRun published from an event loop in a thread, as a run would be."""

    def __init__(self, **options: Any) -> None:
        self.run = FakeRun()
        self.publisher = StreamPublisher("tcp://127.0.0.1:0", heartbeat=0.1, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.publisher.start(self.run))

    @property
    def address(self) -> str:
        return self.publisher.address

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    def do(self, fn: Callable[[], Any]) -> Any:
        async def wrapped() -> Any:
            return fn()

        return self.call(wrapped())

    def close(self) -> None:
        self.call(self.publisher.close(drain=0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def published() -> Iterator[Published]:
    p = Published()
    try:
        yield p
    finally:
        p.close()


class Recorder:
    def __init__(self, link: RemoteLink) -> None:
        self.events: list[Event] = []
        self.lines: list[ScanLine] = []
        self.frames: list[RemoteFrame] = []
        link.subscribe(lambda i: (self.lines if isinstance(i, ScanLine) else self.events).append(i))
        link.subscribe_frames(self.frames.append)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_watcher_gets_every_event_in_order_every_line_and_every_frame(
    published: Published,
) -> None:
    with RemoteLink(published.address, timeout=5) as link:
        seen = Recorder(link)
        for _ in range(3):
            published.do(published.run.scan)
        published.do(lambda: published.run.emit(ev.RUN_FINISHED, {"outcome": "completed"}))
        assert link.wait_finished(10)
        wait_for(lambda: len(seen.frames) == 3)
    assert [e.seq for e in seen.events] == list(range(1, 8))
    assert link.outcome == "completed"
    assert [f.index for f in seen.frames] == [1, 2, 3]
    # Every row of every frame arrived as a line (rows the stream missed while the subscription
    # was being set up come again, as the whole frame, when the frame itself arrives).
    rows = {(ln.frame, ln.row): ln.forward["Z"] for ln in seen.lines}
    assert set(rows) == {(f, r) for f in (1, 2, 3) for r in range(AREA.lines)}
    frame = seen.frames[-1]
    assert frame.area == AREA and frame.complete and frame.channels["Z"][0].dtype == np.float32
    # The frame holds what the lines carried.
    lines = np.array([rows[3, r] for r in range(AREA.lines)])
    assert np.allclose(frame.channels["Z"][0], lines, atol=1e-5)
    # Actions travel as the journal writes them and come back as the dataclasses they were.
    decided = [e for e in seen.events if e.type == ev.POLICY_DECIDED]
    assert decided[0].data["action"] == Pulse(4.0, 0.2)


def test_a_late_watcher_starts_from_the_snapshot_and_the_current_image(
    published: Published,
) -> None:
    for _ in range(2):
        published.do(published.run.scan)
    with RemoteLink(published.address, timeout=5) as link:
        seen = Recorder(link)
        assert link.snapshot()["stats"] == {"frames": 2}
        wait_for(lambda: len(seen.frames) == 1)
        assert seen.frames[0].index == 2  # the current image, at once
        # ... also as scan lines, so a dashboard's live view shows it.
        wait_for(lambda: len(seen.lines) == AREA.lines)
        assert {ln.frame for ln in seen.lines} == {2}
        assert seen.events == []  # nothing from before the snapshot
        published.do(published.run.scan)
        # Frames and events travel on separate sockets: neither waits for the other.
        wait_for(lambda: len(seen.frames) == 2 and len(seen.events) >= 2)
        assert [e.seq for e in seen.events] == [5, 6]


def test_gaps_in_the_stream_are_filled_from_the_runs_ring(published: Published) -> None:
    with RemoteLink(published.address, timeout=5) as link:
        seen = Recorder(link)
        published.do(lambda: published.run.emit("a"))
        wait_for(lambda: len(seen.events) == 1)

        def lost_on_the_way() -> None:
            # An event that never reaches the PUB socket (as if a high-water mark dropped it).
            subscribers, published.run.subscribers = published.run.subscribers, []
            published.run.emit("b")
            published.run.subscribers = subscribers
            published.publisher._ring.append({"type": "b", "seq": 2, "time": 0.0, "data": {}})
            published.publisher._last_seq = 2
            published.run.emit("c")

        published.do(lost_on_the_way)
        wait_for(lambda: len(seen.events) == 3)
        assert [(e.seq, e.type) for e in seen.events] == [(1, "a"), (2, "b"), (3, "c")]


def test_a_slow_watcher_never_slows_the_run_and_gets_the_newest_frame() -> None:
    published = Published(window=2)
    stuck = zmq.Context.instance().socket(zmq.DEALER)  # says hello, then never reads
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.connect(published.address)
    stuck.send_multipart(wire.encode("hello", {"window": 2}))
    loop = asyncio.new_event_loop()
    slow_frames: list[int] = []
    slow_events: list[int] = []

    def slow(frame: RemoteFrame) -> None:
        slow_frames.append(frame.index)
        time.sleep(0.2)  # a dashboard busy drawing: its loop is blocked meanwhile

    try:
        with (
            RemoteLink(published.address, timeout=5) as fast,
            RemoteLink(published.address, timeout=5) as slow_link,
        ):
            fast_seen = Recorder(fast)

            async def subscribe_on_the_slow_loop() -> None:
                slow_link.subscribe_frames(slow)
                slow_link.subscribe(lambda e: isinstance(e, Event) and slow_events.append(e.seq))

            loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
            loop_thread.start()
            asyncio.run_coroutine_threadsafe(subscribe_on_the_slow_loop(), loop).result(5)
            wait_for(lambda: len(published.publisher.watchers) == 3)

            started = time.monotonic()
            for _ in range(40):
                published.do(published.run.scan)
            publishing = time.monotonic() - started
            wait_for(lambda: [f.index for f in fast_seen.frames[-1:]] == [40])
            wait_for(lambda: slow_frames[-1:] == [40])
            wait_for(lambda: len(slow_events) == 80)
        fast_indices = [f.index for f in fast_seen.frames]
        # The fast one keeps up (on a loaded machine it may skip a few, newest first, in order).
        assert fast_indices == sorted(set(fast_indices)) and len(fast_indices) > len(slow_frames)
        assert len(slow_frames) < 40  # fell behind: skipped to the newest ...
        assert slow_events == list(range(1, 81))  # ... but lost no event
        stuck_state = next(w for w in published.publisher.watchers.values() if w.credit == 0)
        assert stuck_state.sent <= 2  # the stuck one was sent its window's worth, no more
        assert publishing < 5.0, "publishing waited for a watcher"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        stuck.close()
        published.close()


def test_commands_reach_the_run_and_its_refusals_come_back(published: Published) -> None:
    with RemoteLink(published.address, timeout=5) as link:

        async def main() -> None:
            assert await link.command("pause") == "ok pause"
            assert await link.command("set_bias", voltage=0.5) == "done: bias 0.5"
            with pytest.raises(ProbepilotError, match="unknown operator command 'refuse'"):
                await link.command("refuse")
            with pytest.raises(ProbepilotError, match="set_bias: bad arguments: KeyError"):
                await link.command("set_bias")

        asyncio.run(main())
    assert published.run.commands[0] == ("pause", {})


def test_watching_nothing_fails_within_the_timeout() -> None:
    link = RemoteLink("tcp://127.0.0.1:9", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ProbepilotError, match=re.escape("no run answers at tcp://127.0.0.1:9")):
        link.start()
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------------------- fuzzing


fuzz_frames = st.lists(st.binary(max_size=64), max_size=3) | st.builds(
    lambda header: [msgpack.packb(header)],
    st.dictionaries(
        st.sampled_from(["v", "t", "s", "c", "ts", "a", "b"]),
        st.one_of(
            st.integers(-2, 3),
            st.sampled_from(["hello", "ack", "replay", "command", "event", "frame"]),
            st.lists(st.integers(0, 2), max_size=2),
            st.dictionaries(
                st.sampled_from(["from", "name", "args", "window"]),
                st.integers(-(2**63), 2**63 - 1),
            ),
        ),
        max_size=7,
    ),
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=fuzz_frames)
def test_fuzzed_requests_never_stop_the_publisher(
    published: Published, frames: list[bytes]
) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(published.address)
    try:
        if frames:
            sock.send_multipart(frames)
        sock.send_multipart(wire.encode("ping", {}, cid=7))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert sock.poll(5000)
            reply = wire.decode(sock.recv_multipart())
            if reply.type == "pong":
                break
        else:
            pytest.fail("no pong")
    finally:
        sock.close()


class FakePublisher:
    """Raw sockets posing as a run, to feed a watcher whatever the test likes."""

    def __init__(self) -> None:
        context = zmq.Context.instance()
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind("tcp://127.0.0.1:*")
        self.pub = context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind("tcp://127.0.0.1:*")
        self.address = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.stream_port = int(self.pub.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
        self.identity = b""

    def welcome(self) -> None:
        assert self.router.poll(5000)
        identity, *frames = self.router.recv_multipart()
        hello = wire.decode(frames)
        self.identity = identity
        body = {
            "snapshot": {"state": "image"},
            "seq": 0,
            "instance": "i",
            "frame": 0,
            "stream": self.stream_port,
        }
        self.router.send_multipart([identity, *wire.encode("welcome", body, cid=hello.cid)])

    def event(self, seq: int) -> list[bytes]:
        body = {"type": "x", "seq": seq, "time": 1.0, "data": {}}
        return [b"ev", *wire.encode("event", body)]

    def close(self) -> None:
        self.router.close()
        self.pub.close()


@pytest.fixture(scope="module")
def fake_run() -> Iterator[tuple[FakePublisher, RemoteLink, list[Event]]]:
    fake = FakePublisher()
    link = RemoteLink(fake.address, timeout=5)
    events: list[Event] = []
    link.subscribe(lambda e: isinstance(e, Event) and events.append(e))
    starting = threading.Thread(target=link.start)
    starting.start()
    fake.welcome()
    starting.join(5)
    # The SUB connects after the welcome; wait until it gets what we publish.
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        fake.pub.send_multipart(fake.event(1))
        time.sleep(0.05)
    assert events
    yield fake, link, events
    link.close()
    fake.close()


@settings(max_examples=60, deadline=None)
@given(frames=fuzz_frames, to_stream=st.booleans())
def test_fuzzed_messages_never_stop_the_watcher(
    fake_run: tuple[FakePublisher, RemoteLink, list[Event]], frames: list[bytes], to_stream: bool
) -> None:
    fake, link, events = fake_run
    assert link.connected.is_set()
    if frames:
        if to_stream:
            fake.pub.send_multipart([b"ev", *frames])
        else:
            fake.router.send_multipart([fake.identity, *frames])
    # The watcher still takes the next proper event.
    seq = events[-1].seq + 1
    fake.pub.send_multipart(fake.event(seq))
    wait_for(lambda: events[-1].seq == seq, timeout=5)


# ---------------------------------------------------------------------------- a real run


def test_a_real_session_published_and_stopped_from_a_watcher(tmp_path: Path) -> None:
    from probepilot.config import load_config
    from probepilot.session import Session

    config_file = tmp_path / "run.toml"
    config_file.write_text(
        "analyzers = []\n"
        '[drivers.sim]\nseed = 3\ntime_scale = 20\n[run]\npixels = 16\nline_time = "20 ms"\n',
        encoding="utf-8",
    )
    config, manager = load_config(config_file)
    session = Session(config, manager, frames=1000)
    outcome: list[str] = []
    announced = threading.Event()
    address: list[str] = []

    def announce(line: str) -> None:
        address.append(line.split("publishing the run on ", 1)[1].split(" ", 1)[0])
        announced.set()

    runner = threading.Thread(
        target=lambda: outcome.append(
            asyncio.run(run_published(session, "tcp://127.0.0.1:0", announce=announce))
        )
    )
    runner.start()
    assert announced.wait(10)
    with RemoteLink(address[0], timeout=5) as link:
        seen = Recorder(link)
        wait_for(lambda: len(seen.frames) >= 2)
        assert link.snapshot()["driver"] == "sim"

        async def stop() -> str:
            return await link.command("stop", mode="abort")

        assert asyncio.run(stop()) == "stopping now"
        assert link.wait_finished(10)
    runner.join(10)
    assert outcome == ["stopped"]
    assert link.outcome == "stopped"
    assert any(e.type == ev.OPERATOR_COMMAND for e in seen.events)
