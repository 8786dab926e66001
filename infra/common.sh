# Shared settings for the infra scripts. Sourced, not run.
# Everything the scripts download is cached under $PA_CACHE so a second run is fast;
# everything they start lives under $PA_RUN_DIR and is stopped by PID.
PA_CACHE="${PA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partition-archiver}"
PA_RUN_DIR="${PA_RUN_DIR:-${TMPDIR:-/tmp}/partition-archiver-run}"
mkdir -p "$PA_CACHE" "$PA_RUN_DIR"

log() { printf '[infra] %s\n' "$*" >&2; }

# A free TCP port on 127.0.0.1, chosen by the kernel.
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# Run a command as root if we are not root (apt needs it).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
