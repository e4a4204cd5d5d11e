#!/bin/sh
# Networks benchmark: iperf3 throughput and ping latency between task containers on one host
# (bridge network) and across two netns hosts (VXLAN overlay), against the veth + bridge path
# between the host namespaces; and the network setup time per container from the agents' logs.
# Needs root, iproute2, nftables, iperf3 (apt-get install iperf3).
set -e
cd "$(dirname "$0")/../.."
command -v iperf3 >/dev/null || { echo "iperf3 is not installed: apt-get install iperf3" >&2; exit 1; }
cargo build -q --workspace --bins --tests
exec cargo test -q -p swarm-integration --test t80_networks bench_network_throughput_latency_and_setup_time -- --ignored --nocapture
