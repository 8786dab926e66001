#!/usr/bin/env bash
# Makes the arm64 Lambda artifact runnable on an x86_64 machine: Debian's qemu-user (user-mode
# emulation) and the aarch64 glibc (libc6-arm64-cross), installed with apt if missing. Prints the
# command prefix that runs an aarch64 binary: `qemu-aarch64 -L /usr/aarch64-linux-gnu`. On an
# aarch64 host nothing is needed and it prints nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
if [ "$(uname -m)" = aarch64 ]; then
  exit 0
fi
SYSROOT=/usr/aarch64-linux-gnu
if ! command -v qemu-aarch64 >/dev/null 2>&1 || ! [ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  log "installing qemu-user and libc6-arm64-cross (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q qemu-user libc6-arm64-cross >&2 \
    || { as_root apt-get update -q >&2 && as_root apt-get install -y -q qemu-user libc6-arm64-cross >&2; }
fi
echo "qemu-aarch64 -L $SYSROOT"
