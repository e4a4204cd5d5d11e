#!/usr/bin/env bash
# Docker driving swarm-runtime against Docker driving runc, on one private dockerd (its own data
# root, exec root, socket, empty config, no bridge, no iptables: the machine's daemon is
# untouched): `docker run --rm` of /bin/true through each runtime (hyperfine, side by side),
# then the memory each running container costs (PSS of its processes and of its containerd
# shim, from /proc/PID/smaps_rollup), N detached `sleep` containers per runtime.
# Needs root, docker, hyperfine, busybox-static. Usage: deploy/bench/docker/run.sh [RUNS] [N]
set -euo pipefail
RUNS=${1:-30}
N=${2:-20}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
(cd "$REPO" && cargo build -q --release -p swarm-runtime --bins >&2)
SR="$TARGET/release/swarm-runtime"
W=/tmp/swdb-$$
mkdir -p "$W/data" "$W/exec" "$W/img/bin"
echo '{}' > "$W/daemon.json"
cleanup() {
    docker -H "unix://$W/docker.sock" rm -f $(docker -H "unix://$W/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    [ -f "$W/docker.pid" ] && kill "$(cat "$W/docker.pid")" 2>/dev/null && sleep 3
    rm -rf "$W"
}
trap cleanup EXIT
dockerd --data-root "$W/data" --exec-root "$W/exec" -H "unix://$W/docker.sock" \
    --config-file "$W/daemon.json" --pidfile "$W/docker.pid" --bridge none \
    --iptables=false --ip6tables=false --add-runtime "swarm=$SR" >"$W/dockerd.log" 2>&1 &
D="docker -H unix://$W/docker.sock"
for _ in $(seq 1 60); do $D version >/dev/null 2>&1 && break; sleep 1; done
cp /bin/busybox "$W/img/bin/busybox"
for a in sh true sleep; do ln -s busybox "$W/img/bin/$a"; done
tar -C "$W/img" -c . | $D import - bench-busybox:1 >/dev/null

echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(cd "$REPO" && git rev-parse --short HEAD); $(docker --version)"
echo "Command: deploy/bench/docker/run.sh $RUNS $N"
hyperfine -N --warmup 3 --runs "$RUNS" --export-markdown "$W/run.md" \
    -n runc "$D run --rm --runtime runc --network none bench-busybox:1 true" \
    -n swarm "$D run --rm --runtime swarm --network none bench-busybox:1 true" >&2
cat "$W/run.md"

pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
echo
echo "| runtime | containers | PSS of the containers' processes per container | of which not the workload | containerd shim PSS per container |"
echo "|---|---:|---:|---:|---:|"
for rt in runc swarm; do
    ids=$(for i in $(seq 1 "$N"); do $D run -d --runtime "$rt" --network none bench-busybox:1 sleep 1000; done)
    sleep 2
    total=0; extra=0; shim=0
    for id in $ids; do
        pid=$($D inspect -f '{{.State.Pid}}' "$id")
        # Every process of the container: its pid-1 and that process's descendants.
        procs="$pid $( (ps -o pid= --ppid "$pid" || true) | tr '\n' ' ')"
        for p in $procs; do
            k=$(pss "$p"); total=$((total + k))
            comm=$(cat "/proc/$p/comm" 2>/dev/null || echo gone)
            [ "$comm" = sleep ] || extra=$((extra + k))
        done
        sp=$(ps -o ppid= -p "$pid" | tr -d ' ')
        shim=$((shim + $(pss "$sp")))
    done
    echo "| $rt | $N | $((total / N)) KiB | $((extra / N)) KiB | $((shim / N)) KiB |"
    $D rm -f $ids >/dev/null
done
