#!/usr/bin/env bash
# Builds kubectl from the wrapper module next to this script into the
# directory given as $1.
#
# Flags follow upstream's release builds (static, CGO off, -trimpath, stripped,
# tags selinux,notest) and stamp the version with -X into the same variables as
# hack/control-plane/build.sh, so `kubectl version --client` reports the real
# Kubernetes version instead of "v0.0.0-master". The version comes from the
# k8s.io/kubectl pin: staging module v0.X.Y is Kubernetes v1.X.Y.
#
# This file is part of the cache key (pin-hash.sh): editing it rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
cd "$here"

staging_version=$(go list -m -f '{{.Version}}' k8s.io/kubectl)
case $staging_version in
  v0.*.*) ;;
  *) echo "build.sh: k8s.io/kubectl is pinned to $staging_version, expected a v0.X.Y release" >&2; exit 1 ;;
esac
k8s_version=v1.${staging_version#v0.}
k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for kv in "gitVersion=$k8s_version" "gitMajor=1" "gitMinor=$k8s_minor" \
          "gitTreeState=archive" "buildDate=$build_date"; do
  ldflags="$ldflags -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
echo "building kubectl $k8s_version -> $out"
go build -trimpath -tags=selinux,notest -ldflags="$ldflags" -o "$out/kubectl" .

"$out/kubectl" version --client
