#!/usr/bin/env bash
# Lints template.yaml offline with cfn-lint and `sam validate --lint` (both from PyPI, installed
# into a cached venv by infra/samcli.sh). Part of the test command.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
BIN="$(bash "$here/samcli.sh")"
cd "$here/.."
echo "cfn-lint $("$BIN/cfn-lint" --version)"
"$BIN/cfn-lint" template.yaml
# sam validate needs a region and credentials in the environment, never real ones.
AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x SAM_CLI_TELEMETRY=0 \
  "$BIN/sam" validate --lint --template template.yaml
