#!/usr/bin/env bash
# Renders the plain manifests under config/ (for users without Helm) from the Helm
# chart, so that there is one source of truth: charts/kiln. Run after changing the chart;
# e2e/tests/chart_manifests.rs fails when config/ is out of date.
#
#   hack/render-manifests.sh            # rewrite config/{crd,rbac,manager}
#   hack/render-manifests.sh OUT_DIR    # write the same tree under OUT_DIR instead
#
# The manifests are the chart's defaults with release `kiln` in namespace kiln-system:
# operator and builder images `kiln-operator` / `kiln-builder` at the chart's appVersion,
# all namespaces watched. Change them with a kustomize overlay (images:, patches:).
# Helm comes from $HELM, else hack/setup.d/40-helm.sh's cache.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/config}"
helm_version=v3.22.0
helm="${HELM:-${KILN_CACHE_DIR:-$HOME/.cache/kiln}/helm/$helm_version/bin/helm}"
if [[ ! -x "$helm" ]]; then
  echo "render-manifests: no helm at $helm; run hack/setup.sh (or set HELM)" >&2
  exit 1
fi
namespace=kiln-system
chart="$root/charts/kiln"

# One chart template → one manifest file, without Helm's own labels (these objects are
# not managed by a Helm release) and with a header naming the source.
render() {
  local template="$1" target="$2"
  mkdir -p "$(dirname "$target")"
  {
    echo "# Rendered by hack/render-manifests.sh from charts/kiln/$template. Do not edit by hand."
    "$helm" template kiln "$chart" --namespace "$namespace" --show-only "$template" \
      | grep -v -e '^# Source: ' -e 'app.kubernetes.io/managed-by: Helm' -e 'helm.sh/chart: '
  } >"$target"
}

mkdir -p "$out/crd"
cp "$chart/crds/imagebuild.kiln.dev.yaml" "$out/crd/imagebuild.kiln.dev.yaml"
cat >"$out/crd/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - imagebuild.kiln.dev.yaml
YAML

render templates/serviceaccount.yaml "$out/rbac/service_account.yaml"
render templates/rbac.yaml "$out/rbac/rbac.yaml"
cat >"$out/rbac/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - service_account.yaml
  - rbac.yaml
YAML

mkdir -p "$out/manager"
cat >"$out/manager/namespace.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/name: kiln
YAML
render templates/deployment.yaml "$out/manager/deployment.yaml"
render templates/service.yaml "$out/manager/metrics_service.yaml"
render templates/lease.yaml "$out/manager/lease.yaml"
cat >"$out/manager/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - namespace.yaml
  - deployment.yaml
  - metrics_service.yaml
  - lease.yaml
YAML

cat >"$out/kustomization.yaml" <<'YAML'
# Kiln without Helm: `kubectl apply -k config/` installs the CRD, the operator in
# namespace kiln-system and its RBAC (cluster-wide: every namespace is watched). The
# samples are separate: `kubectl apply -k config/samples` after creating namespace ci.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - crd
  - rbac
  - manager
YAML
