#!/usr/bin/env bash
# What `swarmd --userns-remap` costs a container: the same busybox image started with and
# without a user namespace through the library API (interleaved), the two steps it adds alone,
# and the chowned copy it avoids. Needs root and busybox-static.
# Usage: deploy/bench/runtime/userns.sh [RUNS]   (default 200)
set -euo pipefail
RUNS=${1:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$(mktemp -d /tmp/swarm-bench-userns.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[ -x /bin/busybox ] || { echo "install busybox-static" >&2; exit 1; }
(cd "$REPO" && cargo build --release -p swarm-runtime --example bench_userns >&2)
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$WORK/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/rootfs/etc/passwd"
echo "== $(date -u +%F) uname $(uname -r), $(nproc) cores"
"$TARGET/release/examples/bench_userns" "$WORK/rootfs" "$RUNS"
