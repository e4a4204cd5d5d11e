# Sourced by the benchmark scripts: builds the release binaries they run and prints the
# header every BENCHMARKS.md entry starts with. Defines:
#   release_bins PKG...   build those packages' binaries (release) and export SWARM_BIN_DIR
#   run_header SCRIPT ARGS...   "Date: … commit …" and "Command: SCRIPT ARGS"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

release_bins() {
    echo "building release binaries into $target_dir" >&2
    local p args=()
    for p in "$@"; do args+=(-p "$p"); done
    cargo build -q --release "${args[@]}" --bins
    export SWARM_BIN_DIR="$target_dir/release"
}

run_header() {
    local script="$1"
    shift
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
    echo "Command: $script $*"
    echo
}
