#!/usr/bin/env bash
# Installs DuckDB's Python wheel (which bundles its Parquet and JSON readers: no extension is
# downloaded at run time) into a cached venv and prints the path of its python. The tests and the
# benchmark read downloaded archive objects with it, as a user's DuckDB would.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
DUCKDB_VERSION="${DUCKDB_VERSION:-2.0.1}"
VENV="$PA_CACHE/duckdb-$DUCKDB_VERSION-venv"
if ! "$VENV/bin/python" -c "import duckdb" >/dev/null 2>&1; then
  log "installing duckdb $DUCKDB_VERSION into $VENV (cached)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" >&2
fi
echo "$VENV/bin/python"
