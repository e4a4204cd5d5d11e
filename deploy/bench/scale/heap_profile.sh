#!/usr/bin/env bash
# What the leader's heap holds (issue 17): builds `swarmd` with the `heap-profile` feature
# (jemalloc's sampling profiler, one sample per ~128 KiB allocated, cheap enough not to change
# what the manager holds) into its own target directory and runs one scale grid phase with it.
#   tasks: the leader writes a profile before each create and once it has settled with all
#          tasks running; prints what grew in between by allocating call stack.
#   soak:  the leader writes a profile in every round once all tasks run and once they are
#          gone; prints jemalloc's counters per round and what grew from round 2 to the last.
# Needs jeprof (apt-get install -y libjemalloc-dev). Extra arguments go to scale_grid
# (defaults: tasks --task-sizes 100000; soak --soak-rounds 12).
# Usage: deploy/bench/scale/heap_profile.sh [tasks|soak] [scale_grid args...]
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

phase=tasks
case "${1:-}" in tasks | soak) phase=$1; shift ;; esac
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    case $phase in tasks) args=(--task-sizes 100000) ;; soak) args=(--soak-rounds 12) ;; esac
fi
export SWARM_HEAP_PROFILE="$dumps" _RJEM_MALLOC_CONF="prof:true,lg_prof_sample:17"
SWARM_BIN_DIR="$bins" "$bins/scale_grid" --phases "$phase" --heap-dumps "$dumps" "${args[@]}" 2>"$dumps/labels.txt" || {
    cat "$dumps/labels.txt" >&2
    exit 1
}
grep '^heap profile' "$dumps/labels.txt"

# The profile written at a label ("10000 tasks: before", "round 2: running", ...).
profile_at() { grep "^heap profile, $1: " "$dumps/labels.txt" | sed -E 's/^heap profile, [^:]*: [^:]*: ([^ ]+) .*/\1/'; }
grown() {
    echo
    echo "== grown between $1 and $2 (MB, by allocating function, cumulative)"
    jeprof --text --cum --base="$1" "$bins/swarmd" "$2" 2>/dev/null |
        awk '/Total|swarm_|openraft|sled::|h2::|tonic::/ && n++ < 40'
}
if [ "$phase" = tasks ]; then
    # Each task size: its "before" and "settled" profiles, in the order they were written.
    mapfile -t heaps < <(grep '^heap profile' "$dumps/labels.txt" | sed -E 's/^heap profile, [^:]*: [^:]*: ([^ ]+) .*/\1/')
    for ((i = 0; i + 1 < ${#heaps[@]}; i += 2)); do grown "${heaps[$i]}" "${heaps[$((i + 1))]}"; done
else
    echo
    echo "| round | at | allocated MiB | active MiB | resident MiB | metadata MiB | retained MiB |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    sed -nE 's/^heap profile, round ([0-9]+): ([a-z]+): [^ ]+ \(allocated ([0-9]+) active ([0-9]+) resident ([0-9]+) mapped [0-9]+ retained ([0-9]+) metadata ([0-9]+)\)$/\1 \2 \3 \4 \5 \7 \6/p' "$dumps/labels.txt" |
        awk '{m = 1048576; printf "| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", $1, $2, $3/m, $4/m, $5/m, $6/m, $7/m}'
    last=$(grep -c ': running: ' "$dumps/labels.txt")
    if [ "$last" -lt 3 ]; then
        echo "(fewer than 3 rounds: nothing to compare round 2 with)"
    else
        for at in running removed; do grown "$(profile_at "round 2: $at")" "$(profile_at "round $last: $at")"; done
    fi
fi
echo
echo "profiles kept in $dumps (jeprof --text|--collapsed --base=BEFORE $prof_target/release/swarmd SETTLED)"
