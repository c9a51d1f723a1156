#!/usr/bin/env bash
# The images every local node needs before any pod runs, made offline (nothing can be
# pulled from the internet here): the pod sandbox ("pause") image, compiled with
# `gcc -static` from Kubernetes' own build/pause/linux/pause.c in the Go module cache,
# and busybox (Debian's busybox-static) for plain test pods. Each is an OCI archive that
# the local stack imports into its containerd at start-up (`ctr images import`):
#
#   $KILN_CACHE_DIR/node-images/<key>/pause.oci.tar    registry.k8s.io/pause:kiln
#   $KILN_CACHE_DIR/node-images/<key>/busybox.oci.tar  docker.io/library/busybox:latest
#
# <key> hashes this script, pause.c and the busybox binary, so a change rebuilds; the
# e2e fixture finds the newest complete directory through the `current` link.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${KILN_CACHE_DIR:-$HOME/.cache/kiln}/node-images
mkdir -p "$root"

k8s_dir=$(cd hack/control-plane/kubernetes && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
pause_c=$k8s_dir/build/pause/linux/pause.c
if [ ! -f "$pause_c" ]; then
  (cd hack/control-plane/kubernetes && go mod download k8s.io/kubernetes)
fi
key=$(cat "$0" "$pause_c" /bin/busybox | sha256sum | cut -c1-16)
dest=$root/$key
exec 9>"$root/.lock"
flock 9
if [ -f "$dest/pause.oci.tar" ] && [ -f "$dest/busybox.oci.tar" ]; then
  ln -sfn "$key" "$root/current"
  echo "45-node-images: reusing $dest"
  exit 0
fi
tmp=$(mktemp -d "$root/.build.XXXXXX")
mkdir -p "$tmp/out"
trap 'buildah --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs rm -a >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
b() { buildah --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs "$@"; }

# pause: one static binary, run as the sandbox's only process.
gcc -Os -static -Wall -o "$tmp/pause" "$pause_c"
strip "$tmp/pause"
ctr=$(b from scratch)
mnt=$(b mount "$ctr")
install -m 0755 "$tmp/pause" "$mnt/pause"
b umount "$ctr" >/dev/null
b config --entrypoint '["/pause"]' --user 65535:65535 --os linux --arch amd64 "$ctr"
b commit -q --format oci "$ctr" registry.k8s.io/pause:kiln >/dev/null
b push -q registry.k8s.io/pause:kiln "oci-archive:$tmp/out/pause.oci.tar:registry.k8s.io/pause:kiln"

# busybox: the static binary and its applets as symlinks.
ctr=$(b from scratch)
mnt=$(b mount "$ctr")
mkdir -p "$mnt/bin" "$mnt/tmp" "$mnt/etc"
install -m 0755 /bin/busybox "$mnt/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$mnt/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$mnt/etc/passwd"
echo "root:x:0:" > "$mnt/etc/group"
b umount "$ctr" >/dev/null
b config --cmd '["/bin/sh"]' --env PATH=/bin --os linux --arch amd64 "$ctr"
b commit -q --format oci "$ctr" docker.io/library/busybox:latest >/dev/null
b push -q docker.io/library/busybox:latest "oci-archive:$tmp/out/busybox.oci.tar:docker.io/library/busybox:latest"

rm -rf "$dest"
mv -T "$tmp/out" "$dest"
ln -sfn "$key" "$root/current"
echo "45-node-images: built $dest"
