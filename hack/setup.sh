#!/usr/bin/env bash
# Prepares this machine for Kiln's tests and its local demo: runs every step in
# hack/setup.d in name order. Each step is idempotent and caches what is slow to
# build under ${KILN_CACHE_DIR:-$HOME/.cache/kiln}, outside the work tree, so a
# fresh clone reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_CACHE_DIR="${KILN_CACHE_DIR:-$HOME/.cache/kiln}"
mkdir -p "$KILN_CACHE_DIR"
for step in hack/setup.d/*.sh; do
  echo "==> setup: $step"
  bash "$step"
done
echo "==> setup: done"
