"""The receiving process keeps freed frame buffers mapped (glibc's heap top pad)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from probepilot.bus import heap

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A watcher's pattern: libzmq's I/O thread allocates each received frame (1 MiB); a few are
# alive at once; they are written into and freed. The minor page faults of the rounds after the
# first show whether the freed pages were kept.
_FAULTS = textwrap.dedent(
    """
    import ctypes, resource, sys, threading
    from probepilot.bus.heap import keep_frame_buffers
    if sys.argv[1] == "pad":
        assert keep_frame_buffers()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 1 << 20

    def receive(buffers):
        for _ in range(4):
            buffers.append(libc.malloc(size))
            ctypes.memset(buffers[-1], 1, size)

    def round_():
        buffers = []
        io_thread = threading.Thread(target=receive, args=(buffers,))
        io_thread.start()
        io_thread.join()
        for b in buffers:
            libc.free(b)

    round_()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        round_()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults(mode: str) -> int:
    command = [sys.executable, "-c", _FAULTS, mode]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the heap top pad is a glibc setting")
def test_freed_frame_buffers_stay_mapped() -> None:
    plain, padded = faults("plain"), faults("pad")
    # 20 rounds of 4 MiB: without the pad most rounds fault the pages in again (256 per MiB).
    assert plain > 20 * 256
    assert padded < plain / 10


@pytest.mark.skipif(not GLIBC, reason="the heap top pad is a glibc setting")
def test_set_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_done", False)
    assert heap.keep_frame_buffers() is True
    assert heap.keep_frame_buffers() is True  # the second call changes nothing


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_done", False)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert heap.keep_frame_buffers() is False
