#!/usr/bin/env bash
# LocalStack init for the local Lambda: the archive bucket (versioning + Object Lock, as in AWS)
# and the database secret in the standard RDS JSON shape. Uses the LocalStack venv's boto3.
# Usage: infra/localstack-init.sh BUCKET SECRET_NAME   (reads AWS_ENDPOINT_URL and PG* from the env)
# Prints the secret's ARN.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
PY="$PA_CACHE/localstack-2026.3.0-venv/bin/python"
[ -x "$PY" ] || PY=python3
BUCKET="$1" SECRET_NAME="$2" "$PY" - <<'PY'
import json, os, boto3
endpoint = os.environ["AWS_ENDPOINT_URL"]
kw = dict(endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"),
          aws_access_key_id="test", aws_secret_access_key="test")
s3 = boto3.client("s3", **kw)
bucket = os.environ["BUCKET"]
try:
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
sm = boto3.client("secretsmanager", **kw)
secret = json.dumps({"engine": "postgres", "host": os.environ["PGHOST"], "port": int(os.environ["PGPORT"]),
                     "username": os.environ["PGUSER"], "password": os.environ.get("PGPASSWORD", "unused-trust-auth"),
                     "dbname": os.environ.get("PGDATABASE", "postgres")})
name = os.environ["SECRET_NAME"]
try:
    arn = sm.create_secret(Name=name, SecretString=secret)["ARN"]
except sm.exceptions.ResourceExistsException:
    arn = sm.put_secret_value(SecretId=name, SecretString=secret) and sm.describe_secret(SecretId=name)["ARN"]
print(arn)
PY
