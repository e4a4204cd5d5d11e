#!/usr/bin/env bash
# Control-plane benchmark: builds release binaries and runs raft_bench (three swarmd managers on
# loopback with durable storage). Extra arguments go to raft_bench (see `raft_bench --help`),
# e.g. `deploy/bench/raft/run.sh --phases throughput --writes-concurrent 10000`.
#
# Output (a markdown report on stdout, progress on stderr) is also written to
# $OUT (default: <target dir>/bench/raft-<date>.md, progress log next to it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="${OUT:-$target_dir/bench/raft-$stamp.md}"
mkdir -p "$(dirname "$out")"
progress="${out%.md}.log"

echo "building release binaries into $target_dir" >&2
cargo build --release -p swarm-node -p swarm-cli -p swarm-testkit --bins

export SWARM_BIN_DIR="$target_dir/release"
echo "running $SWARM_BIN_DIR/raft_bench $*; report: $out, progress: $progress" >&2
{
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "Command: deploy/bench/raft/run.sh $*"
    echo
    "$SWARM_BIN_DIR/raft_bench" "$@" 2> >(tee "$progress" >&2)
} | tee "$out"
