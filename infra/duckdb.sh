#!/usr/bin/env bash
# Installs DuckDB's Python wheel (which bundles its Parquet and JSON readers: no extension is
# downloaded at run time) into a cached venv and prints the path of its python. The tests and the
# benchmark read downloaded archive objects with it, as a user's DuckDB would.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
DUCKDB_VERSION="${DUCKDB_VERSION:-2.0.1}"
VENV="$PA_CACHE/duckdb-$DUCKDB_VERSION-venv"
installed() { "$VENV/bin/python" -c "import duckdb" >/dev/null 2>&1; }
if ! installed; then
  # Several tests ask at once on a clean machine: one installs, the others wait for it (two
  # installs into one venv break each other).
  mkdir -p "$PA_CACHE"
  exec 9>"$VENV.lock"
  flock 9
  if ! installed; then
    log "installing duckdb $DUCKDB_VERSION into $VENV (cached)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" >&2
  fi
  flock -u 9
fi
echo "$VENV/bin/python"
