#!/usr/bin/env bash
# README command 1: on a fresh machine, sets everything up and runs the whole cycle once.
# Starts PostgreSQL 15 and LocalStack (S3) as plain processes, applies the migrations, loads a few
# months of sample orders and trades (some rows land in the default partition), runs `maintain`
# (create ahead, move default rows, archive what is past retention to S3, verify, drop), lists the
# manifest, restores one month, and stops the servers. Nothing outside $PA_RUN_DIR is touched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PA_RUN_DIR="${PA_RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pa-demo.XXXXXX")}"
trap 'bash infra/localstack.sh stop || true; bash infra/postgres.sh stop || true' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
cargo build --locked --quiet
BIN=target/debug/partition-archiver

step "start PostgreSQL and LocalStack"
bash infra/postgres.sh start
bash infra/localstack.sh start
. "$PA_RUN_DIR/postgres.env"
. "$PA_RUN_DIR/localstack.env"
export ARCHIVE_BUCKET=partition-archiver-demo PGSSLMODE=disable RUST_LOG=warn
curl -sf -X PUT "$AWS_ENDPOINT_URL/$ARCHIVE_BUCKET" >/dev/null

step "migrate (applies migrations/postgres/*.sql; run twice: the second changes nothing)"
$BIN --output human migrate
$BIN --output human migrate | head -3

NOW="$(date -u +%Y-%m-01T00:00:00Z)"
step "sample data: 9 months of orders and trades (months without a partition yet land in the default partition)"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO orders (user_id, symbol, side, type, status, price, quantity, filled_quantity, created_at)
SELECT g % 500, (ARRAY['BTC-USD','ETH-USD','SOL-USD'])[1 + g % 3], CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END,
       'limit', 'filled', 100 + (g % 1000) / 10.0, 1 + g % 9, 1 + g % 9,
       date_trunc('month', timestamptz '$NOW') - interval '8 months' + (g * interval '13 minutes')
FROM generate_series(1, 9 * 30 * 24 * 60 / 13) g;
INSERT INTO trades (order_id, user_id, symbol, side, price, quantity, fee, created_at)
SELECT g, g % 500, 'BTC-USD', 'buy', 100, 1, 0.01, created_at FROM orders o, LATERAL (SELECT o.id AS g) x;
SQL
psql -X -At -c "SELECT 'rows in orders_default: ' || count(*) FROM orders_default"

step "plan (dry run)"
$BIN --output human plan --now "$NOW" | head -40

step "maintain: create ahead, move default rows, archive past retention to S3, verify, drop"
$BIN --output human maintain --now "$NOW"

step "a second run has nothing to do"
$BIN --output human maintain --now "$NOW" | head -12

step "status"
$BIN --output human status --now "$NOW" --table trades

step "the archive manifest"
$BIN --output human list

step "verify every archive by HEAD (version, size, S3 checksum, storage class; no data read)"
$BIN --output human verify

step "verify --deep (re-read from S3: SHA-256 and row counts)"
$BIN --output human verify --deep

FIRST="$(psql -X -At -c "SELECT partition_name FROM partition_archiver.archive_manifest WHERE table_name = 'trades' AND state = 'dropped' ORDER BY range_from LIMIT 1")"
step "restore $FIRST into schema archive_restore"
$BIN --output human restore --table trades --partition "$FIRST"
psql -X -At -c "SELECT 'restored rows: ' || count(*) FROM archive_restore.$FIRST"
echo; echo "demo done: servers stop now."
