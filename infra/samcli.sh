#!/usr/bin/env bash
# Installs the AWS SAM CLI and cfn-lint from PyPI into a cached venv and prints the venv's bin
# directory (sam, cfn-lint).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
VENV="$PA_CACHE/samcli-venv"
if ! [ -x "$VENV/bin/sam" ] || ! [ -x "$VENV/bin/cfn-lint" ]; then
  log "installing aws-sam-cli and cfn-lint into $VENV (cached)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli cfn-lint >&2
fi
echo "$VENV/bin"
