"""The assembler's test entry point (tests/c/assembler_entry.c), built for the tests only.

It is C that no user needs, so it is not in the shipped extension: this compiles it with the
shared C (csrc/shared/, the sources the helper's assembler is built from) into a shared
library of its own and binds it with cffi in ABI mode (dlopen), with tests/c/assembler_entry.h
as the cdef. ABI mode needs no Python headers and no setuptools, so the same build works for
the installed wheel's tests in bare venvs (scripts/test_wheel.sh) and, with CC set to a cross
compiler, for the aarch64 wheel's tests under QEMU.

CC (default `cc`) is the compiler, split like a shell word list.
"""

from __future__ import annotations

import os
import platform
import runpy
import shlex
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import cffi

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "tests" / "c" / "assembler_entry.c"
HEADER = ENTRY.with_suffix(".h")


class AssemblerEntry(NamedTuple):
    ffi: cffi.FFI
    lib: Any  # the dlopen'ed library: fdl_test_assemble


def build(directory: Path) -> AssemblerEntry:
    """Compile the entry point and the shared C into directory; return its cffi binding."""
    # Run, not imported: the tests may run against an installed wheel, which has no _build.py.
    # Running it also regenerates csrc/shared/levels.h, which the shared C includes.
    build_script = runpy.run_path(str(ROOT / "skyrl_fdlog" / "_build.py"), run_name="assembler_entry")
    csrc = ROOT / "csrc"
    library = directory / "libfdl_assembler_entry.so"
    compiler = shlex.split(os.environ.get("CC") or "cc")
    command = [
        *compiler,
        "-std=gnu11",
        "-O2",
        "-shared",
        "-fPIC",
        *(f"-I{ROOT / include}" for include in build_script["INCLUDE_DIRS"]),
        str(ENTRY),
        *(str(csrc / name) for name in build_script["SHARED_SOURCES"]),
        "-o",
        str(library),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"cannot build the assembler's test entry point with CC={shlex.join(compiler)}"
            f" (exit {result.returncode}): {result.stderr.strip()}\n"
            f"Set CC to a C compiler for {platform.machine()}; the command was "
            f"{shlex.join(command)}"
        )
    ffi = cffi.FFI()
    ffi.cdef("\n".join(line for line in HEADER.read_text().splitlines() if not line.lstrip().startswith("#")))
    return AssemblerEntry(ffi, ffi.dlopen(str(library)))
