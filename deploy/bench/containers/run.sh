#!/usr/bin/env bash
# Real containers at scale on ONE host. Two release swarmd on loopback: a manager that is
# drained (it runs nothing) and a worker; `service create --replicas N busybox sleep MARKER`
# puts all N containers on the worker. Reports: create → all running, rm → all gone, and the
# worker's (i.e. the agent's) threads, RSS and open fds at N running (the manager's too, for
# reference). Targets (issue 10): threads independent of N; agent RSS ≤ 50 MiB + 20 KiB × N.
# Needs root and busybox-static. Builds release binaries first.
# Usage: deploy/bench/containers/run.sh [REPLICAS]   (default 2000)
set -euo pipefail
N=${1:-2000}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
[ "$(id -u)" = 0 ] || { echo "run as root (real containers)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "install busybox-static" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$root/target}"
echo "building release swarmd and swarmctl into $target_dir" >&2
cargo build -q --release -p swarm-node -p swarm-cli --bins
BIN="$target_dir/release"
WORK=$(mktemp -d /tmp/swarm-bench-containers.XXXXXX)
MARKER=$((900000 + RANDOM))  # `sleep MARKER` identifies this run's containers
PM=$((20000 + RANDOM % 20000)); PW=$((PM + 1))
M_PID=""; W_PID=""

ctl() { local n=$1; shift; "$BIN/swarmctl" -H "unix://$WORK/$n/swarmd.sock" "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }  # pid key
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
count() { pgrep -xfc "sleep $MARKER" || true; }
node_id() { sed -n 's/.*"node_id": *"\([a-z0-9]*\)".*/\1/p' "$WORK/$1/node.json" 2>/dev/null | head -c 12; }
cgroups() { # cgroup parent dirs of node $1
    local id; id=$(node_id "$1"); [ -n "$id" ] || return 0
    find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "swarm-$id" 2>/dev/null
}
left_behind() { # state dirs + container cgroups + mounts of the worker
    local n=0
    n=$((n + $(find "$WORK/w1/containers/containers" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
    for d in $(cgroups w1); do n=$((n + $(find "$d" -mindepth 1 -maxdepth 1 -type d | wc -l))); done
    n=$((n + $(awk -v p="$WORK/" 'index($5, p) == 1' /proc/self/mountinfo | wc -l)))
    echo "$n"
}

cleanup() {
    set +e
    for p in $W_PID $M_PID; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 1 100); do
        { [ -z "$W_PID" ] || ! kill -0 "$W_PID" 2>/dev/null; } &&
            { [ -z "$M_PID" ] || ! kill -0 "$M_PID" 2>/dev/null; } && break
        sleep 0.1
    done
    for p in $W_PID $M_PID; do kill -KILL "$p" 2>/dev/null; done
    # Containers outlive swarmd by design: kill what is left in this run's cgroups.
    for n in w1 m1; do
        for d in $(cgroups "$n"); do
            find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        done
    done
    sleep 0.5
    awk -v p="$WORK/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        xargs -r -n1 umount -l 2>/dev/null
    for n in w1 m1; do
        for d in $(cgroups "$n"); do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # what timeout_s command...
    local what=$1 t=$2; shift 2
    local end=$(( $(date +%s) + t ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "timed out after ${t}s waiting for $what" >&2
            tail -20 "$WORK"/*.log >&2
            exit 1
        fi
        sleep 0.2
    done
}

echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); $(uname -r); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
echo "Command: deploy/bench/containers/run.sh $*  (replicas: $N)"

"$BIN/swarmd" --state-dir "$WORK/m1" --listen-addr "127.0.0.1:$PM" --hostname bench-m1 \
    >"$WORK/m1.log" 2>&1 &
M_PID=$!
wait_for "the manager" 60 ctl m1 cluster inspect
TOKEN=$(ctl m1 cluster join-token worker -q)
"$BIN/swarmd" --state-dir "$WORK/w1" --listen-addr "127.0.0.1:$PW" --hostname bench-w1 \
    --join "127.0.0.1:$PM" --token "$TOKEN" >"$WORK/w1.log" 2>&1 &
W_PID=$!
wait_for "the worker's socket" 60 ctl w1 image ls
ctl m1 node update --availability drain bench-m1 >/dev/null
deploy/busybox-rootfs.sh "$WORK/busybox.tar" v1
ctl w1 image import "$WORK/busybox.tar" busybox:latest >/dev/null
ready2() { [ "$(ctl m1 node ls --format json | grep -c '"Status":"Ready"')" = 2 ]; }
wait_for "both nodes ready" 60 ready2
sleep 2
IDLE_T=$(field "$W_PID" Threads); IDLE_RSS=$(field "$W_PID" VmRSS)
echo "worker idle: $IDLE_T threads, $(mib "$IDLE_RSS") MiB RSS"

# --network none: this measures the runtime and the agent; a Linux bridge takes at most 1,024
# ports, so 2,000 containers cannot all be on the node's default bridge (Docker's docker0 has
# the same limit).
echo "== create: service create --replicas $N --network none busybox sleep $MARKER"
t0=$(now)
ctl m1 service create --name bench --replicas "$N" --restart-condition none --network none \
    busybox sleep "$MARKER" >/dev/null
max_t=0; last=0
end=$(( $(date +%s) + 1800 ))
while :; do
    c=$(count)
    th=$(field "$W_PID" Threads); [ "${th:-0}" -gt "$max_t" ] && max_t=$th
    if [ "$c" -ge "$N" ] && ctl m1 service ls --format json | grep -q "\"Replicas\":\"$N/$N\""; then
        break
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
        echo "timed out: $c of $N containers run" >&2
        ctl m1 service ps bench --format json | sed -n 's/.*"CurrentState":"\([A-Za-z]*\).*/\1/p' | sort | uniq -c >&2
        exit 1
    fi
    if [ $(( $(date +%s) - last )) -ge 15 ]; then
        echo "  $(secs "$t0" "$(now)") s: $c running, $th threads"; last=$(date +%s)
    fi
    sleep 0.5
done
t_run=$(secs "$t0" "$(now)")
echo "all $N running after $t_run s (peak threads during the ramp: $max_t)"
sleep 11  # let the blocking pool's idle threads of the ramp retire (tokio keeps them 10 s)
W_T=$(field "$W_PID" Threads); W_RSS=$(field "$W_PID" VmRSS); W_HWM=$(field "$W_PID" VmHWM)
W_ANON=$(field "$W_PID" RssAnon); W_FILE=$(field "$W_PID" RssFile)
W_FDS=$(ls "/proc/$W_PID/fd" | wc -l)
M_T=$(field "$M_PID" Threads); M_RSS=$(field "$M_PID" VmRSS)
echo "worker at $N running: $W_T threads, RSS $(mib "$W_RSS") MiB (anon $(mib "$W_ANON"), file $(mib "$W_FILE"); peak $(mib "$W_HWM")), $W_FDS fds"
echo "manager at $N tasks: $M_T threads, RSS $(mib "$M_RSS") MiB"
PER=$(awk -v a="$IDLE_RSS" -v b="$W_RSS" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')
TARGET=$(awk -v n="$N" 'BEGIN { printf "%.1f", 50 + 20 * n / 1024 }')

echo "== remove: service rm bench"
t1=$(now)
ctl m1 service rm bench >/dev/null
gone() { [ "$(count)" = 0 ] && [ "$(left_behind)" = 0 ]; }
wait_for "all containers gone" 1800 gone
t_gone=$(secs "$t1" "$(now)")
echo "all gone after $t_gone s"

echo
echo "| replicas | create → all running | rm → all gone | agent threads idle / ramp peak / at $N | agent RSS idle → at $N (peak) | per container | target RSS | agent fds at $N | manager RSS, threads |"
echo "|---:|---:|---:|---|---|---:|---:|---:|---|"
echo "| $N | $t_run s | $t_gone s | $IDLE_T / $max_t / $W_T | $(mib "$IDLE_RSS") → $(mib "$W_RSS") MiB ($(mib "$W_HWM")) | $PER KiB | ≤ $TARGET MiB | $W_FDS | $(mib "$M_RSS") MiB, $M_T |"
