#!/usr/bin/env bash
# Runs Kiln's whole test suite: formatting, lints, unit, integration and
# end-to-end tests. Tests start the servers they use (registry, git server,
# kube-apiserver) themselves on loopback ports; run hack/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_CACHE_DIR="${KILN_CACHE_DIR:-$HOME/.cache/kiln}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
