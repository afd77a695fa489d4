#!/usr/bin/env bash
# Runs every test: makes sure what they need is there (the wasm32-wasip2 target, a PostgreSQL on
# 127.0.0.1:5432), then `cargo test --workspace`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
bash tests/services.sh
# The console's vendored libraries are exactly what package-lock.json pins.
node console/vendor.mjs --check
cargo test --workspace "$@"
