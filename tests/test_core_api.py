"""redirect(), restore(), infra_log_path() and the environment variables, each in a child process."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from conftest import refusal, run_python, wait_for
from records import lines_by_writer, parse


def log_lines(path: Path) -> list[bytes]:
    records, bad = parse(path.read_bytes())
    assert bad == []
    return [text for lines in lines_by_writer(records).values() for text, _ in lines]


def test_redirect_sends_fds_1_and_2_of_process_and_children_to_the_log(log_file):
    """print, os.write on fd 2, C-level output of a child process: all in the log, none on the
    original stdout/stderr; stream names say out or err."""
    result = run_python(f"""
        import os, subprocess, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r}, name="Engine")
        print("to stdout")
        os.write(2, b"to stderr\\n")
        subprocess.run(["sh", "-c", "echo from child; echo child err >&2"])
        skyrl_fdlog.restore()
    """)
    assert result.stdout == b"" and result.stderr == b""
    records, bad = parse(log_file.read_bytes())
    assert bad == []
    got = {(r.stream, r.payload) for r in records}
    assert got == {
        ("out", b"to stdout"),
        ("err", b"to stderr"),
        ("out", b"from child"),
        ("err", b"child err"),
    }
    assert {r.name for r in records} == {"Engine"}
    assert len({r.pid for r in records}) == 2


def test_log_file_variable_and_no_configuration(tmp_path):
    """With no path, SKYRL_LOG_FILE is used; with neither, redirect() returns None and leaves
    stdout alone."""
    target = tmp_path / "from-env.log"
    run_python(
        """
        import skyrl_fdlog
        assert skyrl_fdlog.redirect() is not None
        print("via env")
        skyrl_fdlog.restore()
    """,
        env={"SKYRL_LOG_FILE": str(target)},
    )
    assert log_lines(target) == [b"via env"]
    env = {k: v for k, v in os.environ.items() if k != "SKYRL_LOG_FILE"}
    result = run_python(
        """
        import skyrl_fdlog
        assert skyrl_fdlog.redirect() is None
        print("still on stdout")
    """,
        env={**env, "SKYRL_LOG_FILE": ""},
    )
    assert result.stdout == b"still on stdout\n"


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_dump_mode_redirects_nothing_and_writes_no_file(tmp_path, value):
    """SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1/true/yes: redirect() returns None, output stays on
    stdout, no file or directory is created."""
    target = tmp_path / "dir" / "never.log"
    result = run_python(
        f"""
        import skyrl_fdlog
        assert skyrl_fdlog.redirect({str(target)!r}) is None
        print("on stdout")
    """,
        env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": value},
    )
    assert result.stdout == b"on stdout\n"
    assert not target.parent.exists()


def test_infra_log_path_names_and_never_reuses(tmp_path):
    """infra_log_path creates the directory and a new empty infra-YYMMDD_HHMMSS.log; calls in the
    same second get distinct names that still start with infra- and end with .log."""
    import skyrl_fdlog

    paths = [skyrl_fdlog.infra_log_path(tmp_path / "a" / "b") for _ in range(5)]
    assert len(set(paths)) == 5
    for path in paths:
        assert re.fullmatch(r"infra-\d{6}_\d{6}(-\d+)?\.log", path.name), path.name
        assert path.exists() and path.stat().st_size == 0
    assert paths[0].parent == (tmp_path / "a" / "b")


def test_created_modes(tmp_path):
    """Directories are created 0750 and files 0640, each further masked by the umask."""
    import skyrl_fdlog

    old = os.umask(0o022)
    try:
        path = skyrl_fdlog.infra_log_path(tmp_path / "new" / "deeper")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o750
    os.umask(0o077)
    try:
        strict = skyrl_fdlog.infra_log_path(tmp_path / "strict")
    finally:
        os.umask(old)
    assert stat.S_IMODE(strict.stat().st_mode) == 0o600
    assert stat.S_IMODE(strict.parent.stat().st_mode) == 0o700


def test_chosen_modes_by_argument_and_variable_and_bad_ones_refused(tmp_path):
    """A shared filesystem written under several uids needs group write: mode= or
    SKYRL_FDLOG_MODE chooses the file's mode, directories get it plus search permission."""
    result = run_python(
        f"""
        import os, stat, skyrl_fdlog
        os.umask(0o002)
        r = skyrl_fdlog.redirect({str(tmp_path / "arg" / "infra.log")!r}, mode=0o664)
        skyrl_fdlog.restore()
        made = skyrl_fdlog.infra_log_path({str(tmp_path / "env")!r})
        for bad in (0o1777, 0o444, "0664"):
            try:
                skyrl_fdlog.redirect({str(tmp_path / "bad.log")!r}, mode=bad)
            except ValueError as error:
                print(error)
    """,
        env={"SKYRL_FDLOG_MODE": "0644"},
    )
    assert stat.S_IMODE((tmp_path / "arg" / "infra.log").stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "arg").stat().st_mode) == 0o775
    (made,) = (tmp_path / "env").iterdir()
    assert stat.S_IMODE(made.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "env").stat().st_mode) == 0o755
    refusals = result.stdout.decode().splitlines()
    assert [line.split("got ")[-1] for line in refusals] == ["0o1777", "0o444", "'0664'"]
    assert not (tmp_path / "bad.log").exists()
    bad_variable = run_python(
        f"""
        import skyrl_fdlog
        try:
            skyrl_fdlog.redirect({str(tmp_path / "bad.log")!r})
        except ValueError as error:
            print(error)
    """,
        env={"SKYRL_FDLOG_MODE": "rw-r--r--"},
    )
    assert "SKYRL_FDLOG_MODE" in bad_variable.stdout.decode()
    assert "'rw-r--r--'" in bad_variable.stdout.decode()


