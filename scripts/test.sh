#!/usr/bin/env bash
# README command 2: every check and every test. Starts its own PostgreSQL 15 and LocalStack (no
# Docker), builds each profile once: the tests and host binary (dev, with the test-only fault
# points) and the artifact users deploy (release, arm64, through cargo lambda and sam build); runs
# the suite with cargo-nextest, the arm64 artifact under qemu among it, and stops the servers by
# PID whatever happens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PA_RUN_DIR="${PA_RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pa-test.XXXXXX")}"

cleanup() {
  bash infra/localstack.sh stop || true
  bash infra/postgres.sh stop || true
}
trap cleanup EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --features failpoints --locked -- -D warnings

echo "== template.yaml: cfn-lint and sam validate --lint"
bash infra/lint-template.sh

echo "== the Lambda artifact: cargo lambda build --release --arm64, then sam build (a copy of it)"
bash infra/lambda-artifact.sh > "$PA_RUN_DIR/artifact.paths"
{ read -r PA_TEST_LAMBDA_ARTIFACT; read -r PA_TEST_SAM_ARTIFACT; } < "$PA_RUN_DIR/artifact.paths"
PA_TEST_ARM64_RUNNER="$(bash infra/qemu-arm64.sh)"
export PA_TEST_LAMBDA_ARTIFACT PA_TEST_SAM_ARTIFACT PA_TEST_ARM64_RUNNER
echo "artifact: $PA_TEST_LAMBDA_ARTIFACT (runner: ${PA_TEST_ARM64_RUNNER:-native})"

echo "== start PostgreSQL and LocalStack; install cargo-lambda"
PA_TEST_CARGO_LAMBDA_DIR="$(dirname "$(bash infra/cargo-lambda.sh)")"
export PA_TEST_CARGO_LAMBDA_DIR
bash infra/postgres.sh start
bash infra/localstack.sh start
. "$PA_RUN_DIR/postgres.env"
. "$PA_RUN_DIR/localstack.env"
export PA_TEST_DATABASE_URL="$DATABASE_URL" PA_TEST_S3_ENDPOINT="$AWS_ENDPOINT_URL"
unset DATABASE_URL

# The calendar-sensitive tests: the calendar module (migrations, both partition creators, gap
# filling, retention) and the Lambda scenario. They derive everything from "today", which is the
# real clock in the full run and PA_TEST_TODAY in the pinned runs below.
CALENDAR_FILTER='test(/^calendar::/) | test(=lambda::the_function_runs_under_cargo_lambda_with_credentials_from_the_secret)'

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

echo "== tests (unit + integration), today = the real clock"
cargo nextest run --features failpoints --locked --no-fail-fast --test-threads "${PA_TEST_THREADS:-4}"

# The same calendar tests again on pinned days where calendars bite, so a test that depends on the
# day it runs fails here on any day, not only when the month turns. Each line: today | time zone of
# the processes (TZ, PGTZ; the tests also cover fixed non-UTC zones of their own).
while IFS='|' read -r today zone why; do
  [ -n "$today" ] || continue
  echo "== calendar tests on $today ($why)"
  PA_TEST_TODAY="$today" PA_TEST_ZONE="$zone" TZ="$zone" PGTZ="$zone" \
    cargo nextest run --features failpoints --locked --no-fail-fast --test-threads "${PA_TEST_THREADS:-4}" \
    -E "$CALENDAR_FILTER"
done <<'DAYS'
2027-01-15T12:00:00Z|UTC|mid-month
2027-04-30T23:30:00Z|UTC|last day of a month; already 1 May in Tokyo and Kiritimati
2026-12-31T23:30:00Z|UTC|31 December; already 2027 east of UTC
2028-02-29T12:00:00Z|UTC|29 February of a leap year
2026-11-01T05:30:00Z|America/New_York|DST ends in New York: 01:30 local, the hour that happens twice
DAYS
