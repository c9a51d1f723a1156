#!/usr/bin/env bash
# Prints the cache key of the kubectl binary: the first 16 hex digits of the
# SHA-256 of build.sh, go.mod, go.sum and main.go concatenated in that order.
# The e2e fixture computes the same key (kiln_e2e::binaries::kubectl) to find
# the binary at $KILN_CACHE_DIR/kubectl/<key>/kubectl.
set -euo pipefail
cd "$(dirname "$0")"
cat build.sh go.mod go.sum main.go | sha256sum | cut -c1-16
