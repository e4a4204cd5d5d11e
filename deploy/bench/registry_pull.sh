#!/bin/sh
# Issue 13 benchmark: a generated image (busybox + one BENCH_MB-MB random layer, default 200)
# pulled by three netns hosts at once from the cluster registry, and by Docker's engine from
# Debian's docker-registry on loopback. Needs root, skopeo, docker-registry, a Docker engine.
set -e
cd "$(dirname "$0")/../.."
cargo build -q --workspace --bins --tests
exec cargo test -q -p swarm-integration --test t85_registry bench_registry_pull_200mb -- --ignored --nocapture
