#!/usr/bin/env bash
# Installs restyle-bot into .venv (first run only) and starts it. Arguments go to `python -m bot`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/restyle-bot" ] || [ pyproject.toml -nt "$VENV/bin/restyle-bot" ]; then
  scripts/install.sh
fi
exec "$VENV/bin/python" -m bot "$@"
