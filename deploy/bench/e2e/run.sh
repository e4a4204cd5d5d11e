#!/usr/bin/env bash
# End-to-end orchestration benchmark: three real swarmd managers (durable Raft, mutual TLS)
# and 1,000 in-process agents running the real agent code over the fake executor; times
# `service create --replicas 10000` until 10,000 tasks run, and the removal. Builds release
# binaries first. Extra arguments go to e2e_fake_agents (see `e2e_fake_agents --help`:
# --managers, --agents, --replicas, --rounds, --timeline, --manager-log, --agent-state-dir).
# Memory: a few GiB at the defaults (each manager holds the 10,000 tasks and its Raft log).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
echo "building release binaries into $target_dir" >&2
cargo build -q --release -p swarm-node -p swarm-cli -p swarm-benches --bins

export SWARM_BIN_DIR="$target_dir/release"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
echo "Command: deploy/bench/e2e/run.sh $*"
echo
"$SWARM_BIN_DIR/e2e_fake_agents" "$@"
