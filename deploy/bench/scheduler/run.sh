#!/usr/bin/env bash
# Scheduler benchmark: times the pure `swarm_engine::scheduler::schedule` in-process (release
# build, one thread) on 1,000 simulated nodes with 100,000 pending tasks, then on the same cluster
# with those tasks placed as load and 10,000 new ones. Prints a markdown table (median of 3 runs).
# Extra arguments go to the bench: --nodes N --tasks N --services N --runs N.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"

echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
echo "Command: deploy/bench/scheduler/run.sh $*"
echo
cargo bench -q -p swarm-engine --bench scheduler -- "$@"
