#!/usr/bin/env bash
# Lints template.yaml offline with cfn-lint and `sam validate --lint` (both from PyPI, installed
# into a cached venv). Part of the test command.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
VENV="$PA_CACHE/samcli-venv"
if ! [ -x "$VENV/bin/sam" ] || ! [ -x "$VENV/bin/cfn-lint" ]; then
  log "installing aws-sam-cli and cfn-lint into $VENV (cached)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli cfn-lint
fi
cd "$here/.."
echo "cfn-lint $("$VENV/bin/cfn-lint" --version)"
"$VENV/bin/cfn-lint" template.yaml
# sam validate needs a region and credentials in the environment, never real ones.
AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x SAM_CLI_TELEMETRY=0 \
  "$VENV/bin/sam" validate --lint --template template.yaml
