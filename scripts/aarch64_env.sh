#!/usr/bin/env bash
# Makes this x86_64 Debian machine run the aarch64 wheel's tests under QEMU user emulation
# (scripts/test_wheel.sh runs it when ARCH=aarch64). Safe to run again: each step checks first.
#   1. Debian's qemu-user-static, which has qemu-aarch64-static.
#   2. binfmt_misc mounted, and qemu-aarch64 registered there. redirect() starts the helper
#      program with posix_spawn, so the kernel itself must run aarch64 programs; an explicit
#      `qemu-aarch64 python` would not cover the helper. The package's own binfmt line is used,
#      whose F flag makes the kernel open the emulator once, at registration.
#   3. DIR/sysroot: Debian's arm64 python3 and python3-venv with their libraries, unpacked with
#      `dpkg -x`. A private apt state in DIR/apt fetches them, so this machine's dpkg gets no
#      arm64 architecture and its own Python is untouched. aarch64 programs find the sysroot's
#      loader and libraries through QEMU_LD_PREFIX=DIR/sysroot, which the caller exports.
#   4. DIR/wheels: aarch64 wheels of scripts/wheel/test-requirements.txt (pytest, hypothesis,
#      cffi and theirs) for the sysroot's Python, downloaded by this machine's pip.
#
# Usage: scripts/aarch64_env.sh DIR          (scripts/test_wheel.sh passes build/aarch64)
# Environment: PYTHON  the host Python whose pip downloads the wheels (default python3.11)
# Needs root for steps 1 and 2, and for step 3 the first time (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
(($# == 1)) || { echo "usage: scripts/aarch64_env.sh DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
SYSROOT=$DIR/sysroot
PACKAGES="python3 python3-venv"   # Debian's default Python; python3-venv brings ensurepip's wheels
BINFMT=/proc/sys/fs/binfmt_misc

took() { awk -v a="$1" -v b="$EPOCHREALTIME" -v what="$2" 'BEGIN { printf "==> %s: %.1f s\n", what, b - a }'; }
quiet_pip() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }
fail() { echo "aarch64_env.sh: $*" >&2; exit 1; }
need_root() { ((EUID == 0)) || fail "$1 needs root: run this as root once (CI does)"; }
begin=$EPOCHREALTIME

# 1. The emulator. Only qemu-user-static's registration file is used, not binfmt-support.
CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
if [[ ! -f $CONF ]]; then
    need_root "installing qemu-user-static"
    echo "==> installing Debian's qemu-user-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
[[ -f $CONF ]] || fail "qemu-user-static is installed but $CONF is missing"

# 2. binfmt_misc: this kernel has it but does not mount it by default.
if [[ ! -e $BINFMT/register ]]; then
    need_root "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$BINFMT" ||
        fail "cannot mount binfmt_misc on $BINFMT (a container without CAP_SYS_ADMIN?)"
fi
[[ $(cat "$BINFMT/status") == enabled ]] || { need_root "enabling binfmt_misc"; echo 1 >"$BINFMT/status"; }
# A registration whose emulator is gone (a removed package) is replaced; a working one is kept.
entry=$BINFMT/qemu-aarch64
if [[ -e $entry ]] && ! [[ -x $(sed -n 's/^interpreter //p' "$entry") ]]; then
    need_root "replacing the stale qemu-aarch64 registration"
    echo -1 >"$entry"
fi
if [[ ! -e $entry ]]; then
    need_root "registering qemu-aarch64 with binfmt_misc"
    grep -v '^#' "$CONF" >"$BINFMT/register"
fi
grep -qx enabled "$entry" || { need_root "enabling qemu-aarch64"; echo 1 >"$entry"; }
echo "==> binfmt_misc: qemu-aarch64 $(sed -n 's/^interpreter //p' "$entry"), flags $(sed -n 's/^flags: //p' "$entry")"

# 3. The arm64 sysroot, rebuilt when the package list changes (its stamp holds the list).
if [[ $(cat "$DIR/sysroot.stamp" 2>/dev/null) != "$PACKAGES" ]]; then
    need_root "fetching Debian's arm64 packages"
    step=$EPOCHREALTIME
    rm -rf "$SYSROOT" "$DIR/apt" "$DIR/sysroot.stamp"
    mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial"
    : >"$DIR/apt/status"   # nothing installed: apt fetches every dependency
    apt_arm64=(apt-get -qq -o APT::Architecture=arm64 -o APT::Architectures::=arm64
               -o Dir::State::Lists="$DIR/apt/lists" -o Dir::State::Status="$DIR/apt/status"
               -o Dir::Cache="$DIR/apt/cache" -o Debug::NoLocking=1)
    "${apt_arm64[@]}" update
    # shellcheck disable=SC2086  # the package names are words
    "${apt_arm64[@]}" install -y --download-only --no-install-recommends $PACKAGES >/dev/null
    debs=("$DIR"/apt/cache/archives/*.deb)
    for deb in "${debs[@]}"; do dpkg -x "$deb" "$SYSROOT"; done
    rm -rf "$DIR/apt/cache/archives"   # the unpacked tree is what is kept
    echo "$PACKAGES" >"$DIR/sysroot.stamp"
    echo "    ${#debs[@]} arm64 packages unpacked into $SYSROOT ($(du -sm "$SYSROOT" | cut -f1) MiB)"
    took "$step" "arm64 sysroot"
fi
export QEMU_LD_PREFIX=$SYSROOT
# Run directly, not through qemu: this proves that the kernel hands aarch64 programs to QEMU.
machine=$("$SYSROOT/usr/bin/python3" -c 'import platform; print(platform.machine(), platform.python_version())') ||
    fail "$SYSROOT/usr/bin/python3 does not run: is binfmt_misc's qemu-aarch64 entry working? ($entry)"
[[ $machine == aarch64\ * ]] || fail "$SYSROOT/usr/bin/python3 reports machine '$machine', not aarch64"
version=${machine#aarch64 }
version=${version%.*}   # 3.11.2 -> 3.11
echo "==> arm64 Python $version runs under emulation: $SYSROOT/usr/bin/python3"

# 4. The test requirements as aarch64 wheels, downloaded again when the requirements change.
if ! cmp -s scripts/wheel/test-requirements.txt "$DIR/wheels.stamp"; then
    step=$EPOCHREALTIME
    rm -rf "$DIR/wheels" "$DIR/wheels.stamp"
    quiet_pip "${PYTHON:-python3.11}" -m pip download --quiet --dest "$DIR/wheels" --only-binary=:all: \
        --platform manylinux2014_aarch64 --implementation cp --python-version "$version" \
        --abi "cp${version/./}" \
        -r scripts/wheel/test-requirements.txt
    cp scripts/wheel/test-requirements.txt "$DIR/wheels.stamp"
    echo "    $(cd "$DIR/wheels" && echo *)"
    took "$step" "aarch64 wheels for the tests"
fi
took "$begin" "scripts/aarch64_env.sh"
