"""How failures reach the user: one FdlogError per C result naming path, cause and fix once,
the helper's own reason for not starting, SKYRL_FDLOG_DEBUG's copy of the helper's stderr, and
the one table of settings (the helper requires each; only Python has defaults)."""

from __future__ import annotations

import os
import re
import select
import signal
import stat
import subprocess
from pathlib import Path

from conftest import refusal, run_python
from skyrl_fdlog._redirect import helper_executable

ROOT = Path(__file__).resolve().parent.parent


def start_refused(tmp_path: Path, env: dict[str, str]) -> str:
    """redirect() in a child with env; the FdlogError's message (fds left as they were)."""
    result = run_python(
        f"""
        import skyrl_fdlog
        try:
            skyrl_fdlog.redirect({str(tmp_path / "infra.log")!r})
        except skyrl_fdlog.FdlogError as error:
            print(error)
            print(error.filename)
        else:
            raise SystemExit("no refusal")
    """,
        env=env,
        timeout=60,
    )
    return result.stdout.decode()


def script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


def test_a_planted_symlink_is_named_once_and_kept_as_filename(tmp_path):
    """str(error) used to append OSError's "[Errno 40] ...: 'PATH'" to a message that names the
    path already: the path three times in one line."""
    target = tmp_path / "elsewhere"
    target.write_text("")
    planted = tmp_path / "infra.log"
    planted.symlink_to(target)
    message = refusal(planted).strip()
    assert message.count(str(planted)) == 1, message
    assert message.startswith(f"cannot open the infra log {planted}: it is a symbolic link")
    assert "[Errno" not in message
    filename = (
        run_python(f"""
        import skyrl_fdlog
        try:
            skyrl_fdlog.redirect({str(planted)!r})
        except skyrl_fdlog.FdlogError as error:
            print(error.filename, error.errno)
    """)
        .stdout.decode()
        .split()
    )
    assert filename == [str(planted), "40"]


def test_the_reason_a_helper_gives_for_not_starting_is_in_the_error(tmp_path):
    """A helper that answers `ERROR <reason>` on its status pipe used to reach the user as
    "Protocol error"; the reason is what the user needs."""
    refusing = script(tmp_path / "refusing-helper", "echo 'ERROR the disk is on fire' >&6\n")
    message = start_refused(tmp_path, {"SKYRL_FDLOG_HELPER": str(refusing)})
    first = message.splitlines()[0]
    assert first.startswith(
        f"cannot start the log helper {refusing}: the disk is on fire; "
        f"reinstall skyrl_fdlog, or point SKYRL_FDLOG_HELPER at"
    ), first
    assert "Protocol error" not in message
    assert message.splitlines()[1] == str(refusing)


def test_the_real_helper_names_a_bad_argument(tmp_path):
    """The real helper given an argument it does not know says which one, and that reaches
    the user."""
    wrapper = script(tmp_path / "wrapper", f'exec {helper_executable()} "$@" colour=blue\n')
    message = start_refused(tmp_path, {"SKYRL_FDLOG_HELPER": str(wrapper)})
    assert "bad argument 'colour=blue' to skyrl-fdlog-helper" in message, message


def status_of_helper(*arguments: str) -> str:
    """Run the helper with arguments and fd 6 a pipe; the first line it says there.  A helper
    that starts (as one with defaults of its own did) is stopped again."""
    read, write = os.pipe()
    launcher = subprocess.Popen(
        [helper_executable(), *arguments],
        pass_fds=(6,),
        preexec_fn=lambda: os.dup2(write, 6),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read, "rb") as status:
        said = status.readline().decode() if select.select([status], [], [], 10)[0] else ""
    launcher.wait(timeout=30)
    if said.startswith("READY "):
        os.kill(int(said.split()[1]), signal.SIGKILL)
    return said


def test_the_helper_has_no_defaults_of_its_own():
    """Every setting of csrc/shared/settings.h must be given (the defaults are Python's alone);
    a missing one is named."""
    header = (ROOT / "csrc" / "shared" / "settings.h").read_text()
    rows = re.findall(r"^\s*X\([^,]+, (\w+), (TEXT|NUMBER)\)", header, re.MULTILINE)
    assert [name for name, _ in rows][:3] == ["path", "name", "node"], rows
    given = [f"{name}={'x' if kind == 'TEXT' else 0}" for name, kind in rows]
    for left_out in range(len(given)):
        said = status_of_helper(*given[:left_out], *given[left_out + 1 :])
        assert said == f"ERROR missing argument {rows[left_out][0]}= to skyrl-fdlog-helper\n", said
    assert status_of_helper(*given, "idle_ms=soon") == (
        "ERROR bad argument 'idle_ms=soon' to skyrl-fdlog-helper\n"
    )
    assert status_of_helper(*given, "raw=99999999999") == (
        "ERROR bad argument 'raw=99999999999' to skyrl-fdlog-helper\n"
    )


