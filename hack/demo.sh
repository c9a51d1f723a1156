#!/usr/bin/env bash
# The README's main command: bring up the local stack (kube-apiserver, a real node with
# containerd and kubelet, registry with busybox for linux/amd64 and linux/arm64, git
# server; the node has the kiln-operator:dev and kiln-builder:dev images made offline
# from the workspace's binaries by hack/images.sh), install Kiln with its Helm chart
# (operator as a Deployment pod), push the sample project (examples/shop: backend,
# frontend, frontend-assets) to the git server, build it for both platforms in builder
# pods, and print the build report.
#
# Needs: hack/setup.sh done once (cluster binaries, helm, kubectl, containerd, buildah,
# QEMU for arm64, the images' root filesystems). The stack and the operator stay up for
# exploring with kubectl: `kubectl apply` of another ImageBuild just builds
# (`target/debug/kiln-local-stack down` stops everything). Run it again to build again:
# the second run reuses every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/bin:$PATH"
for tool in kubectl helm jq git buildah; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found; run hack/setup.sh first" >&2; exit 1; }
done

echo "==> building kiln-operator, kiln-builder and the local stack"
cargo build -q -p kiln-operator -p kiln-builder -p kiln-e2e --bins
BIN=target/debug
STATE="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/local-stack"
echo "==> starting the local stack (state in $STATE)"
"$BIN/kiln-local-stack" --state-dir "$STATE" up >/dev/null
INFO="$STATE/info.json"
KUBECONFIG="$(jq -r .kubeconfig "$INFO")"
export KUBECONFIG
REGISTRY="$(jq -r .registry "$INFO")"
GIT_URL="$(jq -r .git_url "$INFO")"
REPOS="$(jq -r .git_repos_dir "$INFO")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "==> pushing examples/shop to $GIT_URL/shop.git"
cp -r examples/shop "$WORK/shop"
git -C "$WORK/shop" init -q -b main
git -C "$WORK/shop" add .
git -C "$WORK/shop" -c user.name=demo -c user.email=demo@example.org commit -q -m "sample"
rm -rf "$REPOS/shop.git"
git clone -q --bare "$WORK/shop" "$REPOS/shop.git"

echo "==> installing Kiln with the Helm chart (operator pod from the local kiln-operator:dev image)"
helm() { command helm --kubeconfig "$KUBECONFIG" "$@"; }
helm upgrade --install kiln charts/kiln --namespace kiln-system --create-namespace --wait --timeout 180s \
  --set operator.image.repository=kiln-operator --set operator.image.tag=dev \
  --set builder.image.repository=kiln-builder --set builder.image.tag=dev \
  --set builder.resources.cpu= --set operator.resources.requests.cpu=10m \
  --set operator.logFormat=text --set "operator.insecureRegistries={$REGISTRY}" >/dev/null
kubectl get nodes -o wide
kubectl -n kiln-system get pods -o wide

NAME="shop-$(date +%s)"
echo "==> applying ImageBuild $NAME"
kubectl apply -f - <<YAML
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: $NAME, namespace: default }
spec:
  source: { git: { url: "$GIT_URL/shop.git", revision: main } }
  repo: $REGISTRY/shop
  platforms: [linux/amd64, linux/arm64]
  customTags: ["%image%-latest"]
  registryMirrors: ["http://$REGISTRY"]
YAML

# Poll the phase rather than `kubectl wait --for=condition=Succeeded`: a failed build
# sets the condition to False, which `wait` would sit out until its timeout.
deadline=$((SECONDS + 1200))
phase=""
while [ "$SECONDS" -lt "$deadline" ]; do
  phase="$(kubectl get imagebuild "$NAME" -o jsonpath='{.status.phase}')"
  case "$phase" in Succeeded|Failed|Cancelled) break ;; esac
  sleep 1
done
kubectl get imagebuild "$NAME"
if [ "$phase" != Succeeded ]; then
  kubectl get imagebuild "$NAME" \
    -o jsonpath='{.status.conditions[0].reason}: {.status.conditions[0].message}{"\n"}'
  kubectl -n kiln-system logs deploy/kiln-operator --tail=40
  exit 1
fi
echo "==> build report (status.report)"
kubectl get imagebuild "$NAME" -o json | jq '.status.report'
echo "==> images"
kubectl get imagebuild "$NAME" -o json \
  | jq -r '.status.images[] | "\(.image)\t\(.repo):\(.tag)\tcustom tags: \(.customTags | join(", "))"'
kubectl -n kiln-system get pods
cat <<TEXT
==> done. The stack and the operator pod keep running. To explore and build more:
  export PATH=${KILN_CACHE_DIR:-$HOME/.cache/kiln}/bin:\$PATH KUBECONFIG=$KUBECONFIG
  kubectl get nodes -o wide; kubectl -n kiln-system get pods
  kubectl get imagebuilds -o wide
  kubectl -n kiln-system logs deploy/kiln-operator
  $BIN/kiln-operator report $NAME --format envfile
  $BIN/kiln-local-stack --state-dir $STATE down
TEXT
