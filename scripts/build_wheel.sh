#!/usr/bin/env bash
# Builds, without Docker, the one wheel that `pip install skyrl-fdlog` needs on x86_64 Linux,
# and the sdist it is built from:
#   wheelhouse/skyrl_fdlog-<version>-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#   dist/skyrl_fdlog-<version>.tar.gz
# zig compiles the cffi extension and the skyrl-fdlog-helper program against glibc 2.17's
# symbol versions; auditwheel and abi3audit then prove the tags. docs/packaging.md explains it.
#
# Environment: PYTHON       interpreter for the tools venv (default python3.11)
#              WHEEL_TOOLS  the tools venv (default build/wheel-tools; never .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}
TOOLS=${WHEEL_TOOLS:-$ROOT/build/wheel-tools}
ARCH=x86_64
PLAT=manylinux_2_17_$ARCH        # auditwheel also writes its legacy alias, manylinux2014
ZIG_TARGET=$ARCH-linux-gnu.2.17  # zig links against this glibc's symbol versions
GLIBC_MAX=2.17

took() { awk -v a="$1" -v b="$EPOCHREALTIME" -v what="$2" 'BEGIN { printf "==> %s: %.1f s\n", what, b - a }'; }
# This machine's pip configuration names local indexes that lack most packages; pip warns
# about each one it skips. Drop those lines, keep everything else (and pip's exit status).
quiet_pip() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }
fail() { echo "build_wheel.sh: $*" >&2; exit 1; }

begin=$EPOCHREALTIME
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step=$EPOCHREALTIME
echo "==> [1/4] build tools in $TOOLS: $(grep -v '^#' scripts/wheel/tools.txt | tr '\n' ' ')"
test -x "$TOOLS/bin/python" || "$PYTHON" -m venv "$TOOLS"
quiet_pip "$TOOLS/bin/python" -m pip install --quiet -r scripts/wheel/tools.txt
# The zig binary itself: `python -m ziglang` would find no ziglang inside the isolated build env.
ZIG=$("$TOOLS/bin/python" -c 'import pathlib, ziglang; print(pathlib.Path(ziglang.__file__).with_name("zig"))')
echo "    zig $("$ZIG" version), target $ZIG_TARGET"
took "$step" "build tools"

step=$EPOCHREALTIME
echo "==> [2/4] sdist, then the wheel from the sdist (isolated build, CC and LDSHARED = zig)"
export SKYRL_ZIG=$ZIG SKYRL_ZIG_TARGET=$ZIG_TARGET
export CC=$ROOT/scripts/wheel/zig-cc LDSHARED=$ROOT/scripts/wheel/zig-ldshared
export PIP_CONSTRAINT=$ROOT/scripts/wheel/build-constraints.txt
if ! "$TOOLS/bin/python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1; then
    grep -v "^WARNING: Location 'file:" "$work/build.log" | tail -60 >&2
    fail "the build failed (last lines above)"
fi
# The link lines in the log prove which compiler built what (no gcc line may sneak in).
grep -q "zig-ldshared .*_fdlog.abi3.so" "$work/build.log" || fail "the extension was not linked by zig"
grep -q "zig-cc .*-o [^ ]*skyrl-fdlog-helper" "$work/build.log" || fail "the helper was not linked by zig"
if grep -E "^(gcc|cc|x86_64-linux-gnu-gcc) " "$work/build.log"; then fail "the host compiler ran"; fi
echo "    $(grep -cE "zig-(cc|ldshared) " "$work/build.log") zig invocations; built $(cd "$work/dist" && echo *)"
took "$step" "sdist + wheel"

step=$EPOCHREALTIME
echo "==> [3/4] auditwheel repair --plat $PLAT --only-plat (retags; there is nothing to vendor)"
mkdir -p wheelhouse dist
rm -f wheelhouse/*.whl dist/skyrl_fdlog-*.tar.gz
cp "$work"/dist/*.tar.gz dist/
PATH=$TOOLS/bin:$PATH "$TOOLS/bin/auditwheel" show "$work"/dist/*.whl 2>&1 | sed 's/^/    /'
PATH=$TOOLS/bin:$PATH "$TOOLS/bin/auditwheel" repair --plat "$PLAT" --only-plat -w wheelhouse \
    "$work"/dist/*.whl 2>&1 | sed 's/^/    /'
took "$step" "auditwheel"

step=$EPOCHREALTIME
echo "==> [4/4] checks: one wheel, its tags, abi3audit --strict, glibc <= $GLIBC_MAX in every ELF file"
shopt -s nullglob
wheels=(wheelhouse/*.whl)
((${#wheels[@]} == 1)) || fail "expected exactly one wheel in wheelhouse/, found ${#wheels[*]}"
wheel=${wheels[0]}
[[ $wheel == *-cp39-abi3-*$PLAT.whl ]] || fail "$wheel is not tagged cp39-abi3 and $PLAT"
# --strict: any symbol outside the limited API, or one newer than 3.9's, is an error.
"$TOOLS/bin/abi3audit" --strict --report "$wheel" >"$work/abi3.json"
"$TOOLS/bin/python" - "$wheel" "$work/unpacked" "$work/abi3.json" <<'EOF'
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
    newest=$(objdump -T "$file" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
    needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    echo "    ${file#"$work/unpacked/"}: newest glibc symbol GLIBC_$newest; needs $needed"
    [[ $(printf '%s\n' "$newest" "$GLIBC_MAX" | sort -V | tail -1) == "$GLIBC_MAX" ]] ||
        fail "$file needs GLIBC_$newest, newer than $GLIBC_MAX"
    if readelf -d "$file" | grep -E '\((RUNPATH|RPATH)\)'; then fail "$file carries a RUNPATH"; fi
done < <(find "$work/unpacked" -type f -print0)
((elf_files == 2)) || fail "expected 2 ELF files (extension and helper), found $elf_files"
took "$step" "checks"

echo "==> wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
echo "==> sdist: $(echo dist/skyrl_fdlog-*.tar.gz)"
took "$begin" "scripts/build_wheel.sh in all"