def test_a_file_made_after_logrotate_keeps_the_chosen_mode(tmp_path):
    """The helper's reopen after a rename gives the new file the mode of the one it replaces."""
    log = tmp_path / "infra.log"
    run_python(f"""
        import os, time, skyrl_fdlog
        os.umask(0o002)
        skyrl_fdlog.redirect({str(log)!r}, mode=0o664)
        print("before", flush=True)
        os.rename({str(log)!r}, {str(log) + ".1"!r})
        deadline = time.monotonic() + 20
        while not os.path.exists({str(log)!r}) and time.monotonic() < deadline:
            print("waiting", flush=True)
            time.sleep(0.2)
        skyrl_fdlog.restore()
    """)
    assert stat.S_IMODE(log.stat().st_mode) == 0o664


def test_refuses_a_planted_symlink(tmp_path):
    """A symlink at the log path is refused, naming it; its target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "infra.log").symlink_to(victim)
    message = refusal(tmp_path / "logs" / "infra.log")
    assert "symbolic link" in message and str(tmp_path / "logs" / "infra.log") in message
    assert victim.read_text() == "precious\n"


def test_refuses_a_hard_link(tmp_path):
    """A log path with other hard links (someone else's file) is refused and left unchanged."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "infra.log")
    message = refusal(tmp_path / "infra.log")
    assert "hard links" in message
    assert victim.read_text() == "precious\n"


def test_refuses_a_parent_that_is_not_a_directory(tmp_path):
    """A file where a directory should be is named in the error, with what to do."""
    (tmp_path / "file").write_text("")
    message = refusal(tmp_path / "file" / "sub" / "infra.log")
    assert f"{tmp_path / 'file'} exists and is not a directory" in message
    assert "trainer.log_path" in message


def test_refuses_a_directory_owned_by_another_user_in_a_sticky_directory(tmp_path):
    """Inside a sticky world-writable directory (like /tmp), a directory owned by another user
    is refused, naming it and its owner."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    planted = sticky / "skyrl-logs"
    planted.mkdir()
    os.chown(planted, 4242, 4242)
    message = refusal(planted / "infra.log")
    assert str(planted) in message and "uid 4242" in message and "directory you own" in message
    assert not (planted / "infra.log").exists()


def test_refuses_a_foreign_symlinked_directory_in_a_sticky_directory(tmp_path):
    """A symlink planted by another user in a sticky world-writable directory is not followed."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = sticky / "skyrl-logs"
    link.symlink_to(elsewhere)
    os.lchown(link, 4242, 4242)
    message = refusal(link / "infra.log")
    assert "symbolic link" in message
    assert list(elsewhere.iterdir()) == []


def test_bad_arguments_are_value_errors(log_file):
    """fmt and lock accept only their documented values, and the error says which."""
    import skyrl_fdlog

    with pytest.raises(ValueError, match="fmt must be one of 'prefixed', 'raw', got 'json'"):
        skyrl_fdlog.redirect(log_file, fmt="json")
    with pytest.raises(ValueError, match="lock must be one of"):
        skyrl_fdlog.redirect(log_file, lock="sometimes")


def test_restore_puts_fds_back_and_the_helper_exits(log_file):
    """After restore() output reaches the original stdout again, everything written before is
    in the log, and the helper process is gone."""
    result = run_python(f"""
        import os, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r})
        print("captured")
        skyrl_fdlog.restore()
        print("after restore", r.helper_pid)
        assert skyrl_fdlog.active() is None
    """)
    helper = int(result.stdout.split()[-1])
    assert result.stdout.startswith(b"after restore")
    assert log_lines(log_file) == [b"captured"]
    wait_for(lambda: not Path(f"/proc/{helper}").exists(), timeout=5)


def test_second_call_same_path_is_a_no_op_and_another_path_switches(tmp_path):
    """redirect() twice with one path returns the same redirection (same helper); a new path
    switches: later lines go to the new file only."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    run_python(f"""
        import skyrl_fdlog
        a = skyrl_fdlog.redirect({str(first)!r})
        b = skyrl_fdlog.redirect({str(first)!r})
        assert a is b
        print("one")
        c = skyrl_fdlog.redirect({str(second)!r})
        assert c.helper_pid != a.helper_pid and c.path.name == "second.log"
        print("two")
        skyrl_fdlog.restore()
    """)
    assert log_lines(first) == [b"one"]
    assert log_lines(second) == [b"two"]


def test_fork_after_redirect_attributes_the_child(log_file):
    """A child made by os.fork() after redirect() writes into the log under its own pid."""
    result = run_python(f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        pid = os.fork()
        if pid == 0:
            print("from forked child", os.getpid())
            os._exit(0)
        os.waitpid(pid, 0)
        skyrl_fdlog.restore()
        print(pid)
    """)
    child = int(result.stdout)
    records, _ = parse(log_file.read_bytes())
    # Python 3.12+ also warns on stderr that the process (the watchdog thread) is multi-threaded.
    out = [(r.pid, r.payload) for r in records if r.stream == "out"]
    assert out == [(child, f"from forked child {child}".encode())]


