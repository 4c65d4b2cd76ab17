"""`import probepilot` stays light: no textual, no torch, no plugin."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import probepilot

CORE = Path(probepilot.__file__).parent
FORBIDDEN = ("textual", "torch", "probepilot_")


def test_import_probepilot_loads_no_plugin_nor_heavy_ui_or_ml() -> None:
    code = (
        "import sys, probepilot, probepilot.config, probepilot.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('textual', 'torch') or m.startswith('probepilot_'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_core_source_imports_no_plugin_package() -> None:
    """The layout rule of DESIGN.md §2, checked on the source so a lazy import can't hide."""
    offenders = []
    for path in CORE.rglob("*.py"):
        if "testing" in path.relative_to(CORE).parts:
            continue  # the conformance suite is imported by tests only
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.startswith(FORBIDDEN)]
    assert offenders == []
