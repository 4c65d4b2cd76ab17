"""probepilot's ZeroMQ transport against raw pyzmq on the same machine, same run; prints one
JSON line.

Figures:

- **Frame stream**: 512 x 512 float32 frames (1 MiB each) from a sender to a receiver in
  another process over tcp loopback, 1.5 s per round, five rounds, each round running the
  three peers back to back (so load from other processes hits them alike), at windows 2
  (probepilot's default, what ``probepilot watch`` and its dashboard use), 1 and 4:

  - probepilot: ``StreamPublisher.publish_frame`` -> ``RemoteLink.subscribe_frames``
    (ROUTER -> DEALER; msgpack header and the raw buffer, zero copy both ways; strict
    decoding up to the numpy view and the ``RemoteFrame``; the watcher's credit of ``window``
    frames, newest frame wins). The producer keeps one frame ready (``publisher.demand()``),
    as the raw sender's blocking send keeps its next frame queued.
  - raw pyzmq, the pipe: ROUTER -> DEALER, the very same bytes (probepilot's header for such
    a frame, then the frame's buffer), ``copy=False`` on both sides, high-water marks of
    ``window`` on both sockets, a blocking send, a receiver that takes each message and never
    touches its data (as probepilot's receiver here). ZeroMQ's marks do not count what the
    kernel's socket buffers hold (several MiB on loopback), so this pipe has many frames in
    flight whatever the window and never drops a stale one: the ceiling of the link, not a
    stream with probepilot's guarantees.
  - raw pyzmq, same protocol: the same sockets and bytes with probepilot's flow control done
    in a minimal blocking loop (at most ``window`` frames unacknowledged, the receiver acks
    each frame on arrival with probepilot's ack bytes): the best a credit stream can do here.

  ``frames_per_s`` and ``mb_per_s`` are what the receivers got (median of the rounds) at
  window 2; ``stream_ratio`` = the median over rounds of probepilot / the raw pipe at window 2
  (target >= 0.7), ``stream_ratio_window_1`` and ``_4`` the same at windows 1 and 4;
  ``stream_ratio_same_protocol`` = probepilot / raw same protocol at window 2;
  ``credit_ceiling`` = raw same protocol / raw pipe at each window (what flow control itself
  costs, whoever implements it).
- **Round trip**: the median time of a small command, ``await driver.get_bias()`` of the
  remote driver against ``probepilot serve --driver sim`` (another process), and raw pyzmq
  REQ -> REP echoing a message of the same size, 3,000 calls each in alternating blocks of
  250 so background load hits both alike; ``rtt_ratio`` = probepilot / raw (target <= 2).

Run: ``.venv/bin/python benchmarks/bench_bus.py`` (about two minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import zmq

from probepilot.bus import codec, wire
from probepilot.bus.publisher import StreamPublisher
from probepilot.bus.watcher import RemoteFrame, RemoteLink
from probepilot.model import ScanArea
from probepilot_remote.driver import RemoteDriver
from probepilot_remote.options import RemoteOptions

PIXELS = 512
FRAME_BYTES = PIXELS * PIXELS * 4
SECONDS = 1.5
ROUNDS = 5
CALLS = 3000
BLOCK = 250
WINDOWS = (2, 1, 4)  # the first is the default window, the headline


# ---------------------------------------------------------------------------- receivers


def receive_raw(address: str, seconds: float, window: int, ack: bool) -> dict[str, float]:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, window)
    sock.connect(address)
    sock.send(b"hello")  # the ROUTER learns this peer (probepilot's watcher says hello too)
    ack_bytes = wire.encode("ack", {}, seq=1)[0]  # probepilot's ack
    count = 0
    first = last = 0.0
    while True:
        frames = sock.recv_multipart(copy=False)
        if ack:
            sock.send(ack_bytes)  # on arrival, as probepilot's watcher does
        now = time.perf_counter()
        assert len(frames[1].buffer) == FRAME_BYTES
        if count == 0:
            first = now
        count += 1
        last = now
        if now - first >= seconds:
            break
    sock.close(linger=0)
    return {"frames": count - 1, "seconds": last - first}


def receive_ours(address: str, seconds: float, window: int) -> dict[str, float]:
    times: list[float] = []

    def got(frame: RemoteFrame) -> None:
        assert frame.channels["Z"][0].nbytes == FRAME_BYTES
        times.append(time.perf_counter())

    link = RemoteLink(address, timeout=10, window=window)
    link.subscribe_frames(got)  # outside any loop: called on the network thread
    link.start()
    while not times or times[-1] - times[0] < seconds:
        time.sleep(0.01)
    link.close()
    return {"frames": len(times) - 1, "seconds": times[-1] - times[0]}


def receiver(kind: str, address: str, window: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, f"receive-{kind}", address, str(SECONDS), str(window)],
        stdout=subprocess.PIPE,
        text=True,
    )


def result_of(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=60)
    got: dict[str, float] = json.loads(out)
    return got


# ---------------------------------------------------------------------------- senders


AREA = codec.to_wire(ScanArea((0.0, 0.0), (1e-7, 1e-7), PIXELS, PIXELS))


def frame_body(frame: np.ndarray, index: int) -> dict[str, Any]:
    return {"index": index, "area": AREA, "channels": {"Z": {"forward": frame}}}


def raw_sender(kind: str, frame: np.ndarray, window: int) -> tuple[Any, ...]:
    """A bound ROUTER, its receiver (started), the receiver's identity, the bytes to send."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, window)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe blocks the send (as PUSH would)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    proc = receiver(kind, sock.getsockopt(zmq.LAST_ENDPOINT).decode(), window)
    identity = sock.recv_multipart()[0]
    # The very bytes probepilot sends: its header for such a frame, then the frame's buffer.
    header = wire.encode("frame", frame_body(frame, 1), seq=1)[0]
    return sock, proc, [identity, header, frame]


