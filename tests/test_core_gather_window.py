"""The helper's gather window (csrc/helper/helper.c, "The gather window adapts"): after a
wakeup the helper lets output gather for up to SKYRL_FDLOG_GATHER_US before reading, but
never makes a lone line wait for it, nor a fast writer wait for room in a channel it fills.

A window of one second (the largest value accepted) makes each rule visible in wall time:
a wait of a whole window is unmistakable next to the milliseconds a read takes.
"""

from __future__ import annotations

import pytest

from conftest import run_python

pytestmark = pytest.mark.slow

ONE_SECOND = {"SKYRL_FDLOG_GATHER_US": "1000000"}


def test_a_line_after_a_quiet_spell_is_read_at_once_and_later_ones_gather(tmp_path):
    """The first two rounds after a quiet spell are read at once (a lone line, and the line
    the writer put right behind it on its other channel); a third line that follows within a
    window waits for the window, as set: one second is a valid setting (it once built a
    timespec of 1e9 ns, which nanosleep refuses, and nothing was gathered)."""
    log = tmp_path / "gather.log"
    result = run_python(
        f"""
        import os, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log)!r})
        def arrival(write, text):
            start = time.monotonic()
            write(text)
            while text.strip() not in open({str(log)!r}).read():
                time.sleep(0.005)
            return time.monotonic() - start
        time.sleep(0.2)
        first = arrival(print, "after a quiet spell")
        second = arrival(lambda text: os.write(1, text.encode()), "right behind it\\n")
        third = arrival(print, "a third")
        skyrl_fdlog.restore()
        print(first, second, third)
    """,
        env=ONE_SECOND,
    )
    first, second, third = map(float, result.stdout.split())
    print(f"\nMEASURED with a 1 s window: lines after {first:.3f} s, {second:.3f} s and {third:.3f} s")
    assert first < 0.5
    assert second < 0.5
    assert third >= 0.9


@pytest.mark.parametrize("how", ["print", "os.write"])
def test_a_writer_that_fills_its_channel_does_not_wait_a_window_per_fill(tmp_path, how):
    """A writer faster than the window: 8 MiB of lines through the actor's own pipe (print)
    or through the socket on fd 1 (os.write, one write per line).  Each window used to let
    the channel fill and the writer wait out the rest of it (a 512 KiB pipe: 16 windows of a
    second; a socket holds fewer lines than that); now a round that finds a channel near
    full halves the window and reads on at once."""
    log = tmp_path / "fill.log"
    write = "print(line)" if how == "print" else "os.write(1, (line + '\\n').encode())"
    result = run_python(
        f"""
        import os, sys, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log)!r})
        time.sleep(0.2)
        start = time.monotonic()
        for i in range(80_000):
            line = f"line {{i:06d}} " + "x" * 90
            {write}
        sys.stdout.flush()
        while b"line 079999 " not in open({str(log)!r}, "rb").read()[-4096:]:
            time.sleep(0.01)
        took = time.monotonic() - start
        skyrl_fdlog.restore()
        print(took)
    """,
        env=ONE_SECOND,
    )
    took = float(result.stdout)
    print(f"\nMEASURED 8 MiB by {how} with a 1 s window: all in the log after {took:.2f} s")
    assert took < 4.5
