#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks use, only if missing.
# Usage: scripts/deps.sh [--bench]
#
# "a|b" means either package will do (installed: a). The QEMU system
# emulators come from <release>-backports when the release's own ones cannot
# be installed (an image that ships qemu-utils from backports breaks the
# release's qemu-system-common).
set -euo pipefail
pkgs=(gcc g++ binutils python3 libpython3.11-testsuite sqlite3 git fonts-dejavu-core
    # demo.sh times each run with /usr/bin/time; valgrind.sh
    time valgrind
    # the profile's HTML page is loaded in headless Chromium (test-wrappers.sh)
    chromium
    # the threads' stacks of a hung run (test-fork.sh)
    gdb
    # cross builds and runs (test-cross.sh, test-embedded.sh, test-bare-metal.sh, test-aarch64-lib.sh)
    qemu-user gcc-arm-linux-gnueabihf libc6-dev-armhf-cross gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-arm-none-eabi qemu-system-arm "qemu-system-misc|qemu-system-riscv")
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(libmimalloc2.0 libjemalloc2
        # real programs timed on each allocator (bench-programs.sh)
        perl redis-server redis-tools)
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Every command the scripts call that does not come with a minimal Debian
# (coreutils, sed, grep, mawk, diffutils are always there), and its package:
# checked once the packages are in.
commands=(gcc:gcc c++:g++ readelf:binutils strip:binutils nm:binutils python3:python3
    sqlite3:sqlite3 git:git /usr/bin/time:time valgrind:valgrind timeout:coreutils
    qemu-arm:qemu-user qemu-aarch64:qemu-user arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf
    aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu arm-none-eabi-gcc:gcc-arm-none-eabi
    qemu-system-arm:qemu-system-arm qemu-system-riscv32:qemu-system-misc)
check_commands() {
    local bad=0 c
    for c in "${commands[@]}"; do
        if ! command -v "${c%%:*}" >/dev/null; then
            echo "deps: ${c%%:*} is missing (package ${c#*:})" >&2
            bad=1
        fi
    done
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] ||
        { echo "deps: the DejaVu font is missing (package fonts-dejavu-core)" >&2; bad=1; }
    return $bad
}
missing=()
system=()
for alts in "${pkgs[@]}"; do
    found=0
    for p in ${alts//|/ }; do
        if installed "$p"; then found=1; fi
    done
    [ $found = 1 ] && continue
    p=${alts%%|*}
    case "$p" in
        qemu-system-*) system+=("$p") ;;
        *) missing+=("$p") ;;
    esac
done
if [ ${#missing[@]} -eq 0 ] && [ ${#system[@]} -eq 0 ]; then
    check_commands
    exit
fi
echo "deps: installing ${missing[*]} ${system[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
$SUDO apt-get update -qq
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
[ ${#system[@]} -eq 0 ] && { check_commands; exit; }
apt_install --no-install-recommends --no-remove "${system[@]}" && { check_commands; exit; }

# The release's emulators conflict with what is installed: take them from
# backports, through a source list of our own (the system's is untouched).
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || exit 1
dir=$(mktemp -d /tmp/stratalloc-deps.XXXXXX)
trap 'rm -rf "$dir"' EXIT
keys=/usr/share/keyrings/debian-archive-keyring.gpg
for suite in "$codename" "$codename-updates" "$codename-backports"; do
    echo "deb [signed-by=$keys] http://deb.debian.org/debian $suite main"
done >"$dir/sources.list"
echo "deb [signed-by=$keys] http://deb.debian.org/debian-security $codename-security main" >>"$dir/sources.list"
mkdir -p "$dir/lists/partial" "$dir/archives/partial"
opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::lists=$dir/lists" -o "Dir::Cache::archives=$dir/archives")
echo "deps: ${system[*]} from $codename-backports"
$SUDO apt-get "${opts[@]}" update -qq
apt_install "${opts[@]}" --no-install-recommends -t "$codename-backports" "${system[@]}"
check_commands
