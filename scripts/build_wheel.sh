#!/usr/bin/env bash
# Builds, without Docker, the wheels that `pip install skyrl-fdlog` needs on x86_64 and aarch64
# Linux (one abi3 wheel per architecture), and the sdist they are built from:
#   wheelhouse/skyrl_fdlog-<version>-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#   wheelhouse/skyrl_fdlog-<version>-cp39-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl
#   dist/skyrl_fdlog-<version>.tar.gz
# zig cross-compiles the cffi extension and the skyrl-fdlog-helper program for each architecture
# against glibc 2.17's symbol versions; auditwheel and abi3audit then prove the tags.
# docs/packaging.md explains it; scripts/test_wheel.sh tests both (aarch64 under QEMU).
#
# Environment: PYTHON       interpreter for the tools venv (default python3.11)
#              WHEEL_TOOLS  the tools venv (default build/wheel-tools; never .venv)
#              WHEEL_ARCHS  the architectures (default "x86_64 aarch64")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}
TOOLS=${WHEEL_TOOLS:-$ROOT/build/wheel-tools}
read -r -a ARCHS <<<"${WHEEL_ARCHS:-x86_64 aarch64}"
GLIBC=2.17   # manylinux_2_17: zig links against this glibc's symbol versions
# What `readelf -h` calls each architecture's ELF machine; step 4 checks every file's.
declare -A ELF_MACHINE=([x86_64]="Advanced Micro Devices X86-64" [aarch64]=AArch64)

took() { awk -v a="$1" -v b="$EPOCHREALTIME" -v what="$2" 'BEGIN { printf "==> %s: %.1f s\n", what, b - a }'; }
# This machine's pip configuration names local indexes that lack most packages; pip warns
# about each one it skips. Drop those lines, keep everything else (and pip's exit status).
quiet_pip() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }
fail() { echo "build_wheel.sh: $*" >&2; exit 1; }
for arch in "${ARCHS[@]}"; do
    [[ -n ${ELF_MACHINE[$arch]:-} ]] || fail "WHEEL_ARCHS: unknown architecture '$arch' (known: ${!ELF_MACHINE[*]})"
done

begin=$EPOCHREALTIME
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step=$EPOCHREALTIME
echo "==> [1/4] build tools in $TOOLS: $(grep -v '^#' scripts/wheel/tools.txt | tr '\n' ' ')"
test -x "$TOOLS/bin/python" || "$PYTHON" -m venv "$TOOLS"
quiet_pip "$TOOLS/bin/python" -m pip install --quiet -r scripts/wheel/tools.txt
# The zig binary itself: `python -m ziglang` would find no ziglang inside the isolated build env.
ZIG=$("$TOOLS/bin/python" -c 'import pathlib, ziglang; print(pathlib.Path(ziglang.__file__).with_name("zig"))')
echo "    zig $("$ZIG" version), targets ${ARCHS[*]/%/-linux-gnu.$GLIBC}"
took "$step" "build tools"

