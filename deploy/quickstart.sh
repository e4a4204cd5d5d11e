#!/usr/bin/env bash
# Local demo cluster: three managers on loopback (own state dirs, ports, sockets and cgroup
# parents under $SWARM_DEMO_DIR), a busybox image on each, then a replicated service running
# as real containers. Needs root (containers). Run it again to resume the same cluster;
# `deploy/quickstart.sh down` stops exactly the daemons of this demo and cleans up after them.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${SWARM_DEMO_DIR:-/tmp/swarm-demo}
BIN=${SWARM_BIN_DIR:-target/debug}
NODES="m1 m2 m3"

# Pids of the swarmd processes serving $DIR/NAME, found by their command line (never by a pid
# file alone, whose pid may have been reused; a daemon restarted by hand is found too).
pids_of() {
    local sd="$DIR/$1" p cmd
    local -a found=()
    for p in $(ls /proc | grep -E '^[0-9]+$'); do
        [ -r "/proc/$p/cmdline" ] || continue
        cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
        case "$cmd" in
            *swarmd\ *--state-dir\ "$sd"\ *) found+=("$p") ;;
        esac
    done
    [ ${#found[@]} -gt 0 ] && printf '%s\n' "${found[@]}" | sort -u
    return 0
}

down() {
    local sock n p left
    # Remove the demo service first, through any daemon still up (m1 may have been killed),
    # and wait for its containers to stop; then the daemons.
    for n in $NODES; do
        sock="$DIR/$n/swarmd.sock"
        if [ -S "$sock" ] && "$BIN/swarmctl" -H "unix://$sock" service rm web >/dev/null 2>&1; then
            for _ in $(seq 1 100); do
                "$BIN/swarmctl" -H "unix://$sock" service ps web >/dev/null 2>&1 || break
                sleep 0.2
            done
            break
        fi
    done
    for n in $NODES; do
        for p in $(pids_of "$n"); do kill -TERM "$p" 2>/dev/null || true; done
    done
    for _ in $(seq 1 75); do
        left=""
        for n in $NODES; do left+=$(pids_of "$n"); done
        [ -z "$left" ] && break
        sleep 0.2
    done
    if [ -n "$left" ]; then
        echo "swarmd did not stop on SIGTERM within 15 s (pids: $left); see $DIR/*.log" >&2
        exit 1
    fi
    # Each node's cgroup parent (swarm-<first 12 characters of its node id>), once empty.
    for n in $NODES; do
        local id
        id=$(sed -n 's/.*"node_id": *"\([a-z0-9]*\)".*/\1/p' "$DIR/$n/node.json" 2>/dev/null | head -c 12)
        [ -n "$id" ] || continue
        # What is still in them had no daemon left to stop it (a task of a node whose swarmd
        # was killed, say): the demo owns these cgroups, so it goes.
        local procs
        procs=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "swarm-$id" 2>/dev/null |
            while read -r d; do find "$d" -name cgroup.procs -exec cat {} \; 2>/dev/null; done | sort -u)
        if [ -n "$procs" ]; then
            echo "$n: stopping $(echo "$procs" | wc -l) process(es) left in its containers' cgroups"
            for p in $procs; do kill -KILL "$p" 2>/dev/null || true; done
            sleep 0.5
        fi
        find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "swarm-$id" 2>/dev/null |
            while read -r d; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
        # Its default bridge and nftables table, when its last container went as it stopped
        # (the agent removes them itself when it sees the container go, or at its next start).
        local tag=${id:0:5} l
        for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^sb$tag-"); do
            ip link show master "$l" 2>/dev/null | grep -q . || ip link del "$l" 2>/dev/null || true
        done
        if ! ip -o link show 2>/dev/null | grep -q " sb$tag-"; then
            nft delete table inet "swarm-$tag" 2>/dev/null || true
            while iptables -w -D FORWARD -i "sb$tag-+" -m comment --comment "swarm-$tag" -j ACCEPT 2>/dev/null; do :; done
            while iptables -w -D FORWARD -o "sb$tag-+" -m comment --comment "swarm-$tag" -j ACCEPT 2>/dev/null; do :; done
        fi
        rm -f "$DIR/$n/swarmd.pid"
    done
    echo "stopped; state kept in $DIR (run deploy/quickstart.sh again to resume, rm -rf it to start over)"
}

