"""Reading and writing STM data files, in the model's types and SI units.

* Nanonis ``.sxm`` images -> :class:`~probepilot.model.Frame` (:func:`read_sxm`, :func:`write_sxm`)
* Nanonis ``.dat`` spectra -> :class:`~probepilot.model.Spectrum` (:func:`read_dat`,
  :func:`write_dat`)
* Nanonis ``.3ds`` grids -> :class:`Grid` (:func:`read_3ds`, :func:`write_3ds`)
* Omicron MATRIX result files -> frames or a spectrum (:func:`read_matrix`; read only)

Readers take a path or the file's bytes and raise only
:class:`~probepilot.errors.FormatError` for a bad file, one line naming the file and what is
wrong. Writers write atomically. :func:`read_any` picks the reader from the suffix. Each
module's docstring says exactly how the file's layout maps onto the model.

``import probepilot`` does not import this package; importing it loads numpy and the stdlib only.
"""

from probepilot.store.dat import decode_dat, encode_dat, read_dat, write_dat
from probepilot.store.formats import (
    DAT,
    FORMATS,
    GRID_3DS,
    MATRIX,
    SXM,
    StoreFormat,
    format_for,
    read_any,
    register_formats,
)
from probepilot.store.grid import Grid
from probepilot.store.grid3ds import decode_3ds, encode_3ds, read_3ds, write_3ds
from probepilot.store.matrix import read_matrix
from probepilot.store.sxm import decode_sxm, encode_sxm, read_sxm, write_sxm

__all__ = [
    "DAT",
    "FORMATS",
    "GRID_3DS",
    "MATRIX",
    "SXM",
    "Grid",
    "StoreFormat",
    "decode_3ds",
    "decode_dat",
    "decode_sxm",
    "encode_3ds",
    "encode_dat",
    "encode_sxm",
    "format_for",
    "read_3ds",
    "read_any",
    "read_dat",
    "read_matrix",
    "read_sxm",
    "register_formats",
    "write_3ds",
    "write_dat",
    "write_sxm",
]
