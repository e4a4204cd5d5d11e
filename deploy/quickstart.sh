#!/usr/bin/env bash
# Local demo cluster: three managers on loopback (own state dirs, ports, sockets and cgroup
# parents under $SWARM_DEMO_DIR), a busybox image on each, then a replicated service running
# as real containers. Needs root (containers). `deploy/quickstart.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${SWARM_DEMO_DIR:-/tmp/swarm-demo}
BIN=${SWARM_BIN_DIR:-target/debug}

down() {
    # Remove the demo service first so its containers stop, then the daemons.
    if [ -S "$DIR/m1/swarmd.sock" ]; then
        "$BIN/swarmctl" -H "unix://$DIR/m1/swarmd.sock" service rm web >/dev/null 2>&1 && sleep 3 || true
    fi
    for pidf in "$DIR"/*/swarmd.pid; do
        [ -f "$pidf" ] || continue
        kill "$(cat "$pidf")" 2>/dev/null || true
    done
    sleep 1
    echo "stopped; state kept in $DIR (rm -rf it to start over)"
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
    echo "building swarmd and swarmctl ..."
    cargo build -q -p swarm-node -p swarm-cli
fi
mkdir -p "$DIR"
start() { # name port [join args]
    local name=$1 port=$2; shift 2
    mkdir -p "$DIR/$name"
    "$BIN/swarmd" --state-dir "$DIR/$name" --listen-addr "127.0.0.1:$port" --hostname "$name" "$@" \
        >>"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name/swarmd.pid"
}
ctl() { "$BIN/swarmctl" -H "unix://$DIR/m1/swarmd.sock" "$@"; }
wait_ready() {
    for _ in $(seq 1 100); do
        "$BIN/swarmctl" -H "unix://$DIR/$1/swarmd.sock" cluster inspect >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$1 did not start; see $DIR/$1.log" >&2
    exit 1
}

start m1 4242
wait_ready m1
TOKEN=$(ctl cluster join-token manager -q)
# A node with state resumes with the same command line; --join is ignored then.
start m2 4243 --join 127.0.0.1:4242 --token "$TOKEN"
start m3 4244 --join 127.0.0.1:4242 --token "$TOKEN"
wait_ready m2
wait_ready m3
deploy/busybox-rootfs.sh "$DIR/busybox.tar"
for n in m1 m2 m3; do
    "$BIN/swarmctl" -H "unix://$DIR/$n/swarmd.sock" image import "$DIR/busybox.tar" busybox:latest >/dev/null
done
ctl service inspect web >/dev/null 2>&1 ||
    ctl service create -q --name web --replicas 3 busybox httpd -f -p 8080 >/dev/null
for _ in $(seq 1 50); do
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
