#!/usr/bin/env bash
# Orchestration benchmark (c): real containers on this machine, swarm vs Docker Swarm mode.
#
# For each side, wall time from `service create --replicas 50` until `service ls` shows 50/50,
# from `service scale bench=100` until 100/100, and from `service rm` until every container
# process is gone. Runs alternate (swarm, docker, swarm, docker, ...), each from a clean state;
# prints a markdown table (median [min-max] per phase, docker/swarm ratio) and peak memory of
# the daemons while 100 replicas run.
#
# Usage (root): deploy/bench/orchestration/vs-docker.sh
# Env: RUNS=3  REPLICAS=50  SCALE_TO=100
#      VARIANTS="swarm1 docker swarm1-warm docker-init swarm3 swarm3-warm" run in this order each
#        round (all from a clean state); known variants:
#        swarm1 / swarm3   one swarmd / three managers on loopback (each also runs tasks)
#        swarm1-warm / swarm3-warm   the same, but a 1-replica warm-up service has run first,
#                          so the image's layer is already unpacked on every node (as after
#                          `docker import`, which unpacks at import time)
#        docker            Docker Swarm mode, `docker service create --detach ... sleep 1d`
#        docker-init       the same with --init (docker-init as pid 1 forwards SIGTERM, as our
#                          per-container init does; without it `sleep` as pid 1 ignores SIGTERM
#                          and every removal waits for the 10 s stop grace period)
#      WAIT_TIMEOUT=300 (s per wait)  POLL=0.05 (s)  PORT_BASE=47420  SWARMD_LOG_LEVEL=info
#      DOCKER_CREATE_ARGS="" (extra `docker service create` flags, e.g. --init)
#      OUT_DIR (logs and raw results; default a new /tmp/vs-docker.XXXX, kept)
#      CARGO_TARGET_DIR is respected; SKIP_BUILD=1 uses existing binaries (SWARM_BIN_DIR, default
#      $CARGO_TARGET_DIR/release).
# Only loopback addresses are used; no ports are published. Everything the script starts is
# stopped by an EXIT trap, also on failure; a Docker swarm is left only if the script created it.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD

