"""``probepilot convert IN OUT``: read with whichever format ``IN``'s name belongs to, write with
whichever format ``OUT``'s does (``.sxm``, ``.dat``, ``.3ds``, or a plugin's), or as ``.npz``.

Formats come from the caller (the plugin manager's ``format`` registry, built), so a format a
plugin registers converts like a built-in one. Every failure is a one-line
:class:`~probepilot.errors.FormatError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probepilot.errors import FormatError
from probepilot.model import Frame, Spectrum
from probepilot.store.formats import find_format
from probepilot.store.grid import Grid
from probepilot.store.npz import write_npz

if TYPE_CHECKING:
    from probepilot.contracts import FileFormat

__all__ = ["convert", "describe", "pick_frame"]

_KINDS = {Frame: "a frame", Spectrum: "a spectrum", Grid: "a grid"}


def describe(data: object) -> str:
    """``"a frame"``, ``"a spectrum"`` ... for messages."""
    if isinstance(data, list):
        return f"{len(data)} frames"
    return next((text for kind, text in _KINDS.items() if isinstance(data, kind)), "data")


def pick_frame(data: Any, frame: int | None, label: str) -> tuple[Any, str]:
    """One frame out of a multi-frame file (MATRIX keeps the up and down passes of one scan
    in one file), and a note saying which; other data passes through.

    :param frame: 1-based; default 1.
    :raises FormatError: ``frame`` is out of range, or given for data with one item.
    """
    if isinstance(data, list):
        number = frame or 1
        if not 1 <= number <= len(data):
            raise FormatError(f"{label}: has {len(data)} frames, there is no frame {number}")
        note = f"frame {number} of {len(data)}" + ("" if frame else " (--frame picks another)")
        return data[number - 1], note if len(data) > 1 else ""
    if frame not in (None, 1):
        raise FormatError(f"{label}: holds {describe(data)}, --frame {frame} does not apply")
    return data, ""


def convert(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    formats: Sequence[FileFormat],
    *,
    frame: int | None = None,
) -> str:
    """Convert ``source`` to ``target``; returns one line saying what was written.

    :raises FormatError: either name belongs to no format, the source is not a valid file,
        the target format cannot hold what the source holds, or writing failed.
    """
    source, target = Path(source), Path(target)
    data = find_format(source, formats).read(source)
    data, note = pick_frame(data, frame, str(source))
    if target.name.lower().endswith(".npz"):
        name = "npz"
        _write(lambda: write_npz(data, target), target)
    else:
        out = find_format(target, formats)
        name = out.name
        writes = getattr(out, "writes", None)
        write = getattr(out, "write", None)
        if write is None or (hasattr(out, "writes") and writes is None):
            raise FormatError(f"{target}: probepilot reads {out.name} files but cannot write them")
        if isinstance(writes, type) and not isinstance(data, writes):
            raise FormatError(
                f"{source} holds {describe(data)}; {out.name} files hold {_KINDS.get(writes, '?')}",
                hint="pick a target format for that kind of data, or .npz",
            )
        _write(lambda: write(data, target), target)
    return f"wrote {target} ({name}): {describe(data)}" + (f", {note}" if note else "")


def _write(action: Callable[[], object], target: Path) -> None:
    try:
        action()
    except OSError as exc:
        raise FormatError(f"{target}: cannot be written: {exc.strerror or exc}") from None
    # Writers refuse data their format cannot represent (a tab in a channel name ...).
    except ValueError as exc:
        raise FormatError(f"{target}: cannot be written: {exc}") from None
