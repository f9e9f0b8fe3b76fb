#!/usr/bin/env bash
# The test command named in README.md. Installs what it needs, then runs every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
