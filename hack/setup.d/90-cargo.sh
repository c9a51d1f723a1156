#!/usr/bin/env bash
# Fetches and compiles the Rust workspace and its tests once, so the test run
# afterwards only runs tests.
set -euo pipefail
cargo fetch --locked
cargo test --workspace --locked --no-run
