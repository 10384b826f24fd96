"""The optional dependencies: a module that needs one names the extra that installs it.

Each check runs in a child process in which the dependency cannot be imported (a None entry in
sys.modules makes Python's import refuse it), as on a machine where the extra is not installed.
"""

from __future__ import annotations

from conftest import run_python


def test_config_without_hydra_names_the_demo_extra() -> None:
    result = run_python("""
        import sys
        sys.modules["hydra"] = None
        try:
            import skyrl_fdlog.config
        except ImportError as error:
            print(error.name)
            print(error)
        else:
            raise SystemExit("imported without Hydra")
    """)
    name, message = result.stdout.decode().split("\n", 1)
    assert name == "hydra"
    assert "skyrl_fdlog.config needs Hydra" in message
    assert "pip install 'skyrl-fdlog[demo]'" in message


def test_the_reader_and_the_capture_import_without_the_extras() -> None:
    run_python("""
        import sys
        for name in ("hydra", "omegaconf", "ray", "torch", "vllm", "transformers"):
            sys.modules[name] = None
        import skyrl_fdlog, skyrl_fdlog.reader, skyrl_fdlog.cli, skyrl_fdlog.skyrl
        skyrl_fdlog.redirect, skyrl_fdlog.FdlogError
    """)
