#!/usr/bin/env bash
# Helm, built from its Go module (helm.sh/helm/v3 has no replace directives, so a
# plain `go install` works). The chart tests render charts/kiln with it and apply
# the result to the local kube-apiserver. Installed as
# $KILN_CACHE_DIR/helm/<version>/bin/helm; skipped when already there.
# Cold build (module download + compile, empty Go caches for helm's modules): 6 min 22 s
# wall, 1 min 51 s user CPU on a 2-core machine shared with other builds; an 87 MB binary.
set -euo pipefail
version=v3.22.0
cache="${KILN_CACHE_DIR:-$HOME/.cache/kiln}"
target_dir="$cache/helm/$version/bin"
# Also on PATH for people: $KILN_CACHE_DIR/bin/helm (next to kubectl).
link() { mkdir -p "$cache/bin" && ln -sfn "$target_dir/helm" "$cache/bin/helm"; }
if [[ -x "$target_dir/helm" ]]; then
  link
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "40-helm: Go (1.26 or newer) is needed to build helm $version" >&2
  exit 1
fi
mkdir -p "$target_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Build into a scratch dir and move into place so that an interrupted build never
# leaves a half-written binary that the check above would accept. The ldflag sets
# the version `helm version` prints (otherwise a built-in default like v3.22).
GOBIN="$tmp" CGO_ENABLED=0 go install \
  -ldflags "-X helm.sh/helm/v3/internal/version.version=$version" \
  "helm.sh/helm/v3/cmd/helm@$version"
mv "$tmp/helm" "$target_dir/helm"
link
