"""The run folder: everything one run produced, every file either complete or absent.

::

    runs/20250114T093512Z-3f9c2a1b/      <UTC start time>-<8 hex digits>: sorts by time
        config.toml                      the effective configuration, defaults filled in
        journal.msgpack                  every event, in order (probepilot.store.journal)
        frames/frame-000001.sxm          each frame as Nanonis .sxm (Gwyddion and co. read it)
        spectra/spectrum-000001.dat      point spectra as Nanonis .dat
        grids/grid-000001.3ds            spectroscopy grids as Nanonis .3ds

Crash safety (DESIGN.md §7). A data file is written under a temporary name, fsynced, renamed
into place and its folder fsynced (:func:`~probepilot.store._common.atomic_write`) *before* the
journal event naming it is appended. So every file the journal names is complete and on disk,
whatever happens afterwards; a kill during a write loses only that file (its temporary
``.frame-000007.sxm.<pid>.tmp`` may stay behind, and nothing names it). Journal records reach
the operating system as they are appended and the disk within a second (see the journal).

Writing is blocking I/O: the session calls these methods from a worker thread
(``asyncio.to_thread``), never on its event loop.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probepilot import __version__
from probepilot.events import (
    FRAME_PERSISTED,
    GRID_PERSISTED,
    RUN_FINISHED,
    RUN_STARTED,
    SPECTRUM_PERSISTED,
    Event,
)
from probepilot.model import Frame, Spectrum
from probepilot.store._common import atomic_write, fsync_dir
from probepilot.store.dat import write_dat
from probepilot.store.grid import Grid
from probepilot.store.grid3ds import write_3ds
from probepilot.store.journal import (
    DEFAULT_FLUSH_INTERVAL,
    JOURNAL_VERSION,
    Journal,
    JournalError,
)
from probepilot.store.sxm import write_sxm

if TYPE_CHECKING:
    from probepilot.config import Config

__all__ = ["CONFIG_FILE", "JOURNAL_FILE", "RunFolder", "is_run_folder", "new_run_id"]

JOURNAL_FILE = "journal.msgpack"
CONFIG_FILE = "config.toml"
FRAMES, SPECTRA, GRIDS = "frames", "spectra", "grids"


def new_run_id(now: float | None = None) -> str:
    """``20250114T093512Z-3f9c2a1b``: the UTC start time (no colons, so Windows can hold it)
    and 32 random bits, so two runs started in the same second never collide."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with a journal, i.e. a run folder."""
    return (Path(path) / JOURNAL_FILE).is_file()


