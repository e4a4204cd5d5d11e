#!/usr/bin/env bash
# Writes a minimal root filesystem tarball from Debian's busybox-static (the base image of the
# demo and the tests): bin/busybox, a symlink per applet, /etc/passwd and /etc/group.
# Usage: deploy/busybox-rootfs.sh OUT.tar [MARKER]   (MARKER goes to /etc/image-version)
set -euo pipefail
out=${1:?usage: $0 OUT.tar [MARKER]}
marker=${2:-v1}
bb=/bin/busybox
if [ ! -x "$bb" ] || ! file -L "$bb" 2>/dev/null | grep -q static && [ ! -e /usr/share/doc/busybox-static ]; then
    echo "busybox-static is not installed: apt-get install busybox-static" >&2
    exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/root"
cp "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
echo "$marker" >"$dir/etc/image-version"
chmod 1777 "$dir/tmp"
tar -C "$dir" -cf "$out" .
