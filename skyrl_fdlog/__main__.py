"""``python -m skyrl_fdlog``: the same as the ``skyrl-fdlog`` console script."""

from skyrl_fdlog.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
