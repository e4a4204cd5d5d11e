#!/usr/bin/env bash
# What the leader's heap holds after a burst of tasks (issue 17): builds `swarmd` with the
# `heap-profile` feature (jemalloc's sampling profiler, one sample per ~128 KiB allocated, cheap
# enough not to change what the manager holds) into its own target directory, runs the scale
# grid's tasks phase with it, has the leader write a profile before the create and once it has
# settled with all tasks running, and prints what grew in between by allocating call stack.
# Needs jeprof (apt-get install -y libjemalloc-dev). Extra arguments go to scale_grid
# (default: --task-sizes 100000).
# Usage: deploy/bench/scale/heap_profile.sh [--task-sizes N] [scale_grid args...]
set -euo pipefail

command -v jeprof >/dev/null || { echo "needs jeprof: apt-get install -y libjemalloc-dev" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/../release.sh"
prof_target="${target_dir}-heap-profile"
echo "building the profiling swarmd into $prof_target (a first build takes minutes)" >&2
CARGO_TARGET_DIR="$prof_target" cargo build -q --release -p swarm-node --features heap-profile
release_bins swarm-cli swarm-benches
bins=$(mktemp -d /tmp/swarm-heap-bins.XXXXXX)
dumps=$(mktemp -d /tmp/swarm-heap.XXXXXX)
trap 'rm -rf "$bins"' EXIT
cp "$SWARM_BIN_DIR"/{swarmctl,scale_grid,fake_agents} "$bins/"
cp "$prof_target/release/swarmd" "$bins/"
run_header deploy/bench/scale/heap_profile.sh "$@"

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--task-sizes 100000)
export SWARM_HEAP_PROFILE="$dumps" _RJEM_MALLOC_CONF="prof:true,lg_prof_sample:17"
SWARM_BIN_DIR="$bins" "$bins/scale_grid" --phases tasks --heap-dumps "$dumps" "${args[@]}" 2>"$dumps/labels.txt" || {
    cat "$dumps/labels.txt" >&2
    exit 1
}
grep '^heap profile' "$dumps/labels.txt"

# Each task size: its "before" and "settled" profiles, in the order they were written.
mapfile -t heaps < <(grep '^heap profile' "$dumps/labels.txt" | sed -E 's/^heap profile, [^:]*: [^:]*: ([^ ]+) .*/\1/')
for ((i = 0; i + 1 < ${#heaps[@]}; i += 2)); do
    echo
    echo "== grown between ${heaps[$i]} and ${heaps[$((i + 1))]} (MB, by allocating function, cumulative)"
    jeprof --text --cum --base="${heaps[$i]}" "$bins/swarmd" "${heaps[$((i + 1))]}" 2>/dev/null |
        awk '/Total|swarm_|openraft|sled::|h2::|tonic::/ && n++ < 40' 
done
echo
echo "profiles kept in $dumps (jeprof --text|--collapsed --base=BEFORE $prof_target/release/swarmd SETTLED)"
