#!/bin/sh
# Service discovery benchmark: requests/s and p50/p99 latency of a busybox httpd service with 3
# replicas on 3 netns hosts, straight to a task, through its virtual IP and through the routing
# mesh (`ab -n 20000 -c 16`, two rounds), and how long a scaled-away task stays in DNS.
# Needs root, iproute2, nftables, ab (apt-get install apache2-utils).
set -e
cd "$(dirname "$0")/../.."
command -v ab >/dev/null || { echo "ab is not installed: apt-get install apache2-utils" >&2; exit 1; }
cargo build -q --workspace --bins --tests
exec cargo test -q -p swarm-integration --test t82_discovery bench_routing_mesh_and_vip_against_a_task_directly -- --ignored --nocapture
