"""The analyzer tests share helpers (simulated frames with known answers, real files) through
the plain module ``analyzer_helpers`` beside this file; pytest's importlib import mode does not
put test folders on ``sys.path``, so this conftest does, for this folder only."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
