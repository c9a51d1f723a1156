#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kubelet from the wrapper modules next to this script into the directory
# given as $1. The four Kubernetes binaries come from one `go build`, so the
# packages they share (most of them) are compiled once.
#
# Flags follow upstream's release builds (static, CGO off, -trimpath, stripped,
# tags selinux,notest) and stamp the version with -X the way upstream's
# hack/lib/version.sh does, so /version reports the real Kubernetes version
# instead of "v0.0.0-master". Only the binaries Kiln's e2e tests need are
# built; no race detector.
#
# This file is part of the cache key (pin-hash.sh): editing it rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"

k8s_version=$(cd "$here/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for kv in "gitVersion=$k8s_version" "gitMajor=1" "gitMinor=$k8s_minor" \
          "gitTreeState=archive" "buildDate=$build_date"; do
  ldflags="$ldflags -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
echo "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet $k8s_version -> $out"
(cd "$here/kubernetes" && go build -trimpath -tags=selinux,notest -ldflags="$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet)

etcd_version=$(cd "$here/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
echo "building etcd $etcd_version -> $out"
(cd "$here/etcd" && go build -trimpath -ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" \
  -o "$out/etcd" go.etcd.io/etcd/server/v3)

"$out/kube-apiserver" --version
"$out/etcd" --version | head -1
