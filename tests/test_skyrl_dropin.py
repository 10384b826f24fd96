"""skyrl_fdlog.skyrl: SkyRL's redirect_actor_output_to_file() and initialize_ray's file, by name.

SkyRL's own five unit tests are run against this module outside the project (docs/skyrl.md says
how); these are the same five behaviours in this project's words, each in a child process, plus
what the switch adds (re-capture after a dup2 over the fds, the run file for initialize_ray).
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import run_python
from records import parse


def payloads(path: Path) -> list[bytes]:
    records, bad = parse(path.read_bytes())
    assert bad == []
    return [r.payload for r in records if r.stream != "fdlog"]


def test_dump_mode_redirects_nothing_and_creates_nothing(tmp_path):
    target = tmp_path / "logs" / "infra.log"
    result = run_python(
        """
        import os
        from skyrl_fdlog.skyrl import redirect_actor_output_to_file
        before = os.fstat(1).st_ino
        redirect_actor_output_to_file()
        assert os.fstat(1).st_ino == before
        os.write(1, b"on stdout\\n")
    """,
        env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "true", "SKYRL_LOG_FILE": str(target)},
    )
    assert result.stdout == b"on stdout\n"
    assert not target.parent.exists()


def test_without_a_log_file_nothing_changes():
    env = {key: value for key, value in os.environ.items() if key != "SKYRL_LOG_FILE"}
    result = run_python(
        """
        import os
        from skyrl_fdlog.skyrl import redirect_actor_output_to_file
        redirect_actor_output_to_file()
        os.write(1, b"on stdout\\n")
    """,
        env={**env, "SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "0"},
    )
    assert result.stdout == b"on stdout\n"


def test_fds_1_2_and_those_behind_sys_stdout_and_stderr_reach_the_file(tmp_path):
    """Under pytest's capture sys.stdout and sys.stderr sit on other fds than 1 and 2: SkyRL's
    dup2 redirects those, so the drop-in does too, besides 1 and 2 (directory made here)."""
    target = tmp_path / "node-local" / "infra.log"
    result = run_python(
        """
        import os, sys, tempfile, skyrl_fdlog
        from skyrl_fdlog.skyrl import redirect_actor_output_to_file
        spare_out, spare_err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        sys.stdout = open(spare_out.fileno(), "w", closefd=False)   # as pytest's capture does
        sys.stderr = open(spare_err.fileno(), "w", closefd=False)
        redirect_actor_output_to_file()
        for fd, text in ((1, b"fd 1"), (2, b"fd 2"), (sys.stdout.fileno(), b"behind stdout"),
                         (sys.stderr.fileno(), b"behind stderr")):
            os.write(fd, text + b"\\n")
        skyrl_fdlog.restore()
    """,
        env={"SKYRL_LOG_FILE": str(target)},
    )
    assert result.stdout == b"" and result.stderr == b""
    assert sorted(payloads(target)) == [b"behind stderr", b"behind stdout", b"fd 1", b"fd 2"]


def test_a_second_redirect_after_a_dup2_over_the_fds_appends_to_the_same_file(tmp_path):
    """The second actor of SkyRL's test: the fds are put back by a raw dup2, as another
    framework would, then redirected again; both lines land in the one file."""
    target = tmp_path / "infra.log"
    target.write_bytes(b"")  # the driver made it
    result = run_python(
        """
        import os, skyrl_fdlog
        from skyrl_fdlog.skyrl import redirect_actor_output_to_file
        saved_out, saved_err = os.dup(1), os.dup(2)
        redirect_actor_output_to_file()
        os.write(1, b"actor-1-output\\n")
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        redirect_actor_output_to_file()
        os.write(1, b"actor-2-output\\n")
        skyrl_fdlog.restore()
        os.write(1, b"back on stdout\\n")
    """,
        env={"SKYRL_LOG_FILE": str(target)},
    )
    assert result.stdout == b"back on stdout\n"
    assert payloads(target) == [b"actor-1-output", b"actor-2-output"]


def test_redirect_captures_again_when_something_was_dup2d_over_fds_1_and_2(log_file):
    """A redirection whose channels were replaced on fds 1 and 2 is not handed out again:
    before, the second redirect() returned it and "second" went to the original stdout."""
    result = run_python(f"""
        import os, skyrl_fdlog
        original = os.dup(1)
        first = skyrl_fdlog.redirect({str(log_file)!r})
        os.dup2(original, 1)
        second = skyrl_fdlog.redirect({str(log_file)!r})
        assert second is not first
        os.write(1, b"second\\n")
        assert skyrl_fdlog.redirect({str(log_file)!r}) is second  # in force: the same one
        skyrl_fdlog.restore()
    """)
    assert result.stdout == b""
    assert payloads(log_file) == [b"second"]


def test_prepare_run_log_names_a_new_file_per_run_and_per_kind(tmp_path):
    result = run_python(
        f"""
        import os
        from skyrl_fdlog.skyrl import prepare_run_log
        first, second = prepare_run_log({str(tmp_path)!r}), prepare_run_log({str(tmp_path)!r})
        router = prepare_run_log({str(tmp_path)!r}, prefix="router")
        assert os.environ["SKYRL_LOG_FILE"] == str(second)
        print(first.name, second.name, router.name)
        try:
            prepare_run_log({str(tmp_path)!r}, prefix="../x")
        except ValueError as error:
            print(error)
    """,
        env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "0"},
    )
    first, second, router, *refusal = result.stdout.decode().split(maxsplit=3)
    assert first != second and second.endswith("-2.log") and router.startswith("router-")
    assert "'../x'" in refusal[0]
    dump = run_python(
        f"""
        from skyrl_fdlog.skyrl import prepare_run_log
        assert prepare_run_log({str(tmp_path / "none")!r}) is None
    """,
        env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "yes"},
    )
    assert dump.returncode == 0 and not (tmp_path / "none").exists()


def test_get_actor_logs_tail_gives_only_that_actors_last_lines(tmp_path):
    """PR #1771's diagnostics read the last lines of the whole shared log; here only the failed
    actor's, from all its processes, attributed."""
    target = tmp_path / "infra.log"
    result = run_python(
        """
        import os, subprocess, skyrl_fdlog
        from skyrl_fdlog.skyrl import get_actor_logs_tail, redirect_actor_output_to_file
        skyrl_fdlog.redirect(name="policy_worker_0")
        print("policy is fine", flush=True)
        skyrl_fdlog.restore()
        skyrl_fdlog.redirect(name="VLLMServerActor_1")
        subprocess.run(["sh", "-c", "echo 'EngineCore: CUDA out of memory' >&2"])
        print("engine start failed", flush=True)
        skyrl_fdlog.restore()
        print(get_actor_logs_tail("VLLMServerActor*", 10))
    """,
        env={"SKYRL_LOG_FILE": str(target)},
    )
    # sorted: the actor's Python output and its child's fd 2 are not ordered between them
    # (docs/format.md, "Order")
    child, actor = sorted(result.stdout.decode().splitlines(), key=lambda line: "out:" in line)
    assert child.startswith("VLLMServerActor_1[") and child.endswith("] err: EngineCore: CUDA out of memory")
    assert actor.startswith("VLLMServerActor_1[") and actor.endswith("] out: engine start failed")
    assert child.split("]")[0] != actor.split("]")[0]  # the child's pid and the actor's
