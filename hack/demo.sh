#!/usr/bin/env bash
# The README's main command: bring up the local stack (kube-apiserver, emulated node,
# registry with busybox for linux/amd64 and linux/arm64, git server), install the
# ImageBuild CRD, start kiln-operator, push the sample project (examples/shop: backend,
# frontend, frontend-assets) to the git server, build it for both platforms, and print
# the build report.
#
# Needs: hack/setup.sh done once (control plane, kubectl, buildah, QEMU for arm64).
# Stops the operator on exit; the stack stays up for exploring with kubectl
# (`target/debug/kiln-local-stack down` stops it). Run it again to build again: the
# second run reuses every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/bin:$PATH"
for tool in kubectl jq git buildah; do
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
trap 'kill "${OPERATOR_PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "==> pushing examples/shop to $GIT_URL/shop.git"
cp -r examples/shop "$WORK/shop"
git -C "$WORK/shop" init -q -b main
git -C "$WORK/shop" add .
git -C "$WORK/shop" -c user.name=demo -c user.email=demo@example.org commit -q -m "sample"
rm -rf "$REPOS/shop.git"
git clone -q --bare "$WORK/shop" "$REPOS/shop.git"

echo "==> installing the ImageBuild CRD"
"$BIN/kiln-operator" crd | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/imagebuilds.kiln.dev >/dev/null
kubectl create namespace kiln-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null

echo "==> starting kiln-operator (log: $STATE/operator.log)"
"$BIN/kiln-operator" run --namespace default --lock-namespace kiln-system \
  --cache-dir "$STATE/operator-cache" --builder-image kiln-builder:dev \
  --metrics-address 127.0.0.1:0 --insecure-registry "$REGISTRY" \
  2>>"$STATE/operator.log" &
OPERATOR_PID=$!

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
  tail -n 40 "$STATE/operator.log"
  exit 1
fi
echo "==> build report (status.report)"
kubectl get imagebuild "$NAME" -o json | jq '.status.report'
echo "==> images"
kubectl get imagebuild "$NAME" -o json \
  | jq -r '.status.images[] | "\(.image)\t\(.repo):\(.tag)\tcustom tags: \(.customTags | join(", "))"'
cat <<TEXT
==> done. The operator stops now; the stack stays up. To explore and build more:
  export PATH=${KILN_CACHE_DIR:-$HOME/.cache/kiln}/bin:\$PATH KUBECONFIG=$KUBECONFIG
  kubectl get imagebuilds -o wide
  $BIN/kiln-operator report $NAME --format envfile
  $BIN/kiln-operator run --namespace default --lock-namespace kiln-system --cache-dir $STATE/operator-cache --builder-image kiln-builder:dev --metrics-address 127.0.0.1:0 --insecure-registry $REGISTRY
  $BIN/kiln-local-stack --state-dir $STATE down
TEXT
