"""Keep freed frame buffers in a receiving process instead of handing them back to the OS.

libzmq's I/O thread allocates each received message with ``malloc``, in that thread's glibc
arena; a 512 x 512 float32 frame is a 1 MiB buffer. glibc gives the free space at the top of
such a heap back to the kernel once it exceeds the trim threshold, and the next frame's buffer
then faults its 256 pages in again. A watcher keeps a few frames alive at a time (the latest
for late subscribers, one being decoded, those ZeroMQ has queued), so its heap crosses that
threshold often: streaming as fast as it could, the watcher took 20 page faults per frame
against 1 for a bare pyzmq receiver (``perf stat``), about a fifth of its CPU. A top pad of a
few frames' worth keeps the pages mapped.

Setting it also fixes glibc's mmap threshold at its initial 128 KiB (glibc stops adapting it
once a malloc parameter is set), so large blocks the process allocates itself in its main
thread are mapped afresh each time, as they are in any process before it frees its first one.
Only glibc has ``mallopt``; elsewhere :func:`keep_frame_buffers` does nothing.
"""

from __future__ import annotations

import ctypes
import platform
import sys
import threading

#: glibc's ``M_TOP_PAD`` (malloc.h): bytes kept at a heap's top when it grows or is trimmed.
_M_TOP_PAD = -2
#: Eight 1 MiB frames: more than a watcher keeps alive at once.
TOP_PAD_BYTES = 8 << 20

_lock = threading.Lock()
_done = False


def keep_frame_buffers(pad: int = TOP_PAD_BYTES) -> bool:
    """Raise this process's heap top pad to ``pad`` bytes (once, on glibc); True if set.

    glibc's default pad is 128 KiB; a larger one only means up to ``pad`` bytes per heap stay
    mapped after frames are freed, which a process receiving frames reuses for the next ones.
    """
    global _done
    with _lock:
        if _done:
            return True
        if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        _done = bool(mallopt(_M_TOP_PAD, pad))
        return _done
