"""The driver host and its client: malformed requests answered and survived, timeouts and
retries, a client that vanishes mid-scan, a host that restarts, the status stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepilot.bus import wire
from probepilot.bus.host import HostThread
from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    LimitError,
    ProtocolError,
)
from probepilot.model import ScanArea, ScanSettings
from probepilot_remote.driver import RemoteDriver
from probepilot_remote.options import RemoteOptions
from probepilot_sim.driver import SimDriver
from probepilot_sim.options import SimOptions

pytestmark = pytest.mark.timeout(60)


def sim(time_scale: float = 0.0) -> SimDriver:
    return SimDriver(SimOptions(seed=2, tip="good", time_scale=time_scale))


def remote(address: str, **options: Any) -> RemoteDriver:
    return RemoteDriver(
        RemoteOptions(address=address, **{"timeout": 2.0, "heartbeat": 0.1, **options})
    )


@pytest.fixture(scope="module")
def host() -> Iterator[HostThread]:
    with HostThread(sim()) as host:
        yield host


class RawClient:
    """A bare DEALER, to send what a proper client never would."""

    def __init__(self, address: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def send(self, frames: list[Any]) -> None:
        self.sock.send_multipart(frames)

    def request(self, type: str, body: dict[str, Any], cid: int = 1) -> wire.Message:
        self.send(wire.encode(type, body, cid=cid))
        return self.receive()

    def receive(self, timeout: float = 5.0) -> wire.Message:
        assert self.sock.poll(int(timeout * 1000)), "no reply"
        return wire.decode(self.sock.recv_multipart())

    def drain(self) -> None:
        while self.sock.poll(0):
            self.sock.recv_multipart()

    def close(self) -> None:
        self.sock.close(linger=0)


def test_bad_requests_are_answered_with_protocol_errors_and_reach_no_driver(
    host: HostThread,
) -> None:
    client = RawClient(host.address)
    try:
        before = host.host.driver.microscope.bias  # type: ignore[attr-defined]
        cases = [
            ({"m": "format_disk", "a": []}, "unknown driver operation 'format_disk'"),
            ({"m": "set_bias", "a": ["10 V"]}, "set_bias argument 1: '10 V' is not a number"),
            ({"m": "set_bias", "a": [0.1, 0.2]}, "set_bias takes 1 arguments, not 2"),
            ({"m": "set_bias"}, "'a' is None, expected list"),
            ({"m": "scan", "a": [{"__t": "Popen"}]}, "is not a ScanSettings"),
        ]
        for i, (body, problem) in enumerate(cases):
            reply = client.request("call", body, cid=i + 10)
            assert reply.type == "error" and reply.cid == i + 10
            assert reply.body["type"] == "ProtocolError" and problem in reply.body["message"]
        garbage = client.request("call", {}, cid=0)  # no method at all
        assert garbage.body["type"] == "ProtocolError"
        client.send([b"\x93\x01\x02"])  # not a header at all
        assert client.receive().body["type"] == "ProtocolError"
        assert host.host.driver.microscope.bias == before  # type: ignore[attr-defined]
    finally:
        client.close()


header_values = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.text(max_size=8),
    st.sampled_from(["call", "hello", "ping", "cancel", "bye", "set_bias", "scan"]),
    st.lists(st.integers(-2, 2), max_size=3),
    st.dictionaries(st.sampled_from(["m", "a", "target"]), st.integers(0, 3), max_size=3),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frames=st.lists(st.binary(max_size=80), min_size=0, max_size=3)
    | st.builds(
        lambda header, buffers: [msgpack.packb(header), *buffers],
        st.dictionaries(
            st.sampled_from(["v", "t", "s", "c", "ts", "a", "b"]), header_values, max_size=7
        ),
        st.lists(st.binary(max_size=16), max_size=2),
    )
)
def test_fuzzed_messages_never_stop_the_host(host: HostThread, frames: list[bytes]) -> None:
    client = RawClient(host.address)
    try:
        if frames:
            client.send(frames)
        # Whatever that was, the host still answers a ping.
        reply = client.request("ping", {}, cid=99)
        while reply.type != "pong":
            reply = client.receive()
        assert reply.body["driver"] == "sim"
    finally:
        client.close()


def test_a_proper_client_still_works_after_the_fuzzing(host: HostThread) -> None:
    async def main() -> None:
        driver = remote(host.address)
        await driver.connect()
        await driver.set_bias(0.3)
        assert await driver.get_bias() == pytest.approx(0.3)
        with pytest.raises(LimitError, match="outside"):
            await driver.set_bias(50.0)
        await driver.close()

    asyncio.run(main())


def test_status_is_published_every_heartbeat(host: HostThread) -> None:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    sub.connect(host.host.status_address)
    try:
        assert sub.poll(5000), "no status within 5 s"
        topic, *frames = sub.recv_multipart()
        status = wire.decode(frames)
        assert topic == b"status" and status.type == "status"
        assert status.body["driver"] == "sim" and status.body["instance"] == host.host.instance
    finally:
        sub.close()


# ---------------------------------------------------------------------------- timeouts


class SilentHost:
    """A ROUTER that takes requests and never answers: a hung host."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.address = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def received(self) -> list[wire.Message]:
        out = []
        while self.sock.poll(0):
            out.append(wire.decode(self.sock.recv_multipart()[1:]))
        return out

    def welcome(self) -> None:
        """Answer the first hello, so a client can connect."""
        assert self.sock.poll(5000)
        identity, *frames = self.sock.recv_multipart()
        hello = wire.decode(frames)
        body = {"instance": "x", "driver": "silent", "capabilities": []}
        self.sock.send_multipart([identity, *wire.encode("welcome", body, cid=hello.cid)])


