"""writer_program.py with a chosen lock mode, reporting its helper.

    python _fs_writer.py LOG INDEX LINES SEED

Runs tests/writer_program.py unchanged (an actor that redirects and a child that shares its
fds, both writing checksummed lines), except that redirect() gets lock=$FDLOG_TEST_LOCK and
the helper's pid and Redirection.locked are appended to $FDLOG_TEST_HELPERS as "PID LOCKED",
so a test can wait for every helper to finish writing before it reads the log.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import skyrl_fdlog  # noqa: E402
import writer_program  # noqa: E402

_real_redirect = skyrl_fdlog.redirect


def _redirect(*args, **kwargs):
    redirection = _real_redirect(*args, lock=os.environ.get("FDLOG_TEST_LOCK", "auto"), **kwargs)
    with open(os.environ["FDLOG_TEST_HELPERS"], "a") as report:
        report.write(f"{redirection.helper_pid} {int(redirection.locked)}\n")
    return redirection


skyrl_fdlog.redirect = _redirect

if __name__ == "__main__":
    writer_program.main()
