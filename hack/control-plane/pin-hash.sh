#!/usr/bin/env bash
# Prints the cache key of the control-plane binaries: the first 16 hex digits
# of the SHA-256 of build.sh, etcd/go.mod, etcd/go.sum, kubernetes/go.mod and
# kubernetes/go.sum concatenated in that order. The e2e fixture computes the
# same key (kiln_e2e::binaries) to find the binaries under
# $KILN_CACHE_DIR/control-plane/<key>/bin.
set -euo pipefail
cd "$(dirname "$0")"
cat build.sh etcd/go.mod etcd/go.sum kubernetes/go.mod kubernetes/go.sum | sha256sum | cut -c1-16
