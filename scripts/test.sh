#!/usr/bin/env bash
# Installs everything the tests need into .venv, checks lint, format and types (ruff, mypy),
# then runs the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
VENV=${VENV:-.venv}
# The web front end's browser test drives Debian's Chromium; install it where we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped"
fi
# The PostgreSQL tests start throw-away servers with Debian's PostgreSQL programs (tests/pg_cluster.py);
# install them where we can. (Its postinst may create and start a default cluster, unless policy-rc.d
# forbids starting services, as in Docker images; the tests use servers of their own either way.)
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; the PostgreSQL tests will be skipped"
fi
# Lint, format and types first (configured in pyproject.toml): any finding fails the run.
"$VENV/bin/ruff" check bot engine
"$VENV/bin/ruff" format --check bot engine
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