def test_every_setting_of_the_table_is_a_field_of_the_struct():
    """settings.h and fdlog.h's struct (written out for cffi) agree: helper_start.c asserts it
    at compile time; this says the same from the built extension."""
    from skyrl_fdlog._fdlog import ffi

    header = (ROOT / "csrc" / "shared" / "settings.h").read_text()
    rows = re.findall(r"^\s*X\(([^,]+), (\w+), (?:TEXT|NUMBER)\)", header, re.MULTILINE)
    fields = dict(ffi.typeof("struct fdl_helper_settings").fields)
    for kind, name in rows:
        assert name in fields, name
        assert fields[name].type.cname == kind.replace("const ", ""), (name, kind)


def test_debug_keeps_the_helpers_stderr_next_to_the_log(tmp_path):
    """SKYRL_FDLOG_DEBUG=1: what helpers write to stderr (else /dev/null) lands in
    LOG.helper-PID.stderr, 0600, appended across restarts; the log's note names it."""
    wrapper = script(
        tmp_path / "wrapper", f'echo "wrapper says hello" >&2\nexec {helper_executable()} "$@"\n'
    )
    log = tmp_path / "infra.log"
    result = run_python(
        f"""
        import os, signal, time, skyrl_fdlog
        r = skyrl_fdlog.redirect({str(log)!r})
        first = r.helper_pid
        os.kill(first, signal.SIGKILL)
        while r.helper_pid == first:
            time.sleep(0.05)
        skyrl_fdlog.restore()
        print(os.getpid())
    """,
        env={"SKYRL_FDLOG_HELPER": str(wrapper), "SKYRL_FDLOG_DEBUG": "1"},
    )
    pid = result.stdout.decode().split()[-1]
    kept = tmp_path / f"infra.log.helper-{pid}.stderr"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    said = kept.read_text()
    assert said.count("wrapper says hello") == 2, said  # the first helper and its restart
    assert said.count(": READY ") == 2 and ": EXIT eof" in said, said
    assert f"SKYRL_FDLOG_DEBUG=1: the log helper's stderr goes to {kept}".encode() in log.read_bytes()


def test_debug_never_follows_a_symlink(tmp_path):
    """The stderr file is opened with O_NOFOLLOW: a link planted there is refused, named once."""
    target = tmp_path / "target"
    log = tmp_path / "infra.log"
    result = run_python(
        f"""
        import os, skyrl_fdlog
        os.symlink({str(target)!r}, f"{log}.helper-{{os.getpid()}}.stderr")
        try:
            skyrl_fdlog.redirect({str(log)!r})
        except skyrl_fdlog.FdlogError as error:
            print(error)
    """,
        env={"SKYRL_FDLOG_DEBUG": "1"},
    )
    message = result.stdout.decode()
    assert re.fullmatch(
        rf"cannot keep the log helper's stderr in {log}\.helper-\d+\.stderr: it is "
        rf"a symbolic link; remove it, or unset SKYRL_FDLOG_DEBUG\n",
        message,
    ), message
    assert not target.exists()


def test_a_bad_debug_value_is_named(tmp_path):
    result = run_python(
        f"""
        import skyrl_fdlog
        try:
            skyrl_fdlog.redirect({str(tmp_path / "infra.log")!r})
        except ValueError as error:
            print(error)
    """,
        env={"SKYRL_FDLOG_DEBUG": "loud"},
    )
    assert result.stdout.decode() == (
        "SKYRL_FDLOG_DEBUG must be 1 or 0 (true/false, yes/no, "
        "on/off), got 'loud'; unset it for the default (0: the "
        "helper's stderr goes to /dev/null)\n"
    )


def test_only_the_settings_table_reads_skyrl_fdlog_variables():
    """Each SKYRL_FDLOG_* setting is read in skyrl_fdlog/_settings.py alone, so its default
    and its error live in one place."""
    readers = []
    for module in (ROOT / "skyrl_fdlog").glob("*.py"):
        if module.name != "_settings.py" and re.search(
            r"(environ\.get|getenv|environ\[)\(?\s*\"SKYRL_FDLOG_", module.read_text()
        ):
            readers.append(module.name)
    assert readers == []