def test_reads_are_retried_after_a_timeout_but_settings_are_sent_once() -> None:
    silent = SilentHost()

    async def main() -> None:
        driver = remote(silent.address, timeout=0.2, retries=2, heartbeat=5.0)
        connecting = asyncio.ensure_future(driver.connect())
        await asyncio.to_thread(silent.welcome)
        await connecting
        started = time.monotonic()
        with pytest.raises(DriverTimeoutError, match=r"get_bias: no reply .* \(3 attempts\)"):
            await driver.get_bias()
        assert 0.55 < time.monotonic() - started < 2.0
        with pytest.raises(DriverTimeoutError, match="set_bias: no reply"):
            await driver.set_bias(0.2)
        await driver.close()

    asyncio.run(main())
    calls = [m.body["m"] for m in silent.received() if m.type == "call"]
    assert calls == ["get_bias", "get_bias", "get_bias", "set_bias"]
    silent.sock.close()


def test_connecting_to_nothing_fails_within_the_timeout() -> None:
    async def main() -> None:
        driver = remote("tcp://127.0.0.1:9", timeout=0.3, retries=0)
        started = time.monotonic()
        with pytest.raises(DriverConnectionError, match="no answer from the driver host"):
            await driver.connect()
        assert time.monotonic() - started < 3.0

    asyncio.run(main())


def test_a_long_call_fails_when_the_host_falls_silent() -> None:
    silent = SilentHost()

    async def main() -> None:
        driver = remote(silent.address, timeout=0.3, heartbeat=0.05)
        connecting = asyncio.ensure_future(driver.connect())
        await asyncio.to_thread(silent.welcome)
        await connecting
        with pytest.raises(DriverTimeoutError, match="approach: no word from the driver host"):
            await driver.approach()  # long: no reply deadline, but the pings go unanswered
        await driver.close()

    asyncio.run(main())
    silent.sock.close()


# ---------------------------------------------------------------------------- lost clients

SLOW_SCAN = ScanSettings(ScanArea((0.0, 0.0), (10e-9, 10e-9), 16, 64), 0.05)  # ~6.4 s at 1x