def test_carriage_return_redraws_collapse_and_crlf_is_normalised(log_file):
    """A tqdm-style bar redrawn 1,000 times with '\\r' leaves its first and final states, not a
    huge line; '\\r\\n' ends a line like '\\n'."""
    run_python(f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        for i in range(1001):
            os.write(2, f"\\rLoading weights: {{i / 10:5.1f}}%".encode())
        os.write(2, b"\\n")
        os.write(1, b"windows line\\r\\n")
        skyrl_fdlog.restore()
    """)
    records, _ = parse(log_file.read_bytes())
    err = [(r.mark, r.payload) for r in records if r.stream == "err"]
    assert err == [("~", b"Loading weights:   0.0%"), (":", b"Loading weights: 100.0%")]
    assert [(r.mark, r.payload) for r in records if r.stream == "out"] == [(":", b"windows line")]


def test_partial_line_is_flushed_when_idle_and_rejoins(log_file):
    """A line without its newline shows up as a '+' fragment after the idle time, and the rest
    that follows later rejoins it exactly."""
    run_python(f"""
        import os, time, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, idle_flush=0.2)
        os.write(1, b"waiting for ")
        time.sleep(1.0)
        with open({str(log_file)!r}, "rb") as f:
            assert b"out+ waiting for \\n" in f.read()
        os.write(1, b"the rest\\n")
        skyrl_fdlog.restore()
    """)
    assert log_lines(log_file) == [b"waiting for the rest"]


def test_long_lines_nul_and_invalid_utf8_round_trip(log_file):
    """Lines up to 1 MiB with NUL bytes and invalid UTF-8 are split into records of at most
    PIPE_BUF bytes and rejoin to exactly the bytes written."""
    run_python(f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r})
        for size in (0, 3839, 3840, 3841, 7680, 100_000, 1 << 20):
            os.write(1, bytes((i * 7 + size) % 256 for i in range(size)).replace(b"\\n", b"\\0")
                     .replace(b"\\r", b"\\xff") + b"\\n")
        skyrl_fdlog.restore()
    """)
    data = log_file.read_bytes()
    assert max(len(line) + 1 for line in data.split(b"\n")) <= 4096
    expected = [
        bytes((i * 7 + size) % 256 for i in range(size)).replace(b"\n", b"\0").replace(b"\r", b"\xff")
        for size in (0, 3839, 3840, 3841, 7680, 100_000, 1 << 20)
    ]
    assert log_lines(log_file) == expected


