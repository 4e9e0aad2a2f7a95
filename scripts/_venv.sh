# Sourced by scripts/start and scripts/test: make sure .venv exists and has this project installed.
# Re-installs only when setup.cfg changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TOCSIN_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
extras="${1:-}"
if [ ! -x "$PY" ]; then
    echo "creating virtual environment in $VENV" >&2
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
fi
stamp="$VENV/.tocsin-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ]; then
    echo "installing Tocsin and its dependencies into $VENV" >&2
    "$PY" -m pip install -q -e "$ROOT${extras:+[$extras]}" >&2
    touch "$stamp"
fi