step=$EPOCHREALTIME
echo "==> [2/4] sdist, then a wheel per architecture from it (isolated builds, CC and LDSHARED = zig)"
export SKYRL_ZIG=$ZIG
export CC=$ROOT/scripts/wheel/zig-cc LDSHARED=$ROOT/scripts/wheel/zig-ldshared
export PIP_CONSTRAINT=$ROOT/scripts/wheel/build-constraints.txt
# run_build LOG ARG...: python -m build with its output in LOG, whose tail is shown if it fails.
run_build() {
    local log=$1
    shift
    if ! "$TOOLS/bin/python" -m build "$@" >"$log" 2>&1; then
        grep -v "^WARNING: Location 'file:" "$log" | tail -60 >&2
        fail "python -m build $* failed (last lines above)"
    fi
}
run_build "$work/sdist.log" --sdist --outdir "$work/sdist" .
sdist=$(echo "$work"/sdist/*.tar.gz)
for arch in "${ARCHS[@]}"; do
    # Each architecture gets its own copy of the sdist: setuptools reuses any object it finds in
    # the source tree's build/ up to date, and that would be the other architecture's.
    mkdir "$work/src-$arch"
    tar -xzf "$sdist" -C "$work/src-$arch"
    export SKYRL_ZIG_TARGET=$arch-linux-gnu.$GLIBC
    # setuptools tags a wheel with the build machine's platform; --plat-name names the target's.
    # (_PYTHON_HOST_PLATFORM would do that too, but pip then installs the isolated environment's
    # cffi for the target, and the build fails with "No module named '_cffi_backend'".)
    log=$work/build-$arch.log
    run_build "$log" --wheel --outdir "$work/wheel-$arch" -C--build-option=--plat-name=linux_$arch \
        "$work/src-$arch"/*/
    # The link lines in the log prove which compiler built what (no gcc line may sneak in).
    grep -q "zig-ldshared .*_fdlog.abi3.so" "$log" || fail "$arch: the extension was not linked by zig"
    grep -q "zig-cc .*-o [^ ]*skyrl-fdlog-helper" "$log" || fail "$arch: the helper was not linked by zig"
    if grep -E "^(gcc|cc|x86_64-linux-gnu-gcc) " "$log"; then fail "$arch: the host compiler ran"; fi
    echo "    $arch: $(grep -cE "zig-(cc|ldshared) " "$log") zig invocations for $SKYRL_ZIG_TARGET;" \
        "built $(cd "$work/wheel-$arch" && echo *)"
done
took "$step" "sdist + wheels"

step=$EPOCHREALTIME
echo "==> [3/4] auditwheel repair --plat manylinux_${GLIBC/./_}_<arch> --only-plat (retags; nothing to vendor)"
mkdir -p wheelhouse dist
rm -f wheelhouse/*.whl dist/skyrl_fdlog-*.tar.gz
cp "$sdist" dist/
for arch in "${ARCHS[@]}"; do
    # auditwheel checks a foreign architecture's wheel too (it takes the architecture from the
    # wheel, and the policy's libc and libpthread need not be found here), but --plat accepts
    # only this machine's architecture's tags. Elsewhere `auto` picks the oldest policy the wheel
    # meets; `show` must have named manylinux_2_17, and step 4 checks the tag it wrote.
    plat=manylinux_${GLIBC/./_}_$arch
    PATH=$TOOLS/bin:$PATH "$TOOLS/bin/auditwheel" show "$work/wheel-$arch"/*.whl >"$work/show-$arch.txt" 2>&1
    sed 's/^/    /' "$work/show-$arch.txt"
    tr -s ' \n' ' ' <"$work/show-$arch.txt" | grep -q "consistent with the following platform tag: \"$plat\"" ||
        fail "auditwheel show: the $arch wheel does not meet $plat (output above)"
    [[ $arch == "$(uname -m)" ]] || plat=auto
    PATH=$TOOLS/bin:$PATH "$TOOLS/bin/auditwheel" repair --plat "$plat" --only-plat \
        -w wheelhouse "$work/wheel-$arch"/*.whl 2>&1 | sed 's/^/    /'
done
took "$step" "auditwheel"

step=$EPOCHREALTIME
echo "==> [4/4] checks per wheel: tags, abi3audit --strict, every ELF file's architecture and glibc <= $GLIBC"
shopt -s nullglob
wheels=(wheelhouse/*.whl)
((${#wheels[@]} == ${#ARCHS[@]})) || fail "expected ${#ARCHS[@]} wheels in wheelhouse/ (${ARCHS[*]}), found ${#wheels[*]}"
for arch in "${ARCHS[@]}"; do
    plat=manylinux_${GLIBC/./_}_$arch   # auditwheel also writes its legacy alias, manylinux2014
    matching=(wheelhouse/*-cp39-abi3-*"$plat".whl)
    ((${#matching[@]} == 1)) || fail "no wheel in wheelhouse/ tagged cp39-abi3 and $plat: ${wheels[*]}"
    wheel=${matching[0]}
    unpacked=$work/unpacked-$arch
    # --strict: any symbol outside the limited API, or one newer than 3.9's, is an error.
    "$TOOLS/bin/abi3audit" --strict --report "$wheel" >"$work/abi3-$arch.json"
    "$TOOLS/bin/python" - "$wheel" "$unpacked" "$work/abi3-$arch.json" <<'EOF'
"""The helper and the extension are in the wheel, executable; abi3audit saw the extension."""
import json, stat, sys, zipfile
wheel, dest, report = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
    archive.extractall(dest)
for name in ("skyrl_fdlog/_fdlog.abi3.so", "skyrl_fdlog/skyrl-fdlog-helper", "skyrl_fdlog/py.typed"):
    assert name in modes, f"{name} is missing from {wheel}"
assert modes["skyrl_fdlog/skyrl-fdlog-helper"] & stat.S_IXUSR, "the helper lost its executable bit"
spec = next(iter(json.load(open(report))["specs"].values()))
results = [so["result"] for so in spec["wheel"]]
assert [so["name"] for so in spec["wheel"]] == ["_fdlog.abi3.so"], spec
assert all(r["is_abi3"] and r["is_abi3_baseline_compatible"] and r["baseline"] == "3.9" for r in results), results
for so, r in zip(spec["wheel"], results):
    print(f"    abi3audit --strict: {so['name']} is abi3, baseline {r['baseline']}, needs {r['computed']};"
          f" {len(r['non_abi3_symbols'])} non-abi3 symbols")
EOF
    elf_files=0
    while IFS= read -r -d '' file; do
        [[ $(head -c 4 "$file" | od -An -c | tr -d ' ') == 177ELF ]] || continue
        elf_files=$((elf_files + 1))
        # readelf, not objdump: this machine's objdump reads only its own architecture.
        machine=$(readelf -h "$file" | sed -n 's/^ *Machine: *//p')
        [[ $machine == "${ELF_MACHINE[$arch]}" ]] || fail "$file is for $machine, not $arch"
        newest=$(readelf --dyn-syms -W "$file" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
        needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
        echo "    $arch ${file#"$unpacked/"}: newest glibc symbol GLIBC_$newest; needs $needed"
        [[ $(printf '%s\n' "$newest" "$GLIBC" | sort -V | tail -1) == "$GLIBC" ]] ||
            fail "$file needs GLIBC_$newest, newer than $GLIBC"
        if readelf -d "$file" | grep -E '\((RUNPATH|RPATH)\)'; then fail "$file carries a RUNPATH"; fi
    done < <(find "$unpacked" -type f -print0)
    ((elf_files == 2)) || fail "$arch: expected 2 ELF files (extension and helper), found $elf_files"
    echo "==> $arch wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
done
took "$step" "checks"

echo "==> sdist: $(echo dist/skyrl_fdlog-*.tar.gz)"
took "$begin" "scripts/build_wheel.sh in all"
