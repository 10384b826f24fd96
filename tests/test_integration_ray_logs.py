"""Ray's own lines (issue 15), for real: drivers run as their own processes
(tests/ray_logs_driver.py), their stdout and stderr are the terminal a user would see.

With init_ray() (or ray.init() and capture_ray_logs()), Ray's driver-side logging below ERROR
and the lines Ray forwards from its own processes ("(raylet) WARNING: N PYTHON worker processes
have been started") go into the infra log as records of ray-driver and raylet; failures (Ray's
"Unhandled error" ERROR) and the output of tasks that do not redirect still reach the
terminal; dump mode shows everything as before. Ray actors that a redirected actor starts
(vLLM's Ray executor's way) redirect under its name and their rank.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_python
from records import Record
from test_integration_ray import DriverRun, cluster, records_of, wait_for_lines  # noqa: F401

pytestmark = [pytest.mark.timeout(300), pytest.mark.ray, pytest.mark.slow]

DRIVER = Path(__file__).with_name("ray_logs_driver.py")
PROGRESS_LINE = "driver: step 1 | reward 0.5"
WORKERS_STARTED = "PYTHON worker processes have been started"
# A line of Ray's driver-side logging as Ray's handler prints it.
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(DEBUG|INFO|WARNING) ", re.M)
COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its prefixes


def run_driver(log_path: Path, *args: str, address: str | None = None, env: dict | None = None) -> DriverRun:
    import json

    command = [sys.executable, str(DRIVER), "--log-path", str(log_path), *args]
    if address:
        command += ["--address", address]
    full_env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SKYRL_LOG_FILE", "SKYRL_DUMP_INFRA_LOG_TO_STDOUT", "RAY_ADDRESS")
    }
    result = subprocess.run(
        command, env={**full_env, **(env or {})}, text=True, capture_output=True, timeout=240
    )
    assert result.returncode == 0, (
        f"driver failed:\nstdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
    )
    stdout, stderr = COLOUR.sub("", result.stdout), COLOUR.sub("", result.stderr)
    result_line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return DriverRun(stdout, stderr, json.loads(result_line[len("RESULT ") :]))


def lines_of(records: list[Record], name: str) -> list[str]:
    return [record.payload.decode(errors="replace") for record in records if record.name == name]


# The raylet's report of a worker that died stays on the terminal.
WORKER_DIED = "A worker died or was killed while executing a task"


def assert_no_ray_lines(terminal: str) -> None:
    ray_lines = [
        line
        for line in terminal.splitlines()
        if line.startswith(("(raylet", "(gcs")) and WORKER_DIED not in line
    ]
    assert ray_lines == [], terminal
    assert WORKERS_STARTED not in terminal
    assert not RAY_LOG_LINE.search(terminal), terminal


def test_issue_driver_shows_no_ray_line_and_its_log_has_them(tmp_path):
    """The issue's driver on a local Ray started by init_ray(): 24 redirected zero-CPU actors
    make the raylet warn that it started many Python workers. The terminal shows the driver's
    own lines, a task that does not redirect (with Ray's prefix, as ever) and Ray's ERROR for a
    failed task nobody waits on and the raylet's report of a worker that died, and no other
    (raylet) line and no Ray log line below ERROR; those
    are in the infra log as records of raylet and ray-driver, which `skyrl-fdlog cat` reads.
    Torch workers that a redirected actor starts as Ray actors of its own (as vLLM's Ray
    executor does) write into the log as engine-0-w0 and engine-0-w1, not on the terminal."""
    run = run_driver(
        tmp_path / "logs",
        "--actors",
        "24",
        "--plain-task",
        "--unhandled-error",
        "--dying-task",
        "--torch-workers",
        "2",
    )
    terminal = run.stdout + run.stderr
    assert_no_ray_lines(terminal)
    assert re.search(rf"^\(raylet\) {WORKER_DIED}", terminal, re.M), terminal
    assert PROGRESS_LINE in run.stdout
    assert re.search(r"\(plain_task pid=\d+\) plain task says hello", terminal)
    assert "Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1')" in terminal
    assert "failing task gave up" in terminal
    assert "torch rank" not in terminal and "launcher starts" not in terminal

    log_file = Path(run.result["log_file"])
    torch_lines = [f"torch rank {rank}: all_reduce gave 3.0" for rank in (0, 1)]
    records = wait_for_lines(log_file, torch_lines)
    assert any(WORKERS_STARTED in line for line in lines_of(records, "raylet")), sorted(
        {record.name for record in records}
    )
    driver_lines = lines_of(records, "ray-driver")
    assert any("Started a local Ray instance" in line for line in driver_lines), driver_lines
    assert not any("Unhandled error" in line for line in driver_lines)
    for rank, report in enumerate(run.result["torch"]):
        name = f"engine-0-w{rank}"
        assert report["started_by"] == name
        mine = [record for record in records if record.name == name]
        assert {record.pid for record in mine} == {report["pid"]}
        assert f"torch rank {rank}: all_reduce gave 3.0" in lines_of(mine, name)
        assert f"torch rank {rank} raw stderr" in lines_of(mine, name)
    assert lines_of(records, "engine-0") == ["launcher starts its workers"]

    shown = subprocess.run(
        [sys.executable, "-m", "skyrl_fdlog", "cat", "--color", "never", str(log_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"\braylet\[\d+\].*{WORKERS_STARTED}", shown.stdout), shown.stdout[-3000:]
    assert re.search(r"\bray-driver\[\d+\].*Started a local Ray instance", shown.stdout)


def test_dump_mode_still_shows_ray_lines(cluster, tmp_path):  # noqa: F811
    """In dump mode nothing is captured: the actors' lines and the raylet's warning reach the
    terminal as Ray prints them, and no file is made."""
    run = run_driver(
        tmp_path / "logs",
        "--actors",
        "24",
        "--pin",
        "head",
        address=cluster.address,
        env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "1"},
    )
    terminal = run.stdout + run.stderr
    assert run.result["log_file"] is None and not (tmp_path / "logs").exists()
    assert re.search(r"\(Quiet pid=\d+.*\) quiet actor \d+ ready", terminal)
    assert re.search(rf"\(raylet.*\) .*{WORKERS_STARTED}", terminal), terminal[-3000:]


def test_own_ray_init_with_capture_ray_logs(cluster, tmp_path):  # noqa: F811
    """A driver that calls ray.init() itself (as SkyRL's initialize_ray does), with
    WORKER_SETUP_HOOK in its runtime_env, and then capture_ray_logs() gets the same: the
    raylet's warning in the infra log, none of Ray's lines on the terminal after the call,
    and the torch workers a redirected actor starts in the log under its name and their rank."""
    log_file = tmp_path / "logs" / "infra-own.log"
    log_file.parent.mkdir()
    log_file.touch()
    run = run_driver(
        tmp_path / "logs",
        "--own-init",
        "--actors",
        "24",
        "--pin",
        "head",
        "--plain-task",
        "--torch-workers",
        "2",
        address=cluster.address,
        env={"SKYRL_LOG_FILE": str(log_file)},
    )
    assert run.result["log_file"] == str(log_file)
    # ray.init() itself logs before capture_ray_logs() can take over: only what follows counts.
    after_init = run.stderr.split("Connected to Ray cluster", 1)[-1]
    assert_no_ray_lines(run.stdout + after_init)
    assert "plain task says hello" in run.stdout
    assert "torch rank" not in run.stdout + run.stderr
    records = wait_for_lines(log_file, [f"torch rank {rank}: all_reduce gave 3.0" for rank in (0, 1)])
    assert any(WORKERS_STARTED in line for line in lines_of(records, "raylet"))
    for rank in (0, 1):
        assert f"torch rank {rank} raw stderr" in lines_of(records, f"engine-0-w{rank}")


def test_ray_without_the_hook_keeps_its_lines_and_says_so(cluster, tmp_path):  # noqa: F811
    """A Ray whose print_worker_logs takes other parameters (a later Ray, say) is left alone:
    one note in the infra log says that Ray's forwarded lines stay on the terminal, and the
    rest works (Ray's driver logging is captured, actors redirect)."""
    log_path = tmp_path / "logs"
    result = run_python(
        f"""
        import ray
        from ray._private import worker
        ray_print = worker.print_worker_logs
        def print_worker_logs(batch, sink, ignore_prefix=False):
            ray_print(batch, sink, ignore_prefix)
        worker.print_worker_logs = print_worker_logs

        from skyrl_fdlog.ray import init_ray
        print(init_ray({str(log_path)!r}, address={cluster.address!r}))
        ray.shutdown()
    """,
        timeout=180,
    )
    log_file = Path(result.stdout.decode().split()[-1])
    assert log_file.parent == log_path
    notes = [record for record in records_of(log_file) if record.stream == "fdlog"]
    assert len(notes) == 1 and notes[0].name == "ray-driver"
    assert (
        "has no ray._private.worker.print_worker_logs(data, print_file, ignore_prefix): "
        "the lines Ray forwards"
    ) in notes[0].payload.decode()
