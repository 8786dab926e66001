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

echo "== tests (unit + integration)"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --features failpoints --locked --no-fail-fast --test-threads "${PA_TEST_THREADS:-4}"
else
  cargo test --features failpoints --locked -- --test-threads "${PA_TEST_THREADS:-4}"
fi
