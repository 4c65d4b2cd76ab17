"""The file formats probepilot reads and writes, as :class:`~probepilot.contracts.FileFormat`
objects, and :func:`read_any`, which picks the reader from the file's suffix."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from probepilot.errors import FormatError
from probepilot.model import Frame, Spectrum
from probepilot.store.dat import read_dat, write_dat
from probepilot.store.grid import Grid
from probepilot.store.grid3ds import read_3ds, write_3ds
from probepilot.store.matrix import read_matrix
from probepilot.store.sxm import read_sxm, write_sxm

if TYPE_CHECKING:
    from probepilot.contracts import FileFormat
    from probepilot.registry import Registry

__all__ = [
    "DAT",
    "FORMATS",
    "GRID_3DS",
    "MATRIX",
    "SXM",
    "StoreFormat",
    "find_format",
    "format_for",
    "matches",
    "read_any",
    "register_formats",
]

F = TypeVar("F", bound="FileFormat")

#: What :func:`read_any` returns: a frame, a spectrum, a grid, or the frames of a MATRIX image.
Data = Frame | Spectrum | Grid | list[Frame]


@dataclass(slots=True)  # not frozen: FileFormat declares name and suffixes as plain attributes
class StoreFormat:
    """One file format: its registry name, suffixes, reader and (optional) writer."""

    name: str
    suffixes: tuple[str, ...]
    description: str
    reader: Callable[[Path], Any]
    writer: Callable[[Any, Path], Path] | None = None
    #: Matches any name ending this way (MATRIX channels are open-ended: ``.Aux2(V)_mtrx``).
    ending: str = ""
    #: The type :meth:`write` takes (None: not writable), so a converter can say "a spectrum
    #: cannot go into a .sxm file" instead of failing inside the writer.
    writes: type | None = None

    def read(self, path: Path) -> Any:
        """The data in ``path``; :class:`FormatError` if it is not a valid file."""
        return self.reader(Path(path))

    def write(self, data: Any, path: Path) -> Path:
        """Write ``data`` (the type :meth:`read` returns) to ``path``, atomically."""
        if self.writer is None:
            raise FormatError(
                f"{path}: probepilot reads {self.description} but does not write it",
                hint="convert to .sxm, .dat, .3ds or .npz instead",
            )
        return self.writer(data, Path(path))

    def matches(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path``'s name says it is this format (case-insensitive)."""
        name = Path(path).name.lower()
        return name.endswith(self.suffixes) or bool(self.ending and name.endswith(self.ending))


SXM = StoreFormat(
    "nanonis_sxm", (".sxm",), "Nanonis scan images (.sxm)", read_sxm, write_sxm, writes=Frame
)
DAT = StoreFormat(
    "nanonis_dat", (".dat",), "Nanonis point spectra (.dat)", read_dat, write_dat, writes=Spectrum
)
GRID_3DS = StoreFormat(
    "nanonis_3ds",
    (".3ds",),
    "Nanonis grid spectroscopy (.3ds)",
    read_3ds,
    write_3ds,
    writes=Grid,
)
MATRIX = StoreFormat(
    "matrix",
    (".z_mtrx", ".i_mtrx", ".i(v)_mtrx", ".i(z)_mtrx", ".df_mtrx", ".aux1_mtrx", ".aux2_mtrx"),
    "Omicron MATRIX result files (*_mtrx, with their _0001.mtrx parameter file)",
    read_matrix,
    ending="_mtrx",
)
FORMATS: tuple[StoreFormat, ...] = (SXM, DAT, GRID_3DS, MATRIX)


def format_for(path: str | os.PathLike[str]) -> StoreFormat:
    """The built-in format ``path``'s name belongs to; :class:`FormatError` if none."""
    return find_format(path, FORMATS)


def matches(candidate: FileFormat, path: str | os.PathLike[str]) -> bool:
    """True when ``path``'s name says it is ``candidate``'s format: its own ``matches`` where it
    has one, else a case-insensitive suffix test (all a third-party format must declare)."""
    own = getattr(candidate, "matches", None)
    if callable(own):
        return bool(own(path))
    return Path(path).name.lower().endswith(tuple(s.lower() for s in candidate.suffixes))


def find_format(path: str | os.PathLike[str], formats: Iterable[F]) -> F:
    """The first of ``formats`` (e.g. the plugin manager's ``format`` registry, built) that
    ``path``'s name belongs to.

    :raises FormatError: none does; the message lists the suffixes that would be understood.
    """
    known = list(formats)
    for candidate in known:
        if matches(candidate, path):
            return candidate
    if Path(path).name.lower().endswith(".mtrx"):
        raise FormatError(
            f"{path}: a MATRIX parameter file holds no data of its own",
            hint="read one of its result files (*.Z_mtrx, *.I(V)_mtrx ...)",
        )
    readable = ", ".join(_spelling(each) for each in known)
    raise FormatError(
        f"{path}: unknown file type {Path(path).suffix or Path(path).name!r}",
        hint=f"probepilot reads {readable}"
        if known
        else "no file format is installed (is the built-in 'formats' plugin disabled?)",
    )


def _spelling(each: FileFormat) -> str:
    ending = getattr(each, "ending", "")
    return f"*{ending}" if ending else "/".join(each.suffixes)


def read_any(path: str | os.PathLike[str]) -> Data:
    """The data in ``path``, read by the format its suffix names.

    :raises FormatError: unknown suffix, or not a valid file of that format.
    """
    return cast(Data, format_for(path).read(Path(path)))


def register_formats(registry: Registry[FileFormat]) -> None:
    """Register the built-in formats (for a ``probepilot_register_formats`` hook)."""
    for each in FORMATS:
        registry.register(each.name, _factory(each), description=each.description)


def _factory(each: StoreFormat) -> Callable[[object], FileFormat]:
    def build(_options: object) -> FileFormat:
        return each

    return build


def installed_formats(registry: Iterable[Any], warn: Callable[[str], None]) -> list[Any]:
    """Build every format in the plugin manager's ``"format"`` registry.

    A plugin whose format cannot be built is reported through ``warn`` (one line) and skipped:
    one broken plugin must not stop the others from reading files.
    """
    formats = []
    for entry in registry:
        try:
            formats.append(entry.factory(None))
        except Exception as exc:  # noqa: BLE001  (third-party code; reported, not hidden)
            warn(
                f"warning: plugin {entry.plugin!r} failed to build format {entry.name!r}: "
                f"{type(exc).__name__}: {exc}"
            )
    return formats
