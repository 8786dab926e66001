#!/usr/bin/env bash
# Start or stop LocalStack (S3 + Secrets Manager + STS) as a plain host process, no Docker.
#   infra/localstack.sh install   # create the cached venv only
#   infra/localstack.sh start     # prints nothing; writes $PA_RUN_DIR/localstack.env
#   infra/localstack.sh stop
# If AWS_ENDPOINT_URL is already set, `start` uses that endpoint and starts nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

LOCALSTACK_VERSION="2026.3.0"
VENV="$PA_CACHE/localstack-$LOCALSTACK_VERSION-venv"
ENV_FILE="$PA_RUN_DIR/localstack.env"
PID_FILE="$PA_RUN_DIR/localstack.pid"

python313() {
  local root
  if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root)"
    if [ -x "$root/versions/3.13.0/bin/python3.13" ]; then echo "$root/versions/3.13.0/bin/python3.13"; return; fi
  fi
  for p in python3.13 python3.14; do
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return; fi
  done
  log "LocalStack needs Python >= 3.13 (pyenv's 3.13.0 was not found)"; exit 1
}

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import localstack' 2>/dev/null; then return; fi
  log "installing LocalStack $LOCALSTACK_VERSION into $VENV (cached)"
  rm -rf "$VENV"
  "$(python313)" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "localstack-core[runtime]==$LOCALSTACK_VERSION" 'cbor2<6' 'pyopenssl<26' 'cryptography<47' service_identity
}

start() {
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    log "AWS_ENDPOINT_URL is set ($AWS_ENDPOINT_URL): using it, not starting LocalStack"
    cat > "$ENV_FILE" <<EOT
export AWS_ENDPOINT_URL='$AWS_ENDPOINT_URL'
EOT
    return
  fi
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then return; fi
  install
  local port dir
  port="$(free_port)"
  dir="$(mktemp -d "$PA_RUN_DIR/localstack.XXXXXX")"
  log "starting LocalStack on 127.0.0.1:$port (logs: $dir/localstack.log)"
  (
    cd "$dir"
    GATEWAY_LISTEN="127.0.0.1:$port" GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 \
    SERVICES=s3,secretsmanager,sts SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
    LOCALSTACK_VOLUME_DIR="$dir/volume" FILESYSTEM_ROOT="$dir/fs" \
      setsid "$VENV/bin/python" -m localstack.runtime.main > "$dir/localstack.log" 2>&1 &
    echo $! > "$PID_FILE"
  )
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/_localstack/health" >/dev/null 2>&1; then
      cat > "$ENV_FILE" <<EOT
export AWS_ENDPOINT_URL='http://127.0.0.1:$port'
export AWS_ACCESS_KEY_ID='test'
export AWS_SECRET_ACCESS_KEY='test'
export AWS_REGION='us-east-1'
EOT
      return
    fi
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
      log "LocalStack exited; last log lines:"; tail -30 "$dir/localstack.log" >&2; exit 1
    fi
    sleep 0.5
  done
  log "LocalStack did not become healthy in 60 s"; tail -30 "$dir/localstack.log" >&2; exit 1
}

stop() {
  if [ -f "$PID_FILE" ]; then
    local pid; pid="$(cat "$PID_FILE")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$PID_FILE" "$ENV_FILE"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
