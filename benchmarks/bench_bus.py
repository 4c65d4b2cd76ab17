"""probepilot's ZeroMQ transport against raw pyzmq on the same machine, same run; prints one
JSON line.

Figures:

- **Frame stream**: 512 x 512 float32 frames (1 MiB each) from a sender to a receiver in
  another process over tcp loopback, 1.5 s per round, five rounds alternating: probepilot's
  stream (``StreamPublisher.publish_frame`` -> ``RemoteLink.subscribe_frames``: msgpack
  header, raw buffer, the watcher's credit of ``window`` frames, newest frame wins) and raw
  pyzmq (PUSH -> PULL of the same 1 MiB buffer, ``copy=False``, high-water marks of
  ``window`` on both sockets). Measured with window 1 (newest frame wins at its strictest:
  what a dashboard needs) and 4. ``frames_per_s`` and ``mb_per_s`` are what the receiver got
  (median of the rounds); ``stream_ratio`` = the median over rounds of probepilot / raw in
  that round (each pair ran back to back, so load from other processes hits both alike), at
  window 1 (target >= 0.7); ``stream_ratio_window_4`` the same at window 4.
- **Round trip**: the median time of a small command, ``await driver.get_bias()`` of the
  remote driver against ``probepilot serve --driver sim`` (another process), and raw pyzmq
  REQ -> REP echoing a message of the same size, 3,000 calls each in alternating blocks of
  250 so background load hits both alike; ``rtt_ratio`` = probepilot / raw (target <= 2).

Run: ``.venv/bin/python benchmarks/bench_bus.py`` (about 30 s).
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
WINDOWS = (1, 4)


# ---------------------------------------------------------------------------- receivers


def receive_raw(address: str, seconds: float, window: int) -> dict[str, float]:
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, window)
    sock.connect(address)
    count = 0
    first = last = 0.0
    while True:
        frames = sock.recv_multipart(copy=False)
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


def stream_raw(frame: np.ndarray, window: int) -> float:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, window)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    proc = receiver("raw", sock.getsockopt(zmq.LAST_ENDPOINT).decode(), window)
    header = wire.encode("frame", {"index": 0})[0]
    sock.setsockopt(zmq.SNDTIMEO, 100)
    while proc.poll() is None:
        with contextlib.suppress(zmq.Again):  # full: try again (SNDTIMEO bounds the wait)
            sock.send_multipart([header, frame], copy=False)
    sock.close(linger=0)
    got = result_of(proc)
    return got["frames"] / got["seconds"]


async def stream_ours(frame: np.ndarray, window: int) -> float:
    publisher = StreamPublisher("tcp://127.0.0.1:0", window=window)
    await publisher.start()
    proc = receiver("ours", publisher.address, window)
    area = codec.to_wire(ScanArea((0.0, 0.0), (1e-7, 1e-7), PIXELS, PIXELS))
    index = 0
    while proc.poll() is None:
        # A producer as fast as the watcher takes frames: a new one whenever it can take one
        # (a real run is far slower; this measures the ceiling).
        if not publisher.wanted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publisher.demand(), 0.1)
            continue
        index += 1
        publisher.publish_frame(
            {"index": index, "area": area, "channels": {"Z": {"forward": frame}}}
        )
        await asyncio.sleep(0)
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


def main() -> None:
    frame = np.random.default_rng(0).normal(size=(PIXELS, PIXELS)).astype(np.float32)
    rounds: dict[int, dict[str, list[float]]] = {}
    for window in WINDOWS:
        ours: list[float] = []
        raw: list[float] = []
        for _ in range(ROUNDS):
            raw.append(stream_raw(frame, window))
            ours.append(asyncio.run(stream_ours(frame, window)))
        rounds[window] = {"probepilot": ours, "raw_pyzmq": raw}
    medians = {w: {k: statistics.median(v) for k, v in r.items()} for w, r in rounds.items()}
    ratios = {
        w: statistics.median(o / r for o, r in zip(v["probepilot"], v["raw_pyzmq"], strict=True))
        for w, v in rounds.items()
    }
    fps = medians[WINDOWS[0]]

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

    stream_ratio = ratios[WINDOWS[0]]
    rtt_ratio = rtt["probepilot"] / rtt["raw_pyzmq"]
    print(
        json.dumps(
            {
                "bench": "bus",
                "frame": f"{PIXELS}x{PIXELS} float32 ({FRAME_BYTES} bytes)",
                "frames_per_s": {k: round(v, 1) for k, v in fps.items()},
                "mb_per_s": {k: round(v * FRAME_BYTES / 1e6, 1) for k, v in fps.items()},
                "stream_ratio": round(stream_ratio, 3),
                "stream_ratio_window_4": round(ratios[4], 3),
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
        receive = receive_raw if kind == "raw" else receive_ours
        print(json.dumps(receive(address, float(seconds), int(window))))
    else:
        main()
