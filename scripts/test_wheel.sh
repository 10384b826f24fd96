#!/usr/bin/env bash
# Tests what scripts/build_wheel.sh built, as a user gets it:
#   1. for each Python version given (default 3.9 and 3.13, the oldest and the newest CPython
#      the one abi3 wheel serves): a fresh venv, `pip install` of the wheel in wheelhouse/ for
#      this machine's architecture, then the core, reader and CLI tests plus
#      tests/test_wheel_install.py against the installed package;
#   2. a fresh venv that installs dist/'s sdist (compiled there by the default cc), then
#      tests/test_wheel_install.py against it.
# The tests run from an empty directory with `python -I`, so `import skyrl_fdlog` can only
# find site-packages; tests/test_wheel_install.py asserts that it did.
#
# ARCH=aarch64 on x86_64 tests the aarch64 wheel under QEMU user emulation instead: step 1
# with Debian's arm64 python3 (that one version), which scripts/aarch64_env.sh sets up in
# build/aarch64 (root the first time), and pip installing the aarch64 wheels it downloaded.
# Step 2 is left out there: the sdist is the same for every architecture.
#
# The assembler tests need its test entry point, which is not in the wheel: they compile it
# from this checkout's tests/c/ and csrc/shared/ (tests/_assembler_entry.py) with CC, by
# default this machine's cc; under QEMU with zig for aarch64, from scripts/build_wheel.sh's tools.
#
# Usage: scripts/test_wheel.sh [VERSION ...] [-- TEST ...]   e.g. scripts/test_wheel.sh 3.9 3.11 3.13
#        ARCH=aarch64 scripts/test_wheel.sh [-- TEST ...]
# TESTs (paths from the repository root, or pytest options such as --deselect=NODEID) replace
# step 1's default list.
# Environment: ARCH the wheel's architecture (default this machine's);
#              WHEEL_TOOLS scripts/build_wheel.sh's tools venv, for zig (default build/wheel-tools);
#              SDIST=0 skips step 2; SDIST_PYTHON is its interpreter (default python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
took() { awk -v a="$1" -v b="$EPOCHREALTIME" -v what="$2" 'BEGIN { printf "==> %s: %.1f s\n", what, b - a }'; }
quiet_pip() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }
fail() { echo "test_wheel.sh: $*" >&2; exit 1; }

