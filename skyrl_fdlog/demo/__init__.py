"""The demo run by `skyrl-fdlog demo` and `make demo`: see main.py."""

from skyrl_fdlog.demo.main import main

__all__ = ["main"]
