"""cffi build script (out-of-line API mode, limited API so one wheel serves CPython 3.9+).

The cdef is csrc/fdlog.h itself with its preprocessor lines removed, so the
header and the binding can never disagree.
"""

import runpy
from pathlib import Path

import cffi

# csrc/ is laid out by binary: shared/ is compiled into both, extension/ only into the cffi
# extension (skyrl_fdlog._fdlog), helper/ only into the skyrl-fdlog-helper program. fdlog.h, at
# the top, is the extension's public interface; shared/internal.h is what both binaries share.
CSRC = Path("csrc")
SHARED_SOURCES = ["shared/open_log.c", "shared/assemble.c", "shared/record.c", "shared/levels.c"]
EXTENSION_SOURCES = [*SHARED_SOURCES, "extension/capture.c", "extension/helper_start.c", "extension/crash.c"]
HELPER_SOURCES = [*SHARED_SOURCES, "helper/helper.c", "helper/log_writer.c"]
INCLUDE_DIRS = [str(CSRC), str(CSRC / "shared")]
COMPILE_ARGS = ["-std=gnu11", "-O2", "-fvisibility=hidden"]


def header_declarations() -> str:
    """fdlog.h without the lines cffi's parser cannot read (#include, #ifndef, ...)."""
    header = (Path(__file__).resolve().parent.parent / CSRC / "fdlog.h").read_text()
    return "\n".join(line for line in header.splitlines() if not line.lstrip().startswith("#"))


def write_levels_header() -> Path:
    """Generate csrc/shared/levels.h from skyrl_fdlog/levels.json (the one level table, which the
    reader reads itself); rewritten only when it changes, so builds stay incremental."""
    root = Path(__file__).resolve().parent.parent
    levels = runpy.run_path(str(root / "skyrl_fdlog" / "_levels.py"))  # the package may not import yet
    header = root / CSRC / "shared" / "levels.h"
    text = levels["c_header"]()
    if not header.exists() or header.read_text() != text:
        header.write_text(text)
    return header


# Every build reads this file first (setup.py, the tests' compiles): the header is fresh.
write_levels_header()

ffibuilder = cffi.FFI()
ffibuilder.cdef(header_declarations())
ffibuilder.set_source(
    "skyrl_fdlog._fdlog",
    '#include "fdlog.h"',
    sources=[str(CSRC / name) for name in EXTENSION_SOURCES],
    include_dirs=INCLUDE_DIRS,
    # build_ext recompiles only when a source or one of these is newer than the extension:
    # the headers too, the generated levels.h included.
    depends=[str(header) for header in sorted(CSRC.rglob("*.h"))],
    extra_compile_args=COMPILE_ARGS,
    py_limited_api=True,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
