#!/usr/bin/env bash
# Start or stop a private PostgreSQL 15 server for the tests and the demo, as a plain process:
# initdb into a temporary directory, a free port on 127.0.0.1, stopped by PID. No Docker.
#   infra/postgres.sh start   # writes $PA_RUN_DIR/postgres.env (PGHOST, PGPORT, PGUSER, DATABASE_URL)
#   infra/postgres.sh restart [fast|immediate]   # same data and port; immediate = crash-like
#   infra/postgres.sh stop
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

ENV_FILE="$PA_RUN_DIR/postgres.env"
DIR_FILE="$PA_RUN_DIR/postgres.dir"

pg_bin() {
  for d in /usr/lib/postgresql/15/bin /usr/local/bin /usr/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  done
  return 1
}

ensure_installed() {
  local want=()
  pg_bin >/dev/null && command -v psql >/dev/null || want+=(postgresql-15 postgresql-client-15)
  # pg_partman, for the import-pg-partman tests (a real pg_partman, not a fixture).
  [ -f /usr/share/postgresql/15/extension/pg_partman.control ] || want+=(postgresql-15-partman)
  [ "${#want[@]}" = 0 ] && return
  log "installing Debian's ${want[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${want[@]}" >/dev/null 2>&1 || {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${want[@]}" >/dev/null
  }
}

start() {
  if [ -f "$DIR_FILE" ] && [ -f "$(cat "$DIR_FILE")/data/postmaster.pid" ]; then return; fi
  ensure_installed
  local bin dir port user
  bin="$(pg_bin)"
  dir="$(mktemp -d "$PA_RUN_DIR/postgres.XXXXXX")"
  port="$(free_port)"
  user="$(id -un)"
  # initdb refuses to run as root: run the server as the unprivileged 'postgres' user then.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || as_root useradd --system --no-create-home postgres
    chmod 755 "$PA_RUN_DIR"
    chown postgres "$dir"
    run=(runuser -u postgres --)
    user=postgres
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$dir/data/postgresql.conf" <<EOT
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
log_min_messages = warning
EOT
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  echo "$dir" > "$DIR_FILE"
  cat > "$ENV_FILE" <<EOT
export PGHOST=127.0.0.1
export PGPORT=$port
export PGUSER=$user
export PGDATABASE=postgres
export PA_PG_BIN='$bin'
export DATABASE_URL='postgres://$user@127.0.0.1:$port/postgres'
EOT
  log "PostgreSQL on 127.0.0.1:$port (data: $dir/data)"
}

stop() {
  [ -f "$DIR_FILE" ] || return 0
  local dir bin pid
  dir="$(cat "$DIR_FILE")"
  if [ -f "$dir/data/postmaster.pid" ]; then
    pid="$(head -1 "$dir/data/postmaster.pid")"
    kill -INT "$pid" 2>/dev/null || true   # fast shutdown
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir" "$DIR_FILE" "$ENV_FILE"
}

# Restart the running server on the same data directory and port. "immediate" kills the server
# processes without a shutdown checkpoint, so the next start runs crash recovery: what a database
# crash or failover looks like to the archiver (the reliability tests use it between steps).
restart() {
  local mode="${1:-fast}" dir bin
  case "$mode" in fast|immediate) ;; *) echo "restart mode must be fast or immediate" >&2; exit 2 ;; esac
  [ -f "$DIR_FILE" ] || { echo "no server started under $PA_RUN_DIR" >&2; exit 1; }
  dir="$(cat "$DIR_FILE")"
  bin="$(pg_bin)"
  local run=()
  if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
}

case "${1:-}" in
  start) start ;;
  restart) restart "${2:-fast}" ;;
  stop) stop ;;
  *) echo "usage: $0 start|restart [fast|immediate]|stop" >&2; exit 2 ;;
esac