if [ "${1:-}" = "down" ]; then down; exit 0; fi

if [ "$(id -u)" != 0 ]; then
    echo "the demo runs real containers: run it as root" >&2
    exit 1
fi
if [ ! -e /usr/share/doc/busybox-static ]; then
    echo "installing busybox-static (the demo's base image) ..."
    apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi
if [ ! -x "$BIN/swarmd" ] || [ ! -x "$BIN/swarmctl" ]; then
    echo "building swarmd and swarmctl into $BIN (a first build takes 5-10 minutes on 2 cores) ..."
    cargo build -q -p swarm-node -p swarm-cli
fi
mkdir -p "$DIR"
start() { # name port [join args]
    local name=$1 port=$2; shift 2
    if [ -n "$(pids_of "$name")" ]; then
        echo "$name already runs (pid $(pids_of "$name" | tr '\n' ' '))"
        return 0
    fi
    mkdir -p "$DIR/$name"
    # Each manager's cluster registry on the gRPC port + 1000 (5242, 5243, 5244).
    "$BIN/swarmd" --state-dir "$DIR/$name" --listen-addr "127.0.0.1:$port" \
        --registry-addr "127.0.0.1:$((port + 1000))" --hostname "$name" "$@" \
        >>"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name/swarmd.pid"
}
ctl() { "$BIN/swarmctl" -H "unix://$DIR/m1/swarmd.sock" "$@"; }
# Waits until NAME serves its socket; with `quorum`, until it also answers a linearizable read.
wait_ready() {
    local name=$1 check=(image ls)
    [ "${2:-}" = quorum ] && check=(cluster inspect)
    for _ in $(seq 1 150); do
        "$BIN/swarmctl" -H "unix://$DIR/$name/swarmd.sock" "${check[@]}" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$name did not become ready; see $DIR/$name.log" >&2
    exit 1
}

if [ -f "$DIR/m1/node.json" ]; then
    # Resume: every node with state starts with the same command line, all at once (one
    # manager alone has no quorum to wait for).
    echo "resuming the demo cluster in $DIR ..."
    start m1 4242
    start m2 4243
    start m3 4244
    for n in $NODES; do wait_ready "$n"; done
    wait_ready m1 quorum
else
    start m1 4242
    wait_ready m1 quorum
    TOKEN=$(ctl cluster join-token manager -q)
    start m2 4243 --join 127.0.0.1:4242 --token "$TOKEN"
    start m3 4244 --join 127.0.0.1:4242 --token "$TOKEN"
    wait_ready m2
    wait_ready m3
fi
[ -f "$DIR/busybox.tar" ] || deploy/busybox-rootfs.sh "$DIR/busybox.tar"
# The image goes in once: imported on m1 and pushed to the cluster registry, from which every
# node pulls it (and the service is pinned to its digest).
"$BIN/swarmctl" -H "unix://$DIR/m1/swarmd.sock" image import "$DIR/busybox.tar" busybox:latest >/dev/null
for i in $(seq 1 50); do
    "$BIN/swarmctl" -H "unix://$DIR/m1/swarmd.sock" image push busybox:latest >/dev/null 2>"$DIR/push.err" && break
    [ "$i" = 50 ] && { cat "$DIR/push.err" >&2; exit 1; }
    sleep 0.2
done
ctl service inspect web >/dev/null 2>&1 ||
    ctl service create -q --name web --replicas 3 busybox httpd -f -p 8080 >/dev/null
for _ in $(seq 1 100); do
    ctl service ls --format json | grep -q '"Replicas":"3/3"' && break
    sleep 0.2
done
ctl node ls
echo
ctl service ls
echo
ctl service ps web
echo
echo "cluster state in $DIR; try: $BIN/swarmctl -H unix://$DIR/m2/swarmd.sock service ls"
echo "stop with: deploy/quickstart.sh down"
