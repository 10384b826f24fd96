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


def seconds_to_log(log, write_loop: str, last: str, before: str = "", after: str = "") -> float:
    """In an actor with a 1 s window: `before` redirect(), `after` it, a quiet spell, then
    `write_loop` (one line of code each); the seconds from the loop's start until `last` is
    at the log's end."""
    result = run_python(
        f"""
        import os, socket, sys, time, skyrl_fdlog
        {before}
        skyrl_fdlog.redirect({str(log)!r})
        {after}
        time.sleep(0.2)
        start = time.monotonic()
        {write_loop}
        sys.stdout.flush()
        while {last.encode()!r} not in open({str(log)!r}, "rb").read()[-4096:]:
            time.sleep(0.01)
        took = time.monotonic() - start
        skyrl_fdlog.restore()
        print(took)
    """,
        env=ONE_SECOND,
    )
    return float(result.stdout)


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
    write = "print(line)" if how == "print" else "os.write(1, (line + '\\n').encode())"
    took = seconds_to_log(
        tmp_path / "fill.log",
        f'for i in range(80_000): line = f"line {{i:06d}} " + "x" * 90; {write}',
        "line 079999 ",
    )
    print(f"\nMEASURED 8 MiB by {how} with a 1 s window: all in the log after {took:.2f} s")
    assert took < 4.5


def test_short_lines_fill_a_default_socket_buffer_before_16_kib(tmp_path):
    """A socket's send buffer counts each write at its payload plus about 500 B, so a
    default one (net.core.wmem_max 212992: 416 KiB) holds about 800 writes: 8 KiB of lines
    of 10 B.  Counted in bytes alone (16 KiB), such a round never looked crowded, and the
    writer waited out every window: with a 1 s window, 10,000 lines took about one second
    per 800.  This machine's wmem_max is larger, so the writer asks for the default size.
    Writer and helper share one CPU (a loaded node), the writer at a lower priority: on two
    CPUs, or when the woken writer preempts the helper, the helper reads while the writer
    writes and its 64-read cap hides the stall."""
    took = seconds_to_log(
        tmp_path / "short.log",
        'for i in range(10_000): os.write(1, b"s%08d\\n" % i)',
        "s00009999",
        # the helper is started on this CPU too, so it cannot read while the writer writes
        before="os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})",
        # the helper (started at 0) reads a round out before the writer runs again
        after="out = socket.socket(fileno=os.dup(1)); "
        "out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 212992); os.nice(19)",
    )
    print(f"\nMEASURED 10,000 lines of 10 B through a default-sized socket, 1 s window: {took:.2f} s")
    assert took < 3.5


def test_the_window_grows_back_after_a_burst_has_shrunk_it(tmp_path):
    """A burst fills the socket and halves the window to its floor (50 µs).  Then a writer
    prints a line every millisecond: the window must grow back towards the setting (50 ms
    here), not stay at the floor.  It once stayed there: quiet was measured against the
    current window, so every 1 ms gap looked like a quiet spell, every line was read at once,
    one wakeup each.  Counted: the helper's voluntary context switches (one or two per
    round) over the 1,000 paced lines.  Writer and helper share one CPU, where a burst
    shrinks the window below the gap (on two the helper chases the burst instead)."""
    log = tmp_path / "grow.log"
    result = run_python(
        f"""
        import os, time, skyrl_fdlog
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # the helper too: no chase
        redirection = skyrl_fdlog.redirect({str(log)!r})
        def switches():
            with open(f"/proc/{{redirection.helper_pid}}/status") as status:
                return next(int(line.split()[1]) for line in status
                            if line.startswith("voluntary_ctxt_switches"))
        def wait_for(text):
            while text not in open({str(log)!r}, "rb").read()[-4096:]:
                time.sleep(0.01)
        time.sleep(0.2)
        for i in range(40_000):
            os.write(1, b"burst %06d %s\\n" % (i, b"x" * 80))
        wait_for(b"burst 039999")
        before = switches()
        for i in range(1000):
            print(f"paced {{i:04d}}")
            time.sleep(0.001)
        wait_for(b"paced 0999")
        after = switches()
        skyrl_fdlog.restore()
        print(after - before)
    """,
        env={"SKYRL_FDLOG_GATHER_US": "50000"},
    )
    switched = int(result.stdout)
    print(f"\nMEASURED the helper switched {switched} times over 1,000 lines a millisecond apart")
    assert switched < 400
