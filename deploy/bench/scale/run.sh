#!/usr/bin/env bash
# Scale grid (issue 17): how the control plane's costs grow with tasks (1k/10k/100k), nodes
# (100/1,000/5,000 fake agents idle and under a 10k create), services (1k/10k/100k), recovery
# with 100k tasks in the store (snapshot, restart, join, failover) and a soak (50 rounds of
# 10k). Three real swarmd managers per phase (release build); the fake agents run in their
# own process (`fake_agents`), so the managers' CPU and memory are theirs alone. Builds release
# binaries first. Extra arguments go to scale_grid (see `scale_grid --help`: --phases,
# --task-sizes, --node-sizes, --service-sizes, --recovery-tasks, --soak-rounds, …).
# Memory: ~1 GiB per manager at 100k tasks; about 30 minutes for the whole grid on 2 cores.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
echo "building release binaries into $target_dir" >&2
cargo build -q --release -p swarm-node -p swarm-cli -p swarm-benches --bins

export SWARM_BIN_DIR="$target_dir/release"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
echo "Command: deploy/bench/scale/run.sh $*"
echo
"$SWARM_BIN_DIR/scale_grid" "$@"
