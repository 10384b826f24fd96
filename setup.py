"""Builds the cffi extension and the skyrl-fdlog-helper executable beside it.

Metadata lives in pyproject.toml; this file holds only what needs code: the
helper executable (a program, not an extension, so setuptools has no field
for it) and the abi3 wheel tag.
"""

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Run the build script by path: importing the package would need the extension it builds.
BUILD = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "skyrl_fdlog", "_build.py"))

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70
    from wheel.bdist_wheel import bdist_wheel

HELPER_NAME = "skyrl-fdlog-helper"
# The C core needs Linux (SO_PASSCRED, pipe2, close_range). Elsewhere (macOS laptops that run
# SkyRL's unit tests) the package installs without it: the reader works, and
# skyrl_fdlog.skyrl falls back to a plain dup2. SKYRL_FDLOG_BUILD_CORE=0/1 overrides the
# platform's answer, which is how the tests simulate a machine without the core.
BUILD_CORE = os.environ.get("SKYRL_FDLOG_BUILD_CORE", "1" if sys.platform.startswith("linux") else "0") == "1"


class BuildExtAndHelper(build_ext):
    """build_ext that also links the helper program into the package directory."""

    def run(self) -> None:
        super().run()
        objects = self.compiler.compile(
            [str(BUILD["CSRC"] / name) for name in BUILD["HELPER_SOURCES"]],
            output_dir=self.build_temp,
            include_dirs=BUILD["INCLUDE_DIRS"],
            extra_postargs=BUILD["COMPILE_ARGS"],
        )
        in_source = self.inplace or getattr(self, "editable_mode", False)
        package_dir = "skyrl_fdlog" if in_source else os.path.join(self.build_lib, "skyrl_fdlog")
        self.compiler.link_executable(objects, HELPER_NAME, output_dir=package_dir, libraries=["pthread"])


class AbiThreeWheel(bdist_wheel):
    """Tag the wheel cp39-abi3: the extension uses only the limited API."""

    def finalize_options(self) -> None:
        self.py_limited_api = "cp39"
        super().finalize_options()


if BUILD_CORE:
    setup(
        cffi_modules=["skyrl_fdlog/_build.py:ffibuilder"],
        cmdclass={"build_ext": BuildExtAndHelper, "bdist_wheel": AbiThreeWheel},
    )
else:
    setup()  # pure Python: a py3-none-any wheel
