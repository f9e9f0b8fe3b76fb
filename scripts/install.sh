#!/usr/bin/env bash
# Build in release and install the stratalloc command, the library and its
# header under PREFIX (default: ~/.local):
#   PREFIX/bin/stratalloc
#   PREFIX/lib/libstratalloc.so (debug information split off into
#                                  PREFIX/lib/libstratalloc.so.debug, which
#                                  leak reports and debuggers follow),
#   PREFIX/lib/libstratalloc.a
#   PREFIX/include/stratalloc.h
#   PREFIX/lib/stratalloc/region-bench, engine-bench, engine-workload
#                                  (the suites `stratalloc bench` runs)
# The command finds the library and the suites from where it is (../lib,
# ../lib/stratalloc): no variable to set. Put PREFIX/bin on PATH.
#
# Usage: scripts/install.sh [--no-build] [PREFIX]
#   --no-build   install what target/release already holds
# Environment: CARGO_TARGET_DIR (honoured).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
prefix=
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "install.sh: unknown option $a" >&2; exit 2 ;;
        *) prefix=$a ;;
    esac
done
prefix=${prefix:-$HOME/.local}
rel="${CARGO_TARGET_DIR:-target}/release"

if [ $build = 1 ]; then
    cargo build --release -p stratalloc-capi -p stratalloc-cli -p stratalloc-bench --bins --lib
fi
for f in stratalloc libstratalloc.so libstratalloc.a region-bench engine-bench engine-workload; do
    [ -f "$rel/$f" ] || { echo "install.sh: $rel/$f is missing (run without --no-build)" >&2; exit 1; }
done

mkdir -p "$prefix/bin" "$prefix/lib/stratalloc" "$prefix/include"
install -m 755 "$rel/stratalloc" "$prefix/bin/stratalloc"
install -m 755 "$rel/libstratalloc.so" "$prefix/lib/libstratalloc.so"
scripts/split-debug.sh "$prefix/lib/libstratalloc.so" >/dev/null
install -m 644 "$rel/libstratalloc.a" "$prefix/lib/libstratalloc.a"
install -m 644 crates/capi/include/stratalloc.h "$prefix/include/stratalloc.h"
for b in region-bench engine-bench engine-workload; do
    install -m 755 "$rel/$b" "$prefix/lib/stratalloc/$b"
done
echo "installed into $prefix: bin/stratalloc, lib/libstratalloc.{so,so.debug,a}, include/stratalloc.h, lib/stratalloc/ (benchmarks)"
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on PATH; add it: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
