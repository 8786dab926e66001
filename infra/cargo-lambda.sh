#!/usr/bin/env bash
# Installs cargo-lambda (with zig) from PyPI into a cached venv and prints the path of the binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
VENV="$PA_CACHE/cargo-lambda-venv"
if ! [ -x "$VENV/bin/cargo-lambda" ]; then
  log "installing cargo-lambda into $VENV (cached)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check cargo-lambda >&2
fi
echo "$VENV/bin/cargo-lambda"
