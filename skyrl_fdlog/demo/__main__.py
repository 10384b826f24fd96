"""`python -m skyrl_fdlog.demo [overrides...]`."""

import sys

from skyrl_fdlog.demo import main

# A process started with multiprocessing's spawn method re-imports the main module; the guard
# keeps such an import from running the demo again.
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
