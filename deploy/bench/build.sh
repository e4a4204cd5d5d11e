#!/usr/bin/env bash
# Issue 19 benchmark: the same Dockerfile and context built by `swarmctl image build` (a
# release swarmd on loopback, real executor) and by this machine's Docker engine
# (`docker build`: the legacy builder, and BuildKit when DOCKER_BUILDKIT=1 works offline),
# cold (--no-cache) and fully cached, side by side with hyperfine. Both start from the same
# busybox rootfs (`docker import` for Docker, `swarmctl image import` for us).
# The context: 2000 small files (4 KiB) and one 32 MiB file; the Dockerfile has two stages,
# COPY --from, three RUN steps and config steps.
# Needs root, busybox-static, hyperfine and a Docker engine. Builds release binaries first.
# Usage: deploy/bench/build.sh [RUNS]   (default 5)
set -euo pipefail
RUNS=${1:-5}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
[ "$(id -u)" = 0 ] || { echo "run as root (real containers)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "install hyperfine" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "a Docker engine must run (the peer)" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$root/target}"
echo "building release swarmd and swarmctl into $target_dir" >&2
cargo build -q --release -p swarm-node -p swarm-cli --bins
BIN="$target_dir/release"
WORK=$(mktemp -d /tmp/swarm-bench-build.XXXXXX)
PORT=$((20000 + RANDOM % 20000))
BASE=swarm-bench-busybox:latest
PID=""

cleanup() {
    set +e
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && sleep 2 && kill -KILL "$PID" 2>/dev/null
    awk -v p="$WORK/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        xargs -r -n1 umount -l 2>/dev/null
    # The default bridge its RUN steps used, its nftables table and FORWARD accepts.
    local tag
    tag=$(sed -n 's/.*"node_id": *"\([a-z0-9]*\)".*/\1/p' "$WORK/m1/node.json" 2>/dev/null | head -c 5)
    if [ -n "$tag" ]; then
        for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^sb$tag-"); do
            ip link del "$l"
        done
        nft delete table inet "swarm-$tag" 2>/dev/null
        while iptables -w -D FORWARD -i "sb$tag-+" -m comment --comment "swarm-$tag" -j ACCEPT 2>/dev/null; do :; done
        while iptables -w -D FORWARD -o "sb$tag-+" -m comment --comment "swarm-$tag" -j ACCEPT 2>/dev/null; do :; done
    fi
    docker rmi -f "$BASE" bench-build:legacy bench-build:buildkit >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

ctl() { "$BIN/swarmctl" -H "unix://$WORK/m1/swarmd.sock" "$@"; }

echo "context and base image in $WORK" >&2
deploy/busybox-rootfs.sh "$WORK/busybox.tar" bench >/dev/null
ctx="$WORK/ctx"
mkdir -p "$ctx/small"
for i in $(seq 1 2000); do head -c 4096 /dev/urandom >"$ctx/small/f$i"; done
head -c $((32 << 20)) /dev/urandom >"$ctx/big.bin"
cat >"$ctx/Dockerfile" <<EOF
FROM $BASE AS build
WORKDIR /src
COPY small/ ./small/
RUN mkdir -p /out && tar -cf /out/small.tar small && md5sum /out/small.tar > /out/small.md5
FROM $BASE
ENV APP=/app
WORKDIR /app
COPY big.bin ./
COPY --from=build /out/ ./out/
RUN mkdir -p gen && for i in \$(seq 1 200); do echo \$i > gen/\$i; done
RUN md5sum big.bin > big.md5
USER 1000
CMD ["cat", "/app/big.md5"]
EOF

"$BIN/swarmd" --state-dir "$WORK/m1" --listen-addr "127.0.0.1:$PORT" \
    --registry-addr "127.0.0.1:$((PORT + 1))" --hostname bench >"$WORK/m1.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do ctl image ls >/dev/null 2>&1 && break; sleep 0.2; done
ctl image import "$WORK/busybox.tar" "$BASE" >/dev/null
docker import "$WORK/busybox.tar" "$BASE" >/dev/null

swarm_cmd="$BIN/swarmctl -H unix://$WORK/m1/swarmd.sock image build -t bench-build:1 $ctx"
legacy_cmd="DOCKER_BUILDKIT=0 docker build -q -t bench-build:legacy $ctx"
buildkit_cmd="DOCKER_BUILDKIT=1 docker build -q -t bench-build:buildkit $ctx"
names=(swarm "docker (legacy builder)")
runs=("$swarm_cmd" "$legacy_cmd")
if DOCKER_BUILDKIT=1 docker build -q -t bench-build:buildkit "$ctx" >"$WORK/buildkit.log" 2>&1; then
    names+=("docker (BuildKit)")
    runs+=("$buildkit_cmd")
else
    echo "BuildKit cannot build here ($(tail -1 "$WORK/buildkit.log")); comparing with the legacy builder only" >&2
fi
# Each tool's result checked once: the image runs and prints the checksum of big.bin.
sh -c "$swarm_cmd" >/dev/null
sh -c "$legacy_cmd" >/dev/null
want=$(md5sum "$ctx/big.bin" | cut -d' ' -f1)
got=$(docker run --rm --network none bench-build:legacy | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "docker's image prints $got, want $want" >&2; exit 1; }

cold=() cached=()
for i in "${!runs[@]}"; do
    cold+=(-n "${names[i]}" "${runs[i]/ build / build --no-cache }")
    cached+=(-n "${names[i]}" "${runs[i]}")
done
echo "== cold: every step runs (--no-cache)" >&2
hyperfine -w 1 -r "$RUNS" --export-markdown "$WORK/cold.md" "${cold[@]}"
echo "== cached: nothing changed" >&2
hyperfine -w 1 -r "$RUNS" --export-markdown "$WORK/cached.md" "${cached[@]}"
echo
echo "cold (--no-cache):"
cat "$WORK/cold.md"
echo
echo "fully cached:"
cat "$WORK/cached.md"