def stream_raw(frame: np.ndarray, window: int) -> float:
    sock, proc, message = raw_sender("raw", frame, window)
    sock.setsockopt(zmq.SNDTIMEO, 100)
    while proc.poll() is None:
        # full: try again (SNDTIMEO bounds the wait); gone: the receiver is done
        with contextlib.suppress(zmq.Again, zmq.ZMQError):
            sock.send_multipart(message, copy=False)
    sock.close(linger=0)
    got = result_of(proc)
    return got["frames"] / got["seconds"]


def stream_raw_credit(frame: np.ndarray, window: int) -> float:
    sock, proc, message = raw_sender("raw-credit", frame, window)
    sock.setsockopt(zmq.RCVTIMEO, 100)
    # A receiver that has just finished may leave a send blocked on its full pipe: bounded.
    sock.setsockopt(zmq.SNDTIMEO, 100)
    credit = window
    while proc.poll() is None:
        with contextlib.suppress(zmq.ZMQError):  # full (zmq.Again) or gone: done or retried
            while credit > 0:
                sock.send_multipart(message, copy=False)
                credit -= 1
        with contextlib.suppress(zmq.Again):  # no ack yet (RCVTIMEO bounds the wait)
            sock.recv_multipart()
            credit += 1
    sock.close(linger=0)
    got = result_of(proc)
    return got["frames"] / got["seconds"]


async def stream_ours(frame: np.ndarray, window: int) -> float:
    publisher = StreamPublisher("tcp://127.0.0.1:0", window=window)
    await publisher.start()
    proc = receiver("ours", publisher.address, window)

    async def produce() -> None:
        # A producer as fast as the watcher takes frames (a real run is far slower; this
        # measures the ceiling): one frame always ready, sent the moment the watcher's credit
        # comes back, as the raw sender's next frame waits in its queue.
        index = 0
        while True:
            await publisher.demand()
            index += 1
            publisher.publish_frame(frame_body(frame, index))

    producer = asyncio.get_running_loop().create_task(produce())
    await asyncio.to_thread(proc.wait)  # the receiver has its figure
    producer.cancel()
    await publisher.close(drain=0)
    got = result_of(proc)
    return got["frames"] / got["seconds"]


# ---------------------------------------------------------------------------- round trips


