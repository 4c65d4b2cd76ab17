"""The store's file formats as a plugin: ``.sxm``, ``.dat``, ``.3ds`` and MATRIX register
through ``probepilot_register_formats`` exactly as a third-party format would (entry point
``formats`` in pyproject.toml), so ``probepilot inspect``/``convert`` find every format, built
in or not, in the plugin manager's ``format`` registry. (Importing the readers costs about
25 ms, on top of numpy, which the core loads anyway.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probepilot.hookspecs import hookimpl
from probepilot.store.formats import register_formats

if TYPE_CHECKING:
    from probepilot.contracts import FileFormat
    from probepilot.registry import Registry


@hookimpl
def probepilot_register_formats(registry: Registry[FileFormat]) -> None:
    register_formats(registry)
