#!/usr/bin/env bash
# Benchmarks swarm-runtime against runc and crun on the same busybox OCI bundle.
# crun refuses hybrid cgroups; on such a host run it where only the v1 hierarchy is visible:
#   unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; exec deploy/bench/runtime/run.sh'
# Needs root, busybox-static, runc, crun, hyperfine, time (apt-get install -y busybox-static
# runc crun hyperfine time). Usage: deploy/bench/runtime/run.sh [RUNS]   (default 100)
set -euo pipefail
RUNS=${1:-100}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$(mktemp -d /tmp/swarm-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

[ -x /bin/busybox ] || { echo "install busybox-static" >&2; exit 1; }
(cd "$REPO" && cargo build --release -p swarm-runtime --bins --examples >&2)
# The workspace release profile keeps debuginfo (23 MB binary); ship it stripped like a distro
# package would: every CLI invocation copies the binary into a sealed memfd (CVE-2019-5736).
SR="$WORK/swarm-runtime"
strip -o "$SR" "$TARGET/release/swarm-runtime"
API="$TARGET/release/examples/bench_api"

# One bundle for everyone: runc's default spec, not a terminal, /bin/true.
B="$WORK/bundle"
mkdir -p "$B/rootfs/bin" "$B/rootfs/etc" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/dev"
cp /bin/busybox "$B/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$B/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$B/rootfs/etc/passwd"
(cd "$B" && runc spec)
python3 - "$B/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["process"]["env"] = ["PATH=/bin"]
json.dump(c, open(p, "w"), indent=1)
PY

echo "== versions"; runc --version | head -1; crun --version | head -1; hyperfine --version
echo "== uname: $(uname -r); cgroups: $(stat -fc %T /sys/fs/cgroup) ($(ls /sys/fs/cgroup | tr '\n' ' '))"

CMDS=()
NAMES=()
try() { # name, command
  if eval "$2" >/dev/null 2>"$WORK/err"; then CMDS+=("$2"); NAMES+=("$1");
  else echo "== $1 does not work here: $(head -c 300 "$WORK/err")"; fi
}
try swarm-runtime "$SR --root $WORK/sr run --bundle $B bench-sr"
try runc "runc --root $WORK/runc run --bundle $B bench-runc"
try crun "crun --root $WORK/crun run --bundle $B bench-crun"

ARGS=()
for i in "${!CMDS[@]}"; do ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
echo "== hyperfine: full lifecycle (run of /bin/true = create+start+wait+delete), $RUNS runs after 10 warm-ups"
hyperfine -N --warmup 10 --runs "$RUNS" --export-markdown "$WORK/hf.md" --export-json "$WORK/hf.json" "${ARGS[@]}"
cat "$WORK/hf.md"
echo "== medians (the issue's measure) and the ratio to crun's"
python3 - "$WORK/hf.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
crun = next((x["median"] for c, x in r.items() if c.startswith("crun")), None)
for c, x in r.items():
    ratio = f"  ({x['median'] / crun:.2f}x crun)" if crun else ""
    print(f"{c.split()[0]:>50}: median {x['median'] * 1000:.1f} ms{ratio}")
PY

echo "== peak memory (/usr/bin/time -v, max RSS of the command and its reaped children)"
for i in "${!CMDS[@]}"; do
  kb=$( { /usr/bin/time -v ${CMDS[$i]} >/dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "${NAMES[$i]}: ${kb} kB"
done

echo "== library API (what the agent pays) and memory per running container"
"$API" "$B/rootfs" "$RUNS"
