#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks use, only if missing.
# Usage: scripts/deps.sh [--bench]
set -euo pipefail
pkgs=(gcc binutils python3 libpython3.11-testsuite sqlite3 git fonts-dejavu-core)
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(libmimalloc2.0 libjemalloc2)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
