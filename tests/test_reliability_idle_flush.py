"""The idle flush under load: a partial line is written out as a `+` fragment only once its
writer has been quiet for idle_flush, not while the rest of the line still waits unread in
the channel behind other writers' bytes (the helper reads at most 64 chunks per channel in a
round, then runs its idle tick)."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_python
from records import lines_by_writer, parse

pytestmark = pytest.mark.slow


def test_a_line_whose_rest_waits_unread_is_not_split_by_the_idle_flush(tmp_path: os.PathLike) -> None:
    """The actor writes half a line, the helper reads it and is then held up (SIGSTOP) while
    150 children write a line each and the actor writes the rest of its line, 0.5 s after
    the first half (idle_flush is 1 s).  The helper stays stopped past idle_flush, so when it
    goes on, its first round reads 64 of the children's chunks and its idle tick finds the
    half line older than idle_flush, with the rest still unread.  The line must be one
    record: the writer was never quiet for idle_flush."""
    log = tmp_path / "idle.log"
    result = run_python(
        f"""
        import json, os, signal, time, skyrl_fdlog
        helper = skyrl_fdlog.redirect({str(log)!r}, idle_flush=1.0).helper_pid
        os.write(1, b"first half, ")
        time.sleep(0.1)  # the helper reads it
        os.kill(helper, signal.SIGSTOP)
        started = time.monotonic()
        for i in range(150):
            child = os.fork()
            if child == 0:
                os.write(1, b"filler %d\\n" % i)
                os._exit(0)
            os.waitpid(child, 0)
        time.sleep(max(0.0, 0.4 - (time.monotonic() - started)))
        gap = time.monotonic() - started + 0.1
        os.write(1, b"second half\\n")
        time.sleep(1.5)  # past idle_flush while the helper is stopped
        os.kill(helper, signal.SIGCONT)
        skyrl_fdlog.restore()
        print(json.dumps({{"pid": os.getpid(), "gap": gap}}))
        """
    )
    told = json.loads(result.stdout)
    assert told["gap"] < 1.0, f"the two halves were {told['gap']:.2f} s apart: the machine is too slow"
    records, bad = parse(log.read_bytes())
    assert bad == []
    actor = [(r.mark, r.payload) for r in records if r.pid == told["pid"] and r.stream == "out"]
    assert actor == [(":", b"first half, second half")]
    fillers = sorted(
        line
        for (pid, stream), lines in lines_by_writer(records).items()
        if stream == "out" and pid != told["pid"]
        for line, _ in lines
    )
    assert fillers == sorted(b"filler %d" % i for i in range(150))
