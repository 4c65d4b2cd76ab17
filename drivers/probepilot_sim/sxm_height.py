"""A minimal reader of the Z channel of a Nanonis ``.sxm`` image, to use real topography as a
simulated surface.

Only what the simulator needs: pixels, scan range, direction and the forward Z channel. (The full
reader and writer belong to ``probepilot.store``; this one stays here so the simulator does not
depend on it.) Format facts: an ASCII header of ``:KEY:`` lines ends with ``:SCANIT_END:``; the
binary part starts after the two bytes ``\\x1a\\x04``; data are big-endian float32, channel by
channel, forward then backward for channels recorded in ``both`` directions, each ``lines x
pixels`` in acquisition order (a ``down`` scan starts at the top).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probepilot.errors import FormatError
from probepilot.model import FloatArray


@dataclass(frozen=True, slots=True)
class HeightImage:
    """A Z image with row 0 at the bottom (smallest y) and its physical size (m)."""

    heights: FloatArray
    size: tuple[float, float]
    path: str


def _header(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith(":") and line.endswith(":") and len(line) > 1:
            key = line[1:-1]
            out[key] = []
        elif key is not None:
            out[key].append(line)
    return out


def read_sxm_z(path: str | Path) -> HeightImage:
    """The forward Z channel of ``path``; :class:`FormatError` says what is wrong otherwise."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror}") from None
    end = blob.find(b":SCANIT_END:")
    if not blob.startswith(b":NANONIS_VERSION:") or end < 0:
        raise FormatError(f"{path}: not a Nanonis .sxm file (no :NANONIS_VERSION:/:SCANIT_END:)")
    start = blob.find(b"\x1a\x04", end)
    if start < 0:
        raise FormatError(f"{path}: no data marker \\x1a\\x04 after the header")
    header = _header(blob[:end].decode("latin-1"))
    try:
        nx, ny = (int(v) for v in header["SCAN_PIXELS"][0].split())
        width, height = (float(v) for v in header["SCAN_RANGE"][0].split())
        direction = (header.get("SCAN_DIR") or ["down"])[0].strip() or "down"
        rows = [r.split("\t") for r in header["DATA_INFO"] if r.strip()]
    except (KeyError, IndexError, ValueError) as exc:
        raise FormatError(f"{path}: header lacks or garbles {exc}") from None
    columns = [c.strip() for c in rows[0] if c.strip()]
    name_col, dir_col = columns.index("Name"), columns.index("Direction")
    offset = start + 2
    frame_bytes = nx * ny * 4
    for row in rows[1:]:
        cells = [c.strip() for c in row if c.strip()]
        copies = 2 if cells[dir_col] == "both" else 1
        if cells[name_col] == "Z":
            if offset + frame_bytes > len(blob):
                raise FormatError(f"{path}: truncated: the Z channel needs {frame_bytes} bytes")
            z = np.frombuffer(blob, dtype=">f4", count=nx * ny, offset=offset)
            z = z.reshape(ny, nx).astype(np.float64)
            if direction == "down":  # acquisition started at the top: put row 0 at the bottom
                z = z[::-1]
            return HeightImage(np.ascontiguousarray(z), (width, height), str(path))
        offset += copies * frame_bytes
    raise FormatError(f"{path}: no Z channel in DATA_INFO")
