# Sourced by scripts/run and scripts/test: makes .venv and installs probepilot into it, once.
# Idempotent: it reinstalls only when pyproject.toml, constraints.txt or this file changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.probepilot-installed"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "probepilot needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
fi

wanted="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/scripts/setup.sh" \
    "$ROOT/examples/probepilot-noise/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ]; then
    echo "setting up $VENV (once) ..." >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip >&2
    # constraints.txt pins torch to its CPU build for the ml extra (an unpinned torch pulls
    # several GB of CUDA packages). The example plugin is installed as a user would install a
    # third-party driver, so `probepilot plugins` shows it and the tests exercise it.
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$ROOT/constraints.txt" \
        -e "$ROOT[dev,ml,rl,dashboard,visa,serial]" -e "$ROOT/examples/probepilot-noise" >&2
    echo "$wanted" > "$STAMP"
fi

export PATH="$VENV/bin:$PATH"
cd "$ROOT"
