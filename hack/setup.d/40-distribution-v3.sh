#!/usr/bin/env bash
# The distribution v3 registry, built from its Go module. Debian's docker-registry
# (distribution 2.8) ignores `n` on the tags list and never paginates; v3 pages the
# tags list with `n`/`last` and a `Link` header, which the stages-storage tests need
# to prove that Kiln follows pagination. Installed as
# $KILN_CACHE_DIR/bin/registry-v3-<version>; skipped when already there.
set -euo pipefail
version=v3.1.2
cache="${KILN_CACHE_DIR:-$HOME/.cache/kiln}"
target="$cache/bin/registry-v3-$version"
if [[ -x "$target" ]]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "40-distribution-v3: Go (1.23 or newer) is needed to build the registry" >&2
  exit 1
fi
mkdir -p "$cache/bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 go install "github.com/distribution/distribution/v3/cmd/registry@$version"
mv "$tmp/registry" "$target"