ARCH=${ARCH:-$(uname -m)}
VERSIONS=()
tests=()
while (($#)) && [[ $1 != -- ]]; do VERSIONS+=("$1"); shift; done
if (($#)); then
    shift
    # pytest options (--deselect=...) pass as they are; test files are found from the root.
    for arg in "$@"; do
        if [[ $arg == -* ]]; then tests+=("$arg")
        else [[ -f $arg ]] || fail "no test file $arg (give paths from the repository root)"; tests+=("$ROOT/$arg"); fi
    done
fi
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}

shopt -s nullglob
wheels=(wheelhouse/*_"$ARCH".whl)
((${#wheels[@]} == 1)) || fail "expected one $ARCH wheel in wheelhouse/ (run scripts/build_wheel.sh), found ${#wheels[*]}"
wheel=$ROOT/${wheels[0]}
sdists=(dist/skyrl_fdlog-*.tar.gz)

if ((${#tests[@]} == 0)); then
    # The core tests, less test_core_build.py: it compiles csrc/ itself with gcc and ASan and
    # imports skyrl_fdlog._build from the source tree, so it tests the sources, not an install.
    for file in tests/test_core_*.py; do
        [[ $file == tests/test_core_build.py ]] || tests+=("$ROOT/$file")
    done
    # The reader and CLI too: they are pure Python, so they are where 3.11-only code slips in.
    tests+=("$ROOT/tests/test_reader.py" "$ROOT/tests/test_reader_dedup.py" "$ROOT/tests/test_cli.py")
    tests+=("$ROOT/tests/test_wheel_install.py")
fi

interpreter() {  # the newest pyenv CPython of that version, else pythonX.Y on PATH
    local found=("$PYENV_ROOT"/versions/"$1".*/bin/python)
    if ((${#found[@]})); then printf '%s\n' "${found[@]}" | sort -V | tail -1
    elif command -v "python$1" >/dev/null; then command -v "python$1"
    else fail "no Python $1: not in $PYENV_ROOT/versions, no python$1 on PATH"; fi
}

emulated=
if [[ $ARCH != "$(uname -m)" ]]; then
    [[ $ARCH == aarch64 && $(uname -m) == x86_64 ]] ||
        fail "ARCH=$ARCH: only aarch64 is emulated, and only on x86_64 (this machine is $(uname -m))"
    ((${#VERSIONS[@]} == 0)) ||
        fail "ARCH=$ARCH tests Debian's arm64 python3 only: give no VERSION (got ${VERSIONS[*]})"
    emulated=$ROOT/build/aarch64
    scripts/aarch64_env.sh "$emulated"
    # Every aarch64 program inherits these, the helper that redirect() starts included: QEMU
    # finds the arm64 loader and libraries in the sysroot, pip the wheels aarch64_env.sh fetched.
    export QEMU_LD_PREFIX=$emulated/sysroot PIP_NO_INDEX=1 PIP_FIND_LINKS=$emulated/wheels
    VERSIONS=("$("$emulated/sysroot/usr/bin/python3" -c 'import sys; print("%d.%d" % sys.version_info[:2])')")
    SDIST=0
    # An aarch64 compiler for the tests' own C: zig, run natively, as scripts/wheel/zig-cc runs it.
    tools=${WHEEL_TOOLS:-$ROOT/build/wheel-tools}
    SKYRL_ZIG=$("$tools/bin/python" -c 'import pathlib, ziglang; print(pathlib.Path(ziglang.__file__).with_name("zig"))') ||
        fail "no zig in $tools (scripts/build_wheel.sh installs it there; WHEEL_TOOLS names another venv)"
    export SKYRL_ZIG SKYRL_ZIG_TARGET=aarch64-linux-gnu.2.17 CC=$ROOT/scripts/wheel/zig-cc
fi
((${#VERSIONS[@]})) || VERSIONS=(3.9 3.13)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/run"   # the tests' working directory: nothing importable in it
begin=$EPOCHREALTIME

# install_and_test NAME PYTHON TARGET TEST...: fresh venv, install TARGET, run the tests.
# Every step says `|| return 1`: set -e does not apply inside a function called by `if`.
install_and_test() {
    local name=$1 python=$2 target=$3 step
    shift 3
    local venv=$work/venv-$name
    step=$EPOCHREALTIME
    "$python" -m venv "$venv" || return 1
    quiet_pip "$venv/bin/python" -m pip install --quiet "$target" -r scripts/wheel/test-requirements.txt || return 1
    took "$step" "$name: venv and pip install"
    (cd "$work/run" && env -u PYTHONPATH -u SKYRL_FDLOG_HELPER "$venv/bin/python" -I -c \
        'import platform, skyrl_fdlog, sys; print(f"    Python {sys.version.split()[0]} on {platform.machine()}: skyrl_fdlog", skyrl_fdlog.__version__, "from", skyrl_fdlog.__file__)') || return 1
    step=$EPOCHREALTIME
    # -I: no PYTHONPATH, no user site, no cwd on sys.path; -B: no .pyc files in tests/.
    # SKYRL_FDLOG_EXPECT_MACHINE: test_wheel_install.py checks that the tests really ran on $ARCH.
    (cd "$work/run" && env -u PYTHONPATH -u SKYRL_FDLOG_HELPER SKYRL_FDLOG_EXPECT_INSTALLED=1 \
        SKYRL_FDLOG_EXPECT_MACHINE="$ARCH" \
        "$venv/bin/python" -I -B -m pytest -p no:cacheprovider --rootdir "$ROOT" -q "$@") || return 1
    took "$step" "$name: tests"
}

failed=()
for version in "${VERSIONS[@]}"; do
    if [[ -n $emulated ]]; then
        python=$emulated/sysroot/usr/bin/python3
        echo "==> $ARCH wheel under QEMU on Debian's arm64 Python $version ($python): $(basename "$wheel")"
    else
        python=$(interpreter "$version")
        echo "==> wheel on Python $version ($python): $(basename "$wheel")"
    fi
    install_and_test "wheel-py$version" "$python" "$wheel" "${tests[@]}" || failed+=("$ARCH wheel on $version")
done

if [[ ${SDIST:-1} != 0 ]]; then
    ((${#sdists[@]} == 1)) || fail "expected one sdist in dist/ (run scripts/build_wheel.sh), found ${#sdists[*]}"
    echo "==> sdist on ${SDIST_PYTHON:-python3.11}: $(basename "${sdists[0]}"), built by the default cc"
    (unset CC LDSHARED; export PIP_CONSTRAINT=$ROOT/scripts/wheel/build-constraints.txt
     install_and_test sdist "${SDIST_PYTHON:-python3.11}" "$ROOT/${sdists[0]}" "$ROOT/tests/test_wheel_install.py") ||
        failed+=("sdist")
fi
took "$begin" "scripts/test_wheel.sh in all"
if ((${#failed[@]})); then
    echo "==> FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "==> $ARCH wheel passed on Python ${VERSIONS[*]}$([[ ${SDIST:-1} == 0 ]] || echo "; the sdist installed and passed")"
