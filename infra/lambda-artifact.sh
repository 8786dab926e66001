#!/usr/bin/env bash
# Builds the artifact the template deploys, as a user would: `cargo lambda build --release --arm64`
# (aarch64, glibc, OpenSSL built from source and linked statically: see Cargo.toml), then
# `sam build --beta-features` into $PA_RUN_DIR/sam-build. SAM's rust-cargolambda build method runs
# the same cargo-lambda command in the source tree, so it finds everything fresh and only copies
# `bootstrap`: one release build, checked byte for byte by tests/it/artifact.rs.
# Prints two lines: the path of cargo-lambda's bootstrap, then the path of SAM's copy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
cd "$here/.."
CARGO_LAMBDA_DIR="$(dirname "$(bash "$here/cargo-lambda.sh")")"
SAM_BIN="$(bash "$here/samcli.sh")"
export PATH="$CARGO_LAMBDA_DIR:$PATH"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  log "adding the aarch64-unknown-linux-gnu target (rustup)"
  rustup target add aarch64-unknown-linux-gnu >&2
fi
log "cargo lambda build --release --arm64"
cargo lambda build --release --arm64 --locked >&2
log "sam build --beta-features (rust-cargolambda is a beta build method)"
AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0 \
  "$SAM_BIN/sam" build --beta-features --build-dir "$PA_RUN_DIR/sam-build" --template template.yaml >&2
echo "$PWD/target/lambda/partition-archiver/bootstrap"
echo "$PA_RUN_DIR/sam-build/ArchiverFunction/bootstrap"
