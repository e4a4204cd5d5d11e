#!/usr/bin/env bash
# End-to-end orchestration benchmark: three real swarmd managers (durable Raft, mutual TLS)
# and 1,000 in-process agents running the real agent code over the fake executor; times
# `service create --replicas 10000` until 10,000 tasks run, and the removal. Builds release
# binaries first. Extra arguments go to e2e_fake_agents (see `e2e_fake_agents --help`:
# --managers, --agents, --replicas, --rounds, --timeline, --manager-log, --agent-state-dir).
# Memory: a few GiB at the defaults (each manager holds the 10,000 tasks and its Raft log).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../release.sh"
release_bins swarm-node swarm-cli swarm-benches
run_header deploy/bench/e2e/run.sh "$@"
"$SWARM_BIN_DIR/e2e_fake_agents" "$@"