class RunFolder:
    """Writes one run folder. Create it with :meth:`create`; close it (or use ``with``).

    Thread-safe: events may be emitted from any thread; data files are numbered in the order
    their writes finish.
    """

    def __init__(self, path: Path, run_id: str, journal: Journal) -> None:
        self.path = path
        self.run_id = run_id
        self.journal = journal
        self._counts = {FRAMES: 0, SPECTRA: 0, GRIDS: 0}
        self._lock = threading.Lock()
        self._closed = False
        #: The ``run.started`` event :meth:`create` journaled.
        self.started: Event | None = None

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        config: Config | None = None,
        *,
        run_id: str | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> RunFolder:
        """Make ``root/<run id>/``, write the config into it, start the journal.

        :param root: the folder runs go in (``Config.run_folder()``); created if needed.
        :param config: the effective configuration, written as ``config.toml`` (None: none;
            for tools and tests).
        :param run_id: the folder's name (default :func:`new_run_id`).
        :raises JournalError: the folder exists already or cannot be written.
        """
        run_id = run_id or new_run_id()
        base = Path(root)
        path = base / run_id
        try:
            base.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            fsync_dir(base)
            if config is not None:
                text = f"# effective configuration of run {run_id}, from {config.source}\n"
                atomic_write(path / CONFIG_FILE, (text + config.to_toml()).encode("utf-8"))
        except OSError as exc:
            raise JournalError(
                f"{path}: cannot create the run folder: {exc.strerror or exc}",
                hint="check that the [run] folder is writable and has space",
            ) from None
        run = cls(path, run_id, Journal(path / JOURNAL_FILE, flush_interval=flush_interval))
        run.started = run.emit(
            RUN_STARTED,
            {
                "run_id": run_id,
                "probepilot": __version__,
                "journal_version": JOURNAL_VERSION,
                "config": CONFIG_FILE if config is not None else None,
                "driver": config.driver if config is not None else None,
                "policy": config.policy if config is not None else None,
            },
        )
        return run

    # -- events ----------------------------------------------------------------------------------

    def emit(self, type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Journal a new event (next sequence number, time now) and return it. ``data`` may
        hold actions, findings and other dataclasses (see :func:`~probepilot.store.plain`)."""
        return self.journal.emit(type, data)

    def record(self, event: Event) -> None:
        """Journal an event numbered elsewhere (its ``seq`` must exceed the last one)."""
        self.journal.append(event)

    # -- data files --------------------------------------------------------------------------------

    def add_frame(self, frame: Frame) -> Event:
        """Write ``frame`` as the next ``frames/frame-NNNNNN.sxm``, then journal
        :data:`~probepilot.events.FRAME_PERSISTED` naming it."""
        relative, index = self._write(FRAMES, "frame", ".sxm", lambda p: write_sxm(frame, p))
        area = frame.area
        return self.emit(
            FRAME_PERSISTED,
            {
                "file": relative,
                "index": index,
                "complete": frame.complete,
                "lines_done": frame.lines_done,
                "lines": area.lines,
                "pixels": area.pixels,
                "size": list(area.size),
                "centre": list(area.centre),
                "bias": frame.bias,
                "setpoint": frame.setpoint,
                "started_at": frame.started_at,
                "finished_at": frame.finished_at,
            },
        )

    def add_spectrum(self, spectrum: Spectrum) -> Event:
        """Write ``spectrum`` as the next ``spectra/spectrum-NNNNNN.dat`` and journal it."""
        relative, index = self._write(SPECTRA, "spectrum", ".dat", lambda p: write_dat(spectrum, p))
        return self.emit(
            SPECTRUM_PERSISTED,
            {
                "file": relative,
                "index": index,
                "points": len(spectrum.sweep),
                "complete": spectrum.complete,
                "position": list(spectrum.position),
            },
        )

    def add_grid(self, grid: Grid) -> Event:
        """Write ``grid`` as the next ``grids/grid-NNNNNN.3ds`` and journal it."""
        relative, index = self._write(GRIDS, "grid", ".3ds", lambda p: write_3ds(grid, p))
        return self.emit(
            GRID_PERSISTED,
            {
                "file": relative,
                "index": index,
                "shape": list(grid.shape),
                "complete": grid.complete,
            },
        )

    def _write(
        self, folder: str, stem: str, suffix: str, write: Callable[[Path], object]
    ) -> tuple[str, int]:
        """Write the next ``folder/stem-NNNNNN.suffix``; its relative path and number."""
        with self._lock:
            if self._closed:
                raise JournalError(f"{self.path}: the run folder is closed")
            self._counts[folder] += 1
            index = self._counts[folder]
        target = self.path / folder
        relative = f"{folder}/{stem}-{index:06d}{suffix}"
        try:
            if not target.is_dir():
                target.mkdir(exist_ok=True)
                fsync_dir(self.path)
            write(self.path / relative)
        except OSError as exc:
            raise JournalError(
                f"{self.path / relative}: cannot be written: {exc.strerror or exc}"
            ) from None
        return relative, index

    # -- closing -----------------------------------------------------------------------------------

    def close(self, outcome: str = "completed") -> None:
        """Journal :data:`~probepilot.events.RUN_FINISHED` with ``outcome`` and close the
        journal (fsynced); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.emit(RUN_FINISHED, {"outcome": outcome})
        finally:
            self.journal.close()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if kind is None:
            self.close("completed")
        elif issubclass(kind, KeyboardInterrupt):
            self.close("stopped")
        else:
            self.close(f"failed: {kind.__name__}: {exc}")