def test_raw_format_writes_payloads_only(log_file):
    """fmt='raw' writes the lines as they were, like SkyRL's plain file."""
    run_python(f"""
        import skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, fmt="raw")
        print("plain one")
        print("plain two")
        skyrl_fdlog.restore()
    """)
    assert log_file.read_bytes() == b"plain one\nplain two\n"


def test_helper_holds_no_fd_beyond_its_own(log_file):
    """The helper keeps only /dev/null on 0-2, the log, the two channels, its status pipe,
    the two pipes of the actor's Python output and the actor's original stderr (9, where it
    copies error lines; none with surface="off"): no descriptor of the actor leaks into it."""
    for surface, expected in (("error", list(range(10))), ("off", list(range(9)))):
        result = run_python(f"""
            import os, skyrl_fdlog
            leak = os.open("/dev/zero", os.O_RDONLY)
            os.set_inheritable(leak, True)
            stderr = os.readlink("/proc/self/fd/2")
            r = skyrl_fdlog.redirect({str(log_file)!r}, surface={surface!r})
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{{r.helper_pid}}/fd"))
            targets = {{fd: os.readlink(f"/proc/{{r.helper_pid}}/fd/{{fd}}") for fd in fds}}
            # its own: a pidfd of the actor, to see an OOM kill (helper.c, "The OOM killer")
            fds = [fd for fd in fds if fd < 10 or targets[fd] != "anon_inode:[pidfd]"]
            skyrl_fdlog.restore()
            print(fds, targets, targets.get(9) == stderr)
        """)
        fds = eval(result.stdout.decode().split("] ", 1)[0] + "]")
        assert fds == expected, result.stdout
        assert result.stdout.decode().split()[-1] == str(surface == "error")
        assert b"/dev/zero" not in result.stdout


def test_helper_is_not_a_child_and_leaves_no_zombie(log_file):
    """The helper is detached: its parent is not the actor, which has no child process left
    behind (so no zombie) while redirected."""
    result = run_python(f"""
        import os, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log_file)!r})
        stat = open(f"/proc/{{r.helper_pid}}/stat").read().rsplit(")", 1)[1].split()
        children = open(f"/proc/{{os.getpid()}}/task/{{os.getpid()}}/children").read().split()
        skyrl_fdlog.restore()
        print(os.getpid(), stat[1], len(children))
    """)
    actor, helper_parent, children = map(int, result.stdout.split())
    assert helper_parent != actor
    assert children == 0


def test_full_buffer_in_front_of_a_healthy_log_waits_instead_of_dropping(log_file):
    """With a tiny in-memory buffer (16 KiB) and 100,000 lines written as fast as possible, the
    helper makes the writer wait rather than drop: every line lands and no 'dropped' record."""
    run_python(f"""
        import os, skyrl_fdlog
        skyrl_fdlog.redirect({str(log_file)!r}, buffer_bytes=16 * 1024)
        data = b"".join(b"%06d %s\\n" % (i, b"y" * 100) for i in range(100_000))
        view = memoryview(data)
        while view:
            view = view[os.write(1, view[:1 << 20]):]
        skyrl_fdlog.restore(timeout=60)
    """)
    lines = log_lines(log_file)
    assert len(lines) == 100_000 and not any(b"dropped" in line for line in lines)
    assert lines == [b"%06d %s" % (i, b"y" * 100) for i in range(100_000)]


def test_bad_gather_setting_is_named(log_file):
    """A malformed SKYRL_FDLOG_GATHER_US is refused naming the variable and its value, and
    nothing is redirected."""
    result = run_python(
        f"""
        import skyrl_fdlog
        try:
            skyrl_fdlog.redirect({str(log_file)!r})
        except ValueError as error:
            print(error)
        print("still here")
    """,
        env={"SKYRL_FDLOG_GATHER_US": "fast"},
    )
    assert b"SKYRL_FDLOG_GATHER_US must be a whole number" in result.stdout
    assert b"'fast'" in result.stdout and result.stdout.endswith(b"still here\n")