@pytest.mark.parametrize("withdraw", [True, False])
def test_a_client_that_vanishes_mid_scan_leaves_no_half_state(withdraw: bool) -> None:
    notes: list[str] = []
    driver = sim(time_scale=1.0)
    with HostThread(
        driver, client_timeout=0.5, heartbeat=0.1, withdraw_on_loss=withdraw, log=notes.append
    ) as host:
        client = RawClient(host.address)
        assert client.request("hello", {"client": "doomed"}).type == "welcome"
        client.send(wire.encode("call", {"m": "scan", "a": [_wire(SLOW_SCAN)]}, cid=5))
        progress = client.receive()
        assert progress.type == "progress" and progress.cid == 5
        client.close()  # gone without a word, mid-scan
        deadline = time.monotonic() + 10
        expected = "withdrew the tip" if withdraw else "aborted scan"
        while not any(expected in n for n in notes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("client doomed fell silent" in n and "aborted scan" in n for n in notes), notes
        assert host.host.clients == {}
        scope = driver.microscope
        assert scope.withdrawn is withdraw
        # The aborted scan released the instrument: the next client scans at once.

        async def scan_again() -> None:
            d = remote(host.address)
            await d.connect()
            if withdraw:
                await d.approach()
            small = ScanSettings(ScanArea((0.0, 0.0), (10e-9, 10e-9), 8, 4), 0.01)
            assert (await d.scan(small)).complete
            await d.close()

        asyncio.run(scan_again())


def _wire(value: Any) -> Any:
    from probepilot.bus import codec

    return codec.to_wire(value)


# ---------------------------------------------------------------------------- restarts


def test_the_client_recovers_when_the_host_restarts_on_the_same_address() -> None:
    first = HostThread(sim(time_scale=1.0), heartbeat=0.1).start()
    address = first.address

    async def main() -> None:
        driver = remote(address, timeout=2.0, heartbeat=0.05)
        await driver.connect()
        scan = asyncio.ensure_future(driver.scan(SLOW_SCAN))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(first.stop)  # the host goes away mid-scan
        # The host says it aborted the scan; on a loaded machine its last word can be late
        # and the client's own deadline fires first. Either way the call fails, typed.
        with pytest.raises((DriverConnectionError, DriverTimeoutError)):
            await scan
        with HostThread(sim(), address) as second:
            # What the session does after a driver error: close, connect, carry on.
            await driver.close()
            await driver.connect()
            await driver.set_bias(0.4)
            assert await driver.get_bias() == pytest.approx(0.4)
            assert second.host.served >= 2
            await driver.close()

    asyncio.run(main())


def test_calls_in_flight_fail_at_once_when_the_host_restarted() -> None:
    """A host killed and restarted between two pings: the pong of the new instance fails the
    call that the old one took with it (no waiting for a timeout)."""
    silent = SilentHost()

    async def main() -> None:
        driver = remote(silent.address, timeout=5.0, heartbeat=0.05)
        connecting = asyncio.ensure_future(driver.connect())
        await asyncio.to_thread(silent.welcome)
        await connecting
        approach = asyncio.ensure_future(driver.approach())
        await asyncio.sleep(0.2)

        def pong_from_a_new_instance() -> None:
            while silent.sock.poll(1000):
                identity, *frames = silent.sock.recv_multipart()
                message = wire.decode(frames)
                if message.type == "ping":
                    body = {"instance": "new", "driver": "silent"}
                    silent.sock.send_multipart([identity, *wire.encode("pong", body)])
                    return

        await asyncio.to_thread(pong_from_a_new_instance)
        started = time.monotonic()
        with pytest.raises(DriverConnectionError, match="restarted"):
            await approach
        assert time.monotonic() - started < 1.0
        await driver.close()

    asyncio.run(main())
    silent.sock.close()


def test_protocol_errors_from_the_host_reach_the_caller_as_such(host: HostThread) -> None:
    async def main() -> None:
        driver = remote(host.address)
        await driver.connect()
        client = driver._client
        assert client is not None
        with pytest.raises(ProtocolError, match="takes 1 arguments"):
            await client.call("set_bias", [1.0, 2.0])
        await driver.close()

    asyncio.run(main())


def test_frames_from_the_host_are_writable_float64(host: HostThread) -> None:
    async def main() -> None:
        driver = remote(host.address)
        await driver.connect()
        small = ScanSettings(ScanArea((0.0, 0.0), (10e-9, 10e-9), 8, 4), 0.01)
        frame = await driver.scan(small)
        z = frame.channels["Z"].forward
        assert z.dtype == np.float64 and z.flags.writeable
        z -= z.mean()  # analyzers may level in place
        await driver.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------- eager calls


def test_calls_run_eagerly_and_what_suspends_carries_on_as_a_task() -> None:
    from probepilot.bus.host import start_eagerly

    async def main() -> None:
        steps: list[str] = []

        async def quick() -> None:
            steps.append("quick")

        assert start_eagerly(quick()) is None and steps == ["quick"]  # no task at all

        async def slow() -> None:
            steps.append("start")
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            steps.append("end")

        task = start_eagerly(slow())
        assert task is not None and steps[-1] == "start"  # ran up to its first suspension
        await task
        assert steps[-1] == "end"

        async def failing() -> None:
            await asyncio.sleep(0.01)
            raise LimitError("outside")

        task = start_eagerly(failing())
        assert task is not None
        with pytest.raises(LimitError):
            await task

        async def cancelled() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                steps.append("saw the cancellation")
                raise

        task = start_eagerly(cancelled())
        assert task is not None
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and steps[-1] == "saw the cancellation"

    asyncio.run(main())