RUNS=${RUNS:-3}
N1=${REPLICAS:-50}
N2=${SCALE_TO:-100}
VARIANTS=${VARIANTS:-swarm1 docker swarm1-warm docker-init swarm3 swarm3-warm}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300}
POLL=${POLL:-0.05}
PORT_BASE=${PORT_BASE:-47420}
LOG_LEVEL=${SWARMD_LOG_LEVEL:-info}
DOCKER_CREATE_ARGS=${DOCKER_CREATE_ARGS:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${SWARM_BIN_DIR:-$TARGET/release}
DIMAGE=swarmbench-busybox:latest
SVC=bench

[ "$(id -u)" = 0 ] || { echo "vs-docker: needs root (real containers)" >&2; exit 1; }
command -v docker >/dev/null || { echo "vs-docker: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "vs-docker: dockerd is not running" >&2; exit 1; }
OUT=${OUT_DIR:-$(mktemp -d /tmp/vs-docker.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv # variant run phase seconds
MEM=$OUT/mem.tsv         # variant run key value
: >"$RESULTS"
: >"$MEM"
: >"$OUT/loadavg.tsv"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------- state for the EXIT trap
SW_DIRS=()          # state dirs of the running swarm cluster
SW_PIDS=()          # swarmd pids
DOCKER_SVC_UP=0     # our docker service may exist
CREATED_DSWARM=0    # we ran `docker swarm init`
IMPORTED_DIMAGE=0   # we ran `docker import`
TAG=""              # unique sleep argument of the current run

# ---------------------------------------------------------------- helpers
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# Number of benchmark container processes of the current run (`sleep 1d TAG`).
nprocs() { pgrep -c -f "^sleep 1d $TAG\$" 2>/dev/null || true; }
rss_kb() { # pid...: summed VmRSS in kB of the pids that still exist
    local s=0 p v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
# wait_for DESC CHECK...: polls CHECK every $POLL s; fails after $WAIT_TIMEOUT s.
# Calls `on_poll` (if set) every 10th poll for memory sampling.
ON_POLL=""
wait_for() {
    local desc=$1; shift
    local start deadline i=0
    start=$(now)
    deadline=$(awk -v s="$start" -v t="$WAIT_TIMEOUT" 'BEGIN { printf "%d", s + t }')
    while :; do
        "$@" && return 0
        if [ -n "$ON_POLL" ] && [ $((i % 10)) = 0 ]; then $ON_POLL; fi
        i=$((i + 1))
        if [ "${EPOCHREALTIME%[.,]*}" -ge "$deadline" ]; then
            die "timed out after ${WAIT_TIMEOUT}s waiting for: $desc"
        fi
        sleep "$POLL"
    done
}

# ---------------------------------------------------------------- swarm side
ctl() { "$BIN/swarmctl" -H "unix://${SW_DIRS[0]}/swarmd.sock" "$@"; }
port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

sw_cgroup_dirs() { # state dir -> cgroup parent dirs of its runtime
    local id
    id=$(sed -n 's/.*"node_id": *"\([^"]*\)".*/\1/p' "$1/node.json" 2>/dev/null | head -1)
    [ ${#id} -ge 12 ] || return 0
    local d
    for d in /sys/fs/cgroup/*/"swarm-${id:0:12}" /sys/fs/cgroup/"swarm-${id:0:12}"; do
        [ -d "$d" ] && echo "$d"
    done
    return 0
}
sw_cgroup_pids() { # state dir... -> pids in those cgroups (unique)
    local sd d
    for sd in "$@"; do
        for d in $(sw_cgroup_dirs "$sd"); do
            find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true
        done
    done | sort -un
}

sw_start() { # nodes
    local n=$1 i dir port
    SW_DIRS=(); SW_PIDS=()
    for i in $(seq 1 "$n"); do
        port=$((PORT_BASE + i - 1))
        port_free "$port" || die "port 127.0.0.1:$port is in use (set PORT_BASE)"
    done
    for i in $(seq 1 "$n"); do
        dir=$OUT/state/m$i
        port=$((PORT_BASE + i - 1))
        rm -rf "$dir"; mkdir -p "$dir"
        SW_DIRS+=("$dir")
        local join=()
        if [ "$i" -gt 1 ]; then
            join=(--join "127.0.0.1:$PORT_BASE" --token "$TOKEN")
        fi
        "$BIN/swarmd" --state-dir "$dir" --listen-addr "127.0.0.1:$port" --hostname "m$i" \
            --log-level "$LOG_LEVEL" "${join[@]}" >>"$OUT/$VARIANT-run$RUN-m$i.log" 2>&1 &
        SW_PIDS+=($!)
        local t
        for t in $(seq 1 300); do
            "$BIN/swarmctl" -H "unix://$dir/swarmd.sock" cluster inspect >/dev/null 2>&1 && break
            kill -0 "${SW_PIDS[-1]}" 2>/dev/null || die "swarmd m$i exited; see $OUT/$VARIANT-run$RUN-m$i.log"
            [ "$t" = 300 ] && die "swarmd m$i not ready after 60s; see $OUT/$VARIANT-run$RUN-m$i.log"
            sleep 0.2
        done
        [ "$i" = 1 ] && TOKEN=$(ctl cluster join-token manager -q)
    done
    wait_for "$n ready nodes" sw_nodes_ready "$n"
    for dir in "${SW_DIRS[@]}"; do
        "$BIN/swarmctl" -H "unix://$dir/swarmd.sock" image import "$OUT/busybox.tar" busybox:latest \
            >/dev/null || die "image import on $dir failed"
    done
}
sw_nodes_ready() { [ "$(ctl node ls --format json 2>/dev/null | grep -c '"Status":"Ready"')" -ge "$1" ]; }
sw_replicas() { sw_replicas_of "$SVC" "$1"; }
sw_replicas_of() { ctl service ls --format json 2>/dev/null | grep "\"Name\":\"$1\"" | grep -q "\"Replicas\":\"$2/$2\""; }
sw_cgroups_empty() { [ -z "$(sw_cgroup_pids "${SW_DIRS[@]}")" ]; }
sw_mem_sample() {
    local d c non
    d=$(rss_kb "${SW_PIDS[@]}")
    [ "$d" -gt "${PEAK_DAEMON:-0}" ] && PEAK_DAEMON=$d
    # Processes in the containers' cgroups other than the workload itself (our per-container
    # init, if any): the per-container overhead, comparable to Docker's shims.
    non=($(comm -23 <(sw_cgroup_pids "${SW_DIRS[@]}" | sort) \
        <(pgrep -f "^sleep 1d $TAG\$" | sort) ))
    c=${#non[@]}
    d=$( [ "$c" -gt 0 ] && rss_kb "${non[@]}" || echo 0)
    extra_seen "$c" "$d"
}

sw_stop() { # full cleanup of the current swarm cluster (also called from the trap)
    [ ${#SW_DIRS[@]} -gt 0 ] || return 0
    if [ -S "${SW_DIRS[0]}/swarmd.sock" ]; then
        timeout 10 "$BIN/swarmctl" -H "unix://${SW_DIRS[0]}/swarmd.sock" service rm "$SVC" >/dev/null 2>&1 || true
    fi
    local p t
    for p in "${SW_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for t in $(seq 1 150); do
        local alive=0
        for p in "${SW_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.2
    done
    for p in "${SW_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            log "swarmd $p did not exit 30s after SIGTERM: SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
    local left
    left=$(sw_cgroup_pids "${SW_DIRS[@]}")
    if [ -n "$left" ]; then
        log "killing $(echo "$left" | wc -l) leftover container processes"
        kill -KILL $left 2>/dev/null || true
        for t in $(seq 1 50); do
            [ -z "$(sw_cgroup_pids "${SW_DIRS[@]}")" ] && break
            sleep 0.1
        done
    fi
    local sd d
    for sd in "${SW_DIRS[@]}"; do
        for d in $(sw_cgroup_dirs "$sd"); do
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done
    done
    # Mounts (container rootfs overlays) below the state dirs, deepest first.
    awk -v p="$OUT/state/" 'index($2, p) == 1 { print length($2), $2 }' /proc/self/mounts |
        sort -rn | while read -r _ m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$OUT/state"
    SW_DIRS=(); SW_PIDS=()
}

run_swarm() { # nodes [warm]
    local nodes=$1 t0
    sw_start "$nodes"
    if [ "${2:-}" = warm ]; then
        # One task per node unpacks the image's layer there (untimed).
        ctl service create -q --name warmup --mode global busybox sleep 1d 0 >/dev/null
        wait_for "warm-up service $nodes/$nodes" sw_replicas_of warmup "$nodes"
        ctl service rm warmup >/dev/null
        wait_for "warm-up containers gone" sw_cgroups_empty
    fi
    PEAK_DAEMON=0; PEAK_EXTRA=0; PEAK_EXTRA_N=0
    log "$VARIANT run $RUN: create $N1"
    t0=$(now)
    ctl service create -q --name "$SVC" --replicas "$N1" busybox sleep 1d "$TAG" >/dev/null
    ON_POLL="" wait_for "service ls $N1/$N1" sw_replicas "$N1"
    record create "$(elapsed "$t0" "$(now)")"
    [ "$(nprocs)" -ge "$N1" ] || log "WARNING: $N1/$N1 shown but only $(nprocs) processes"
    log "$VARIANT run $RUN: scale to $N2"
    t0=$(now)
    ctl service scale "$SVC=$N2" >/dev/null
    ON_POLL=sw_mem_sample wait_for "service ls $N2/$N2" sw_replicas "$N2"
    record scale "$(elapsed "$t0" "$(now)")"
    ON_POLL=""
    hold_sample sw_mem_sample
    log "$VARIANT run $RUN: rm"
    t0=$(now)
    ctl service rm "$SVC" >/dev/null
    wait_for "all $VARIANT containers gone" nprocs_zero
    record rm "$(elapsed "$t0" "$(now)")"
    record_mem
    # Tasks the agent rejected (e.g. a failed image unpack): each is replaced after the restart
    # delay, which shows up in the timings.
    local rej
    rej=$(cat "$OUT/$VARIANT-run$RUN"-m*.log | grep -c 'task rejected' || true)
    printf '%s\t%s\tREJECTED\t%s\n' "$VARIANT" "$RUN" "$rej" >>"$MEM"
    [ "$rej" = 0 ] || log "  $rej tasks rejected by the agent (see $OUT/$VARIANT-run$RUN-m*.log)"
    sw_stop
}

# ---------------------------------------------------------------- docker side
dk_replicas() { docker service ls --filter "name=$SVC" --format '{{.Name}} {{.Replicas}}' 2>/dev/null | grep -qx "$SVC $1/$1"; }
dk_containers_gone() { [ -z "$(docker ps -aq --filter "label=com.docker.swarm.service.name=$SVC")" ]; }
dk_daemon_pids() { pidof dockerd containerd 2>/dev/null || true; }
dk_mem_sample() {
    local d s
    d=$(rss_kb $(dk_daemon_pids))
    [ "$d" -gt "${PEAK_DAEMON:-0}" ] && PEAK_DAEMON=$d
    s=($(pgrep -f '^/usr/bin/containerd-shim|^containerd-shim' || true))
    d=$( [ "${#s[@]}" -gt 0 ] && rss_kb "${s[@]}" || echo 0)
    extra_seen "${#s[@]}" "$d"
}
dk_setup() {
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" = inactive ]; then
        log "docker swarm init --advertise-addr 127.0.0.1"
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null
        CREATED_DSWARM=1
    elif [ "$state" != active ]; then
        die "docker swarm state is '$state'"
    fi
    if docker service inspect "$SVC" >/dev/null 2>&1; then
        die "a docker service named '$SVC' already exists; remove it first"
    fi
    if ! docker image inspect "$DIMAGE" >/dev/null 2>&1; then
        IMPORTED_DIMAGE=1
    fi
    docker import "$OUT/busybox.tar" "$DIMAGE" >/dev/null
}
dk_cleanup() {
    if [ "$DOCKER_SVC_UP" = 1 ]; then
        docker service rm "$SVC" >/dev/null 2>&1 || true
        local t
        for t in $(seq 1 600); do dk_containers_gone && break; sleep 0.5; done
        DOCKER_SVC_UP=0
    fi
}
run_docker() { # [extra create flags]
    local t0
    PEAK_DAEMON=0; PEAK_EXTRA=0; PEAK_EXTRA_N=0
    log "$VARIANT run $RUN: create $N1"
    DOCKER_SVC_UP=1
    t0=$(now)
    # shellcheck disable=SC2086
    docker service create --detach --name "$SVC" --replicas "$N1" $DOCKER_CREATE_ARGS "$@" \
        "$DIMAGE" sleep 1d "$TAG" >/dev/null 2>>"$OUT/$VARIANT-run$RUN.err"
    ON_POLL="" wait_for "docker service ls $N1/$N1" dk_replicas "$N1"
    record create "$(elapsed "$t0" "$(now)")"
    [ "$(nprocs)" -ge "$N1" ] || log "WARNING: $N1/$N1 shown but only $(nprocs) processes"
    log "$VARIANT run $RUN: scale to $N2"
    t0=$(now)
    docker service scale --detach "$SVC=$N2" >/dev/null 2>>"$OUT/$VARIANT-run$RUN.err"
    ON_POLL=dk_mem_sample wait_for "docker service ls $N2/$N2" dk_replicas "$N2"
    record scale "$(elapsed "$t0" "$(now)")"
    ON_POLL=""
    hold_sample dk_mem_sample
    log "$VARIANT run $RUN: rm"
    t0=$(now)
    docker service rm "$SVC" >/dev/null
    wait_for "all docker containers' processes gone" nprocs_zero
    record rm "$(elapsed "$t0" "$(now)")"
    record_mem
    # Untimed: wait until docker has removed the containers too, before the next run.
    wait_for "docker containers removed" dk_containers_gone
    DOCKER_SVC_UP=0
}

# ---------------------------------------------------------------- common
nprocs_zero() { [ "$(nprocs)" = 0 ]; }
extra_seen() { # count kB: helper processes; peak and last value
    [ "$1" -gt "${PEAK_EXTRA_N:-0}" ] && PEAK_EXTRA_N=$1
    [ "$2" -gt "${PEAK_EXTRA:-0}" ] && PEAK_EXTRA=$2
    LAST_EXTRA_N=$1; LAST_EXTRA=$2
    return 0
}
hold_sample() { # 3 s at N2 replicas, sampling memory every 0.5 s
    local i
    for i in 1 2 3 4 5 6; do "$1"; sleep 0.5; done
    [ "$(nprocs)" -ge "$N2" ] || log "WARNING: $N2/$N2 shown but only $(nprocs) processes"
}
record() { printf '%s\t%s\t%s\t%s\n' "$VARIANT" "$RUN" "$1" "$2" >>"$RESULTS"; log "  $1: $2 s"; }
record_mem() {
    local k v
    for k in PEAK_DAEMON PEAK_EXTRA PEAK_EXTRA_N LAST_EXTRA LAST_EXTRA_N; do
        v=${!k}
        printf '%s\t%s\t%s\t%s\n' "$VARIANT" "$RUN" "$k" "$v" >>"$MEM"
    done
    log "  peak daemon RSS ${PEAK_DAEMON} kB; helper processes peak $PEAK_EXTRA_N (${PEAK_EXTRA} kB), at rest $LAST_EXTRA_N (${LAST_EXTRA} kB)"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    sw_stop
    dk_cleanup
    if [ "$IMPORTED_DIMAGE" = 1 ]; then docker rmi "$DIMAGE" >/dev/null 2>&1; fi
    if [ "$CREATED_DSWARM" = 1 ]; then
        log "docker swarm leave --force"
        docker swarm leave --force >/dev/null 2>&1
    fi
    [ $rc = 0 ] || log "failed (exit $rc); logs in $OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- main
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p swarm-node -p swarm-cli (target dir $TARGET)"
    CARGO_TARGET_DIR=$TARGET cargo build -q --release -p swarm-node -p swarm-cli
fi
[ -x "$BIN/swarmd" ] && [ -x "$BIN/swarmctl" ] || die "no release binaries in $BIN"
deploy/busybox-rootfs.sh "$OUT/busybox.tar"
dk_setup

TAGBASE=$(( ($$ % 900 + 100) * 10 ))
read -r -a VARIANTS <<<"$VARIANTS"
k=0
for RUN in $(seq 1 "$RUNS"); do
    for VARIANT in "${VARIANTS[@]}"; do
        k=$((k + 1))
        TAG=$((TAGBASE + k)) # `sleep 1d TAG` sleeps 1 day + TAG s; TAG tells this run's processes apart
        [ "$(nprocs)" = 0 ] || die "processes 'sleep 1d $TAG' exist before the run"
        # Other work on the machine skews the timings: keep the load average of each run.
        printf '%s\t%s\t%s\n' "$VARIANT" "$RUN" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.tsv"
        case $VARIANT in
            swarm1) run_swarm 1 ;;
            swarm3) run_swarm 3 ;;
            swarm1-warm) run_swarm 1 warm ;;
            swarm3-warm) run_swarm 3 warm ;;
            docker) run_docker ;;
            docker-init) run_docker --init ;;
            *) die "unknown variant $VARIANT" ;;
        esac
    done
done

# ---------------------------------------------------------------- report
stat() { # variant phase -> "median min max" (seconds)
    awk -F'\t' -v v="$1" -v p="$2" '$1 == v && $3 == p { print $4 }' "$RESULTS" | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}
memstat() { # variant key -> max over runs
    awk -F'\t' -v v="$1" -v k="$2" '$1 == v && $3 == k && $4 > m { m = $4 } END { print m + 0 }' "$MEM"
}
cell() { read -r m lo hi <<<"$(stat "$1" "$2")"; echo "$m [$lo–$hi]"; }
ratio() { # docker-variant swarm-variant phase -> ratio of medians
    local a b
    a=$(stat "$1" "$3" | cut -d' ' -f1); b=$(stat "$2" "$3" | cut -d' ' -f1)
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "-" }'
}
# Totals per run, for the table.
awk -F'\t' '$3 != "rm" { t[$1 "\t" $2] += $4 } END { for (k in t) printf "%s\tcreate+scale\t%.3f\n", k, t[k] }' \
    "$RESULTS" | awk -F'\t' '{ print $1 "\t" $2 "\t" $3 "\t" $4 }' >>"$RESULTS"

kb2mb() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
{
    echo "| variant | create --replicas $N1 → $N1/$N1 | scale → $N2/$N2 | create + scale | service rm → no container process | daemons' peak RSS at $N2 | helper processes at $N2 (peak) | tasks rejected, all runs |"
    echo "|---|---|---|---|---|---|---|---|"
    for v in "${VARIANTS[@]}"; do
        row="| $v |"
        for ph in create scale create+scale rm; do row+=" $(cell "$v" "$ph") |"; done
        row+=" $(kb2mb "$(memstat "$v" PEAK_DAEMON)") |"
        row+=" $(memstat "$v" LAST_EXTRA_N), $(kb2mb "$(memstat "$v" LAST_EXTRA)") ($(memstat "$v" PEAK_EXTRA_N), $(kb2mb "$(memstat "$v" PEAK_EXTRA)")) |"
        row+=" $(awk -F'\t' -v v="$v" '$1 == v && $3 == "REJECTED" { n++; s += $4 } END { print n ? s : "-" }' "$MEM") |"
        echo "$row"
    done
    echo
    echo "| ratio of medians | create | scale | create + scale | rm |"
    echo "|---|---|---|---|---|"
    for d in "${VARIANTS[@]}"; do
        [[ $d == docker* ]] || continue
        for v in "${VARIANTS[@]}"; do
            [[ $v == swarm* ]] || continue
            row="| $d / $v |"
            for ph in create scale create+scale rm; do row+=" $(ratio "$d" "$v" "$ph") |"; done
            echo "$row"
        done
    done
} | tee "$OUT/table.md"
log "load average (1/5/15 min) at the start of each run: $(awk -F'\t' '{ printf "%s ", $3 }' "$OUT/loadavg.tsv" | cut -c1-400)"
log "raw results: $RESULTS, $MEM, $OUT/loadavg.tsv; logs in $OUT"