def start(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    address = next((w.rstrip(",;()") for w in line.split() if w.startswith("tcp://")), None)
    if address is None:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, address


def rep_server() -> None:
    sock = zmq.Context.instance().socket(zmq.REP)
    sock.bind("tcp://127.0.0.1:*")
    print(sock.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
    reply = wire.encode("result", {"value": 0.1}, seq=1, cid=1)[0]
    while True:
        if sock.recv() == b"quit":
            sock.send(b"")
            return
        sock.send(reply)


async def round_trips(host: str, rep: str) -> dict[str, float]:
    driver = RemoteDriver(RemoteOptions(address=host, timeout=10.0))
    await driver.connect()
    req = zmq.Context.instance().socket(zmq.REQ)
    req.connect(rep)
    request = wire.encode("call", {"m": "get_bias", "a": []}, seq=1, cid=1)[0]

    async def ours(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await driver.get_bias()
            out.append(time.perf_counter() - t0)
        return out

    def raw(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            req.send(request)
            req.recv()
            out.append(time.perf_counter() - t0)
        return out

    await ours(200)  # warm up both
    raw(200)
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(CALLS // BLOCK):
        mine += await ours(BLOCK)
        theirs += raw(BLOCK)
    req.send(b"quit")
    req.recv()
    req.close(linger=0)
    await driver.close()
    return {"probepilot": statistics.median(mine), "raw_pyzmq": statistics.median(theirs)}


# ---------------------------------------------------------------------------- main


PEERS = ("probepilot", "raw_pyzmq", "raw_pyzmq_same_protocol")


def stream(peer: str, frame: np.ndarray, window: int) -> float:
    if peer == "probepilot":
        return asyncio.run(stream_ours(frame, window))
    if peer == "raw_pyzmq":
        return stream_raw(frame, window)
    return stream_raw_credit(frame, window)


def main() -> None:
    frame = np.random.default_rng(0).normal(size=(PIXELS, PIXELS)).astype(np.float32)
    rounds: dict[int, dict[str, list[float]]] = {}
    for window in WINDOWS:
        got: dict[str, list[float]] = {peer: [] for peer in PEERS}
        for _ in range(ROUNDS):
            for peer in PEERS:
                got[peer].append(stream(peer, frame, window))
        rounds[window] = got

    def ratio(window: int, a: str, b: str) -> float:
        r = rounds[window]
        return statistics.median(x / y for x, y in zip(r[a], r[b], strict=True))

    fps = {k: statistics.median(v) for k, v in rounds[WINDOWS[0]].items()}

    host, host_address = start(
        [
            sys.executable,
            "-m",
            "probepilot.cli",
            "serve",
            "--driver",
            "sim",
            "--bind",
            "tcp://127.0.0.1:0",
        ]
    )
    rep, rep_address = start([sys.executable, __file__, "rep-server"])
    try:
        rtt = asyncio.run(round_trips(host_address, rep_address))
    finally:
        host.terminate()
        host.wait(10)
        rep.wait(10)

    stream_ratio = ratio(WINDOWS[0], "probepilot", "raw_pyzmq")
    rtt_ratio = rtt["probepilot"] / rtt["raw_pyzmq"]
    print(
        json.dumps(
            {
                "bench": "bus",
                "frame": f"{PIXELS}x{PIXELS} float32 ({FRAME_BYTES} bytes)",
                "frames_per_s": {k: round(v, 1) for k, v in fps.items()},
                "mb_per_s": {k: round(v * FRAME_BYTES / 1e6, 1) for k, v in fps.items()},
                "window": WINDOWS[0],
                "stream_ratio": round(stream_ratio, 3),
                **{
                    f"stream_ratio_window_{w}": round(ratio(w, "probepilot", "raw_pyzmq"), 3)
                    for w in WINDOWS[1:]
                },
                "stream_ratio_same_protocol": round(
                    ratio(WINDOWS[0], "probepilot", "raw_pyzmq_same_protocol"), 3
                ),
                "credit_ceiling": {
                    f"window_{w}": round(ratio(w, "raw_pyzmq_same_protocol", "raw_pyzmq"), 3)
                    for w in WINDOWS
                },
                "rtt_us": {k: round(v * 1e6, 1) for k, v in rtt.items()},
                "rtt_ratio": round(rtt_ratio, 3),
                "targets_met": {"stream": stream_ratio >= 0.7, "rtt": rtt_ratio <= 2.0},
                "rounds_frames_per_s": {
                    f"window_{w}": {k: [round(x, 1) for x in v] for k, v in r.items()}
                    for w, r in rounds.items()
                },
                "calls": CALLS,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "pyzmq": zmq.pyzmq_version(),
                "libzmq": zmq.zmq_version(),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "rep-server":
        rep_server()
    elif len(sys.argv) > 1 and sys.argv[1].startswith("receive-"):
        kind, address, seconds, window = sys.argv[1].removeprefix("receive-"), *sys.argv[2:5]
        if kind == "ours":
            result = receive_ours(address, float(seconds), int(window))
        else:
            result = receive_raw(address, float(seconds), int(window), ack=kind == "raw-credit")
        print(json.dumps(result))
    else:
        main()
