"""Ray integration, for real: a three-node ray.cluster_utils.Cluster (three raylets on this
machine), drivers run as separate processes through tests/integration_driver.py, actors that
redirect with @redirected, and a gloo group of DistributedTorchWorker ranks.

What the drivers print is what a user would see on the terminal.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_for
from records import Record, parse

pytestmark = pytest.mark.timeout(300)

DRIVER = Path(__file__).with_name("integration_driver.py")
PROGRESS_LINE = "driver: step 1 | reward 0.5"
# Each Echo actor prints these three lines (see integration_driver.Echo.speak).
ECHO_LINES = ("{tag} python stdout", "{tag} raw stderr", "{tag} subprocess stdout")


@dataclass
class DriverRun:
    stdout: str
    stderr: str
    result: dict


@pytest.fixture(scope="module")
def cluster():
    """A head node and two worker nodes, each tagged with a custom resource to pin actors."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    cluster.add_node(num_cpus=1, resources={"node-a": 1})
    cluster.add_node(num_cpus=1, resources={"node-b": 1})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def start_driver(cluster, log_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, str(DRIVER), "--address", cluster.address,
               "--log-path", str(log_path), *args]
    full_env = {key: value for key, value in os.environ.items()
                if key not in ("SKYRL_LOG_FILE", "SKYRL_DUMP_INFRA_LOG_TO_STDOUT", "RAY_ADDRESS")}
    return subprocess.Popen(command, env={**full_env, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_driver(process: subprocess.Popen) -> DriverRun:
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, f"driver failed:\nstdout: {stdout[-3000:]}\nstderr: {stderr[-3000:]}"
    result_line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return DriverRun(stdout, stderr, json.loads(result_line[len("RESULT "):]))


def run_driver(cluster, log_path: Path, *args: str, env: dict | None = None) -> DriverRun:
    return finish_driver(start_driver(cluster, log_path, *args, env=env))


def records_of(log_file: Path) -> list[Record]:
    records, not_records = parse(log_file.read_bytes())
    assert not_records == [], f"lines that are not records: {not_records[:5]}"
    return records


def wait_for_lines(log_file: Path, lines: list[str]) -> list[Record]:
    """The file's records once every one of `lines` is a payload in it (actors write
    through their own helper processes, which may still be catching up)."""
    def all_there() -> list[Record] | None:
        records = records_of(log_file)
        payloads = {record.payload.decode(errors="replace") for record in records}
        return records if all(line in payloads for line in lines) else None

    return wait_for(all_there, timeout=30)


def echo_lines(tag: str) -> list[str]:
    return [line.format(tag=tag) for line in ECHO_LINES]


def assert_attributed(records: list[Record], tag: str, name: str, actor_pid: int, node: str) -> None:
    """Every line of `tag` is recorded under `name` and `node`: the actor's own lines with its
    pid, its subprocess's line with another pid."""
    by_payload = {record.payload.decode(errors="replace"): record for record in records}
    python_out, raw_err, child_out = (by_payload[line] for line in echo_lines(tag))
    for record in (python_out, raw_err, child_out):
        assert (record.name, record.node, record.mark) == (name, node, ":")
    assert (python_out.pid, python_out.stream) == (actor_pid, "out")
    assert (raw_err.pid, raw_err.stream) == (actor_pid, "err")
    assert child_out.pid != actor_pid and child_out.stream == "out"


def test_actor_output_lands_in_infra_log_and_progress_stays_on_terminal(cluster, tmp_path):
    """A driver started with init_ray() keeps its own progress line on stdout and says where
    the infra log is; redirected actors' Python prints, raw fd writes and subprocess output
    appear nowhere on the driver's stdout or stderr but in that file, under the Ray actor
    name (or the class name for an unnamed actor) and Ray's node IP; torch workers joined
    with gloo log there too; the caller's runtime_env variables reach the actors next to
    SKYRL_LOG_FILE; inside Ray's sys.stdout wrapper the actor's Python output has its own
    pipe."""
    log_path = tmp_path / "logs"
    run = run_driver(cluster, log_path, "--actor", "trainer-echo@head", "--unnamed-actor", "anon",
                     "--gloo-workers", "2")
    log_file = Path(run.result["log_file"])
    assert log_file.parent == log_path and log_file.name.startswith("infra-")
    assert f"Infrastructure logs will be written to: {log_file}" in run.stdout
    assert PROGRESS_LINE in run.stdout
    terminal = run.stdout + run.stderr
    for tag in ("trainer-echo", "anon"):
        for line in echo_lines(tag) + [f"{tag} init"]:
            assert line not in terminal
    assert "all_reduce gave" not in terminal

    gloo_lines = [f"gloo rank {rank}: all_reduce gave 3.0" for rank in (0, 1)]
    records = wait_for_lines(log_file, echo_lines("trainer-echo") + echo_lines("anon") + gloo_lines)
    reports = run.result["reports"]
    for tag, name in (("trainer-echo", "trainer-echo"), ("anon", "Echo")):
        report = reports[tag]
        assert report["log_file"] == str(log_file)
        assert report["caller_variable"] == "kept"
        assert report["stdout_kind"] == "PipedStream", "Python output should use its own pipe"
        assert_attributed(records, tag, name, report["pid"], report["node_ip"])
    assert run.result["reduced"] == [3.0, 3.0]
    gloo_names = {record.name for record in records if "all_reduce gave" in record.payload.decode()}
    assert gloo_names == {"gloo-0", "gloo-1"}


def test_dump_mode_writes_no_file_and_shows_actor_output_on_stdout(cluster, tmp_path):
    """With SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1, init_ray() creates no directory or file and
    exports no SKYRL_LOG_FILE, actors do not redirect, and their output reaches the driver's
    terminal through Ray's log_to_driver."""
    log_path = tmp_path / "logs"
    run = run_driver(cluster, log_path, "--actor", "dump-echo@head", "--linger", "3",
                     env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "1"})
    assert run.result["log_file"] is None and run.result["driver_log_file"] is None
    assert run.result["reports"]["dump-echo"]["log_file"] is None
    assert not log_path.exists()
    assert "Infrastructure logs will be written to" not in run.stdout
    terminal = run.stdout + run.stderr
    for line in echo_lines("dump-echo"):
        assert line in terminal


def test_two_runs_in_the_same_second_get_two_files(cluster, tmp_path):
    """Two drivers that call init_ray() with one log_path in the same second reserve two
    different files (infra-STAMP.log and infra-STAMP-2.log), and each run's actors write only
    into their own run's file."""
    log_path = tmp_path / "logs"
    # Both drivers sleep until the middle of the same second, then reserve their file.
    start_at = str(math.ceil(time.time()) + 8 + 0.5)
    first = start_driver(cluster, log_path, "--start-at", start_at, "--actor", "run-one@head")
    second = start_driver(cluster, log_path, "--start-at", start_at, "--actor", "run-two@node-a")
    runs = {"run-one": finish_driver(first), "run-two": finish_driver(second)}

    files = {tag: Path(run.result["log_file"]) for tag, run in runs.items()}
    assert files["run-one"] != files["run-two"]
    assert sorted(path.name for path in log_path.iterdir()) == sorted(
        path.name for path in files.values())
    stamps = {path.name.removesuffix(".log").removesuffix("-2") for path in files.values()}
    assert len(stamps) == 1, f"the runs did not start in one second: {files}"
    for tag, other in (("run-one", "run-two"), ("run-two", "run-one")):
        records = wait_for_lines(files[tag], echo_lines(tag))
        assert {record.name for record in records} == {tag}
        assert not any(other in record.payload.decode() for record in records)


def test_multi_node_shared_log_path_gives_one_file(cluster, tmp_path):
    """With log_path on storage that every node sees (here the same directory), actors on
    three different nodes all append to the run's one file, each line whole and under its
    own actor's name."""
    log_path = tmp_path / "shared"
    run = run_driver(cluster, log_path, "--actor", "echo-head@head", "--actor", "echo-a@node-a",
                     "--actor", "echo-b@node-b")
    reports = run.result["reports"]
    assert len({report["node_id"] for report in reports.values()}) == 3
    log_file = Path(run.result["log_file"])
    assert list(log_path.iterdir()) == [log_file]
    records = wait_for_lines(log_file, [line for tag in reports for line in echo_lines(tag)])
    for tag, report in reports.items():
        assert_attributed(records, tag, tag, report["pid"], report["node_ip"])


def test_multi_node_node_local_log_path_is_created_by_the_first_actor(cluster, tmp_path):
    """With a node-local log_path, a worker node has no log directory until its first actor
    starts: that actor creates the directory and the run's file (same name as on the driver's
    node) and logs into it. One machine cannot give each raylet its own /tmp, so the driver
    deletes the directory after init_ray() to put the worker node in that state."""
    log_path = tmp_path / "node-local"
    run = run_driver(cluster, log_path, "--remove-log-dir", "--actor", "echo-b@node-b")
    log_file = Path(run.result["log_file"])
    assert log_file.parent == log_path
    assert cluster.head_node.node_id != run.result["reports"]["echo-b"]["node_id"]
    records = wait_for_lines(log_file, echo_lines("echo-b"))
    assert {record.name for record in records} == {"echo-b"}
