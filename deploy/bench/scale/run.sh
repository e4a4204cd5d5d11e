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

source "$(dirname "${BASH_SOURCE[0]}")/../release.sh"
release_bins swarm-node swarm-cli swarm-benches
run_header deploy/bench/scale/run.sh "$@"
"$SWARM_BIN_DIR/scale_grid" "$@"
