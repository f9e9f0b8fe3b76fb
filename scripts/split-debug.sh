#!/usr/bin/env bash
# Split the debug information off built libraries, as a distribution ships
# them (Debian's dh_strip does the same): FILE keeps its code, its dynamic
# symbols and a .gnu_debuglink naming FILE.debug, which holds the debug
# information and the full symbol table. Debuggers and the leak report's
# symbolizer (the `backtrace` crate) follow the link: FILE.debug beside FILE,
# in .debug/ beside it, or under /usr/lib/debug/<dir of FILE>/.
#
# Usage: scripts/split-debug.sh FILE...   (e.g. target/release/libstratalloc.so)
# Needs objcopy (binutils). Writes FILE.debug next to each FILE.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 FILE..." >&2; exit 2; }
for f in "$@"; do
    dir=$(dirname "$f")
    base=$(basename "$f")
    objcopy --only-keep-debug "$f" "$f.debug"
    chmod -x "$f.debug"
    # The link is looked up by file name; objcopy records the CRC of $f.debug.
    (cd "$dir" && objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$base.debug" "$base")
    echo "$f: $(stat -c %s "$f") bytes, debug information in $f.debug ($(stat -c %s "$f.debug") bytes)"
done
