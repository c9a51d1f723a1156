#!/usr/bin/env bash
# The README's main command: bring up the local stack (kube-apiserver, emulated node,
# registry, git server), install the ImageBuild CRD, start kiln-operator, build a sample
# project (the seed's backend / frontend / frontend-assets on a local busybox base, for
# linux/amd64 and linux/arm64), wait, and print the build report.
#
# Needs: hack/setup.sh done once (control plane, buildah, qemu binfmt), kubectl, jq.
# Stops the operator on exit; the stack stays up (`target/debug/kiln-local-stack down`).
set -euo pipefail
export PATH="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/bin:$PATH"
cd "$(dirname "$0")/.."

cargo build -q -p kiln-operator -p kiln-builder -p kiln-e2e --bins
BIN=target/debug
STATE="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/local-stack"
"$BIN/kiln-local-stack" --state-dir "$STATE" up >/dev/null
INFO="$STATE/info.json"
export KUBECONFIG="$(jq -r .kubeconfig "$INFO")"
REGISTRY="$(jq -r .registry "$INFO")"
GIT_URL="$(jq -r .git_url "$INFO")"
REPOS="$(jq -r .git_repos_dir "$INFO")"
WORK="$(mktemp -d)"
trap 'kill "${OPERATOR_PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A busybox base image for both platforms in the local registry (nothing from the internet).
for arch in amd64 arm64; do
  ctr=$(buildah --storage-driver vfs from --arch "$arch" scratch)
  buildah --storage-driver vfs copy "$ctr" /bin/busybox /bin/busybox >/dev/null
  buildah --storage-driver vfs run --isolation chroot "$ctr" /bin/busybox --install -s /bin 2>/dev/null || true
  buildah --storage-driver vfs commit -q "$ctr" "localhost/busybox-$arch" >/dev/null
  buildah --storage-driver vfs rm "$ctr" >/dev/null
done
buildah --storage-driver vfs manifest rm localhost/busybox-demo 2>/dev/null || true
buildah --storage-driver vfs manifest create localhost/busybox-demo >/dev/null
for arch in amd64 arm64; do
  buildah --storage-driver vfs manifest add --arch "$arch" localhost/busybox-demo "localhost/busybox-$arch" >/dev/null
done
buildah --storage-driver vfs manifest push -q --all --tls-verify=false localhost/busybox-demo "docker://$REGISTRY/busybox:demo"

# The sample project, pushed to the stack's git server.
mkdir -p "$WORK/shop/src"
cat >"$WORK/shop/werf.yaml" <<YAML
project: shop
configVersion: 1
---
image: backend
dockerfile: Dockerfile
target: backend
---
image: frontend
dockerfile: Dockerfile
target: application
---
image: frontend-assets
dockerfile: Dockerfile
target: assets
YAML
cat >"$WORK/shop/Dockerfile" <<DOCKERFILE
FROM $REGISTRY/busybox:demo AS backend
COPY src/ /srv/backend/
RUN echo built > /srv/backend/stamp

FROM $REGISTRY/busybox:demo AS application
COPY src/ /srv/app/

FROM $REGISTRY/busybox:demo AS assets
COPY --from=application /srv/app /srv/assets
DOCKERFILE
echo "hello from kiln" >"$WORK/shop/src/index.txt"
git -C "$WORK/shop" init -q -b main
git -C "$WORK/shop" add .
git -C "$WORK/shop" -c user.name=demo -c user.email=demo@example.org commit -q -m "sample"
rm -rf "$REPOS/shop.git"
git clone -q --bare "$WORK/shop" "$REPOS/shop.git"

"$BIN/kiln-operator" crd | kubectl apply -f - >/dev/null
kubectl create namespace kiln-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$BIN/kiln-operator" run --namespace default --lock-namespace kiln-system \
  --cache-dir "$WORK/cache" --builder-image kiln-builder:dev \
  --metrics-address 127.0.0.1:0 --insecure-registry "$REGISTRY" \
  2>"$WORK/operator.log" &
OPERATOR_PID=$!

NAME="shop-$(date +%s)"
kubectl apply -f - <<YAML
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: $NAME, namespace: default }
spec:
  source: { git: { url: "$GIT_URL/shop.git", revision: main } }
  repo: $REGISTRY/shop
  platforms: [linux/amd64, linux/arm64]
  customTags: ["%image%-latest"]
YAML
if ! kubectl wait --for=condition=Succeeded --timeout=20m "imagebuild/$NAME"; then
  kubectl get imagebuild "$NAME" -o jsonpath='{.status.conditions[0].reason}: {.status.conditions[0].message}{"\n"}'
  tail -n 40 "$WORK/operator.log"
  exit 1
fi
kubectl get imagebuild "$NAME"
kubectl get imagebuild "$NAME" -o json | jq '.status.report'
