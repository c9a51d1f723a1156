#!/usr/bin/env bash
# Builds the local Kubernetes cluster the e2e tests run (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and the node's kubelet; the four
# Kubernetes binaries in one `go build`) from the pinned wrapper modules in
# hack/control-plane, into $KILN_CACHE_DIR/control-plane/<pin-hash>/bin.
# Reuses that directory when the pins are unchanged, so only the first run
# (or a pin change) pays for the Go build. GNU time records the build's
# duration and peak memory next to the binaries (build-time.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${KILN_CACHE_DIR:-$HOME/.cache/kiln}/control-plane
mkdir -p "$cache"

if ! command -v go >/dev/null; then
  echo "30-control-plane: the go command is needed to build the control plane (Go >= 1.26)" >&2
  exit 1
fi
if [ ! -x /usr/bin/time ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends time
fi

key=$(hack/control-plane/pin-hash.sh)
dest=$cache/$key
complete() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    [ -x "$1/bin/$b" ] || return 1
  done
}

# Several checkouts on one machine may run setup at once: one builds, the
# others wait and then reuse its result.
exec 9>"$cache/.lock"
flock 9
if complete "$dest"; then
  echo "30-control-plane: reusing $dest/bin"
  exit 0
fi
tmp=$(mktemp -d "$cache/.build.XXXXXX")
# The compiled packages (~3 GB) are only useful for the next pin change; a
# private build cache removed afterwards keeps them off small CI disks.
gocache=$(mktemp -d "$cache/.go-build.XXXXXX")
trap 'rm -rf "$tmp" "$gocache"' EXIT
# nice: the Go build is long and must not starve interactive work on a
# shared machine; it changes nothing on a dedicated CI machine.
GOCACHE="$gocache" /usr/bin/time -v -o "$tmp/build-time.txt" nice -n 10 hack/control-plane/build.sh "$tmp/bin"
grep -E 'Elapsed|Maximum resident' "$tmp/build-time.txt"
rm -rf "$dest"
mv -T "$tmp" "$dest"
rm -rf "$gocache"
trap - EXIT
echo "30-control-plane: built $dest/bin"
