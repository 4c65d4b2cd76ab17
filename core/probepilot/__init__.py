"""probepilot: an autopilot for scanning tunnelling microscopes.

Importing this package loads the core types only: no plugin, no textual, no torch. Plugins are
found and loaded by :func:`probepilot.plugins.make_plugin_manager`.
"""

from probepilot.errors import ProbepilotError
from probepilot.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["ProbepilotError", "__version__", "hookimpl"]
