#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks use, only if missing.
# Usage: scripts/deps.sh [--bench]
#
# "a|b" means either package will do (installed: a). The QEMU system
# emulators come from <release>-backports when the release's own ones cannot
# be installed (an image that ships qemu-utils from backports breaks the
# release's qemu-system-common).
set -euo pipefail
pkgs=(gcc binutils python3 libpython3.11-testsuite sqlite3 git fonts-dejavu-core
    # the threads' stacks of a hung run (test-fork.sh)
    gdb
    # cross builds and runs (test-cross.sh, test-embedded.sh, test-bare-metal.sh, test-aarch64-lib.sh)
    qemu-user gcc-arm-linux-gnueabihf libc6-dev-armhf-cross gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-arm-none-eabi qemu-system-arm "qemu-system-misc|qemu-system-riscv")
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(libmimalloc2.0 libjemalloc2)
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
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
    exit 0
fi
echo "deps: installing ${missing[*]} ${system[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
$SUDO apt-get update -qq
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
[ ${#system[@]} -eq 0 ] && exit 0
apt_install --no-install-recommends --no-remove "${system[@]}" && exit 0

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
