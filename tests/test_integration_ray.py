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
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_python, wait_for
from records import Record, parse

pytestmark = [pytest.mark.timeout(300), pytest.mark.ray, pytest.mark.slow]

DRIVER = Path(__file__).with_name("integration_driver.py")
PROGRESS_LINE = "driver: step 1 | reward 0.5"
# Each Echo actor prints these three lines (see integration_driver.Echo.speak).
ECHO_LINES = ("{tag} python stdout", "{tag} raw stderr", "{tag} subprocess stdout")
# Names of the records a driver writes of Ray's own lines (skyrl_fdlog/_ray_logs.py).
RAY_OWN_NAMES = {"ray-driver", "raylet", "gcs", "autoscaler"}


@dataclass
class DriverRun:
    stdout: str
    stderr: str
    result: dict


@pytest.fixture(scope="module")
def cluster():
    """A head node and two worker nodes, each tagged with a custom resource to pin actors.

    node-b runs with SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1 in its environment, as a node whose
    `ray start` had the switch: init_ray's decision must still reach its actors (issue 19,
    case 4), which the tests pinning actors to node-b check."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    cluster.add_node(num_cpus=1, resources={"node-a": 1})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYRL_DUMP_INFRA_LOG_TO_STDOUT", "1")
        cluster.add_node(num_cpus=1, resources={"node-b": 1})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def start_driver(cluster, log_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, str(DRIVER), "--address", cluster.address, "--log-path", str(log_path), *args]
    full_env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SKYRL_LOG_FILE", "SKYRL_DUMP_INFRA_LOG_TO_STDOUT", "RAY_ADDRESS")
    }
    return subprocess.Popen(
        command, env={**full_env, **(env or {})}, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish_driver(process: subprocess.Popen) -> DriverRun:
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, f"driver failed:\nstdout: {stdout[-3000:]}\nstderr: {stderr[-3000:]}"
    result_line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return DriverRun(stdout, stderr, json.loads(result_line[len("RESULT ") :]))


def run_driver(cluster, log_path: Path, *args: str, env: dict | None = None) -> DriverRun:
    return finish_driver(start_driver(cluster, log_path, *args, env=env))


def run_script(code: str, **constants: object) -> DriverRun:
    """Run `code` as a driver process of its own, after lines setting each of `constants`
    (ADDRESS=cluster.address, say); it ends by printing `RESULT <json>`."""
    header = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    result = run_python(header + textwrap.dedent(code), timeout=180)
    stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    result_line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return DriverRun(stdout, stderr, json.loads(result_line[len("RESULT ") :]))


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
    run = run_driver(
        cluster, log_path, "--actor", "trainer-echo@head", "--unnamed-actor", "anon", "--gloo-workers", "2"
    )
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
        assert report["dump_variable"] == "0", "init_ray pins the dump switch it decided on"
        assert_attributed(records, tag, name, report["pid"], report["node_ip"])
    assert run.result["reduced"] == [3.0, 3.0]
    gloo_names = {record.name for record in records if "all_reduce gave" in record.payload.decode()}
    assert gloo_names == {"gloo-0", "gloo-1"}


@pytest.mark.parametrize("switch_in", ["driver environment", "runtime_env"])
def test_dump_mode_writes_no_file_and_shows_actor_output_on_stdout(cluster, tmp_path, switch_in):
    """With SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1 in the driver's environment or only in the
    env_vars of the runtime_env given to init_ray() (issue 19, case 4: the driver used to
    announce a file that stayed empty), init_ray() creates no directory or file, exports no
    SKYRL_LOG_FILE and returns None, actors get the switch and do not redirect, and their
    output reaches the driver's terminal through Ray's log_to_driver."""
    log_path = tmp_path / "logs"
    if switch_in == "runtime_env":
        extra, env = ["--env-var", "SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1"], None
    else:
        extra, env = [], {"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "1"}
    run = run_driver(cluster, log_path, "--actor", "dump-echo@head", "--linger", "3", *extra, env=env)
    assert run.result["log_file"] is None and run.result["driver_log_file"] is None
    report = run.result["reports"]["dump-echo"]
    assert (report["log_file"], report["dump_variable"]) == (None, "1")
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
    assert sorted(path.name for path in log_path.iterdir()) == sorted(path.name for path in files.values())
    stamps = {path.name.removesuffix(".log").removesuffix("-2") for path in files.values()}
    assert len(stamps) == 1, f"the runs did not start in one second: {files}"
    for tag, other in (("run-one", "run-two"), ("run-two", "run-one")):
        records = wait_for_lines(files[tag], echo_lines(tag))
        # Besides the actor's, the file has Ray's own lines on that run's driver.
        assert {record.name for record in records} - RAY_OWN_NAMES == {tag}
        assert not any(other in record.payload.decode() for record in records)


def test_multi_node_shared_log_path_gives_one_file(cluster, tmp_path):
    """With log_path on storage that every node sees (here the same directory), actors on
    three different nodes all append to the run's one file, each line whole and under its
    own actor's name."""
    log_path = tmp_path / "shared"
    run = run_driver(
        cluster, log_path, "--actor", "echo-head@head", "--actor", "echo-a@node-a", "--actor", "echo-b@node-b"
    )
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
    assert {record.name for record in records} - RAY_OWN_NAMES == {"echo-b"}


def test_plain_redirect_and_redirected_agree_on_the_node(cluster, tmp_path):
    """Inside Ray, an actor that calls redirect() by hand names its node by Ray's node IP, as
    @redirected does (issue 19, case 5: it used to write the hostname, so one machine showed
    up as two nodes)."""
    log_path = tmp_path / "logs"
    run = run_driver(cluster, log_path, "--actor", "decorated@node-a", "--plain-actor", "plain@node-a")
    log_file = Path(run.result["log_file"])
    reports = run.result["reports"]
    records = wait_for_lines(log_file, echo_lines("decorated") + echo_lines("plain"))
    for tag, report in reports.items():
        assert_attributed(records, tag, tag, report["pid"], report["node_ip"])


def test_redirected_classes_without_an_init_of_their_own(cluster, tmp_path):
    """@ray.remote over @redirected works on a class with no __init__ (issue 19, case 1: Ray's
    tracing followed __wrapped__ to object.__init__ and failed at class definition), on a
    subclass of a built-in (dict, keyword arguments reaching dict.__init__), and still on an
    async actor whose __init__ takes keywords: each logs under its class name."""
    log_path = tmp_path / "logs"
    run = run_script(
        """
        import asyncio, json, os, ray
        from skyrl_fdlog.ray import init_ray, redirected

        log_file = init_ray(LOG_PATH, address=ADDRESS)

        @ray.remote(num_cpus=0)
        @redirected
        class Bare:
            def speak(self):
                print("Bare speaks", flush=True)
                return os.getpid()

        @ray.remote(num_cpus=0)
        @redirected
        class Table(dict):
            def speak(self):
                print(f"Table speaks {dict(self)}", flush=True)
                return os.getpid()

        @ray.remote(num_cpus=0)
        @redirected
        class AsyncKeywords:
            def __init__(self, *, greeting):
                self.greeting = greeting

            async def speak(self):
                await asyncio.sleep(0)
                print(f"AsyncKeywords speaks {self.greeting}", flush=True)
                return os.getpid()

        actors = {"Bare": Bare.remote(), "Table": Table.remote(size=1),
                  "AsyncKeywords": AsyncKeywords.remote(greeting="hi")}
        pids = dict(zip(actors, ray.get([actor.speak.remote() for actor in actors.values()])))
        ray.shutdown()
        print("RESULT " + json.dumps({"log_file": str(log_file), "pids": pids}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
    )
    lines = {
        "Bare": "Bare speaks",
        "Table": "Table speaks {'size': 1}",
        "AsyncKeywords": "AsyncKeywords speaks hi",
    }
    records = wait_for_lines(Path(run.result["log_file"]), list(lines.values()))
    by_payload = {record.payload.decode(): record for record in records}
    for name, line in lines.items():
        assert (by_payload[line].name, by_payload[line].pid) == (name, run.result["pids"][name])
        assert line not in run.stdout + run.stderr


def test_a_plain_redirect_in_init_keeps_none_of_its_locals_alive(cluster, tmp_path):
    """redirect() called in an actor's __init__ watches that __init__ for an exception (last
    words), but once it has returned nothing of it is kept: a large object held only by a local
    of __init__ (a loaded checkpoint, a GPU tensor) is freed when __init__ returns."""
    log_path = tmp_path / "logs"
    run = run_script(
        """
        import gc, json, time, weakref, ray
        from skyrl_fdlog import redirect
        from skyrl_fdlog.ray import init_ray

        init_ray(LOG_PATH, address=ADDRESS)

        class Checkpoint:
            pass

        @ray.remote(num_cpus=0)
        class Engine:
            def __init__(self):
                redirect()
                checkpoint = Checkpoint()  # only this local holds it
                self.checkpoint = weakref.ref(checkpoint)

            def checkpoint_freed(self):
                deadline = time.monotonic() + 5
                while self.checkpoint() is not None and time.monotonic() < deadline:
                    gc.collect()
                    time.sleep(0.05)
                return self.checkpoint() is None

        freed = ray.get(Engine.remote().checkpoint_freed.remote())
        ray.shutdown()
        print("RESULT " + json.dumps({"freed": freed}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
    )
    assert run.result["freed"], run.stderr[-3000:]


def test_second_init_ray_keeps_the_file_in_force(cluster, tmp_path):
    """One run, one file (issue 19, case 2): while Ray is initialised, init_ray() with
    ignore_reinit_error=True returns the file in force and makes nothing (no second file, even
    under another log_path; SKYRL_LOG_FILE unchanged; no second announcement), and without it
    refuses with a RuntimeError that names the file and what to do."""
    log_path, other_path = tmp_path / "logs", tmp_path / "other"
    run = run_script(
        """
        import json, os, ray
        from skyrl_fdlog.ray import init_ray

        first = init_ray(LOG_PATH, address=ADDRESS)
        again = init_ray(OTHER_PATH, address=ADDRESS, ignore_reinit_error=True)
        try:
            init_ray(LOG_PATH, address=ADDRESS)
            refusal = None
        except RuntimeError as error:
            refusal = str(error)
        variable = os.environ["SKYRL_LOG_FILE"]
        ray.shutdown()
        print("RESULT " + json.dumps({"first": str(first), "again": str(again),
                                      "refusal": refusal, "variable": variable}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
        OTHER_PATH=str(other_path),
    )
    first = run.result["first"]
    assert run.result["again"] == run.result["variable"] == first
    assert [str(path) for path in log_path.iterdir()] == [first]
    assert not other_path.exists()
    assert run.stdout.count("Infrastructure logs will be written to") == 1
    refusal = run.result["refusal"]
    assert refusal is not None and first in refusal
    assert "ray.shutdown()" in refusal and "ignore_reinit_error=True" in refusal


def test_failed_ray_init_leaves_nothing_behind(cluster, tmp_path):
    """When ray.init() fails (issue 19, case 2; case 3's stray file was one), init_ray()
    removes the file it reserved and the directories it made for it, keeps a directory that
    was there before with what is in it, and leaves SKYRL_LOG_FILE as it was."""
    made_path, kept_path = tmp_path / "made" / "logs", tmp_path / "kept"
    kept_path.mkdir()
    (kept_path / "keep.txt").write_text("kept\n")
    run = run_script(
        """
        import json, os
        from skyrl_fdlog.ray import init_ray

        os.environ["SKYRL_LOG_FILE"] = "/previous/infra.log"
        errors = []
        # ray.init refuses num_cpus with an address, and log_to_drive is a typo
        attempts = ((MADE_PATH, {"num_cpus": 1}), (KEPT_PATH, {"log_to_drive": False}))
        for log_path, arguments in attempts:
            try:
                init_ray(log_path, address=ADDRESS, **arguments)
            except (ValueError, RuntimeError) as error:
                errors.append(f"{type(error).__name__}: {error}")
        print("RESULT " + json.dumps({"errors": errors, "variable": os.environ["SKYRL_LOG_FILE"]}))
    """,
        ADDRESS=cluster.address,
        MADE_PATH=str(made_path),
        KEPT_PATH=str(kept_path),
    )
    errors = run.result["errors"]
    assert len(errors) == 2 and "num_cpus" in errors[0] and "log_to_drive" in errors[1]
    assert run.result["variable"] == "/previous/infra.log"
    assert not (tmp_path / "made").exists()
    assert [path.name for path in kept_path.iterdir()] == ["keep.txt"]
    assert "Infrastructure logs will be written to" not in run.stdout


def test_log_to_driver_false_goes_to_ray_init(cluster, tmp_path):
    """init_ray(log_to_driver=False) passes the keyword to ray.init (issue 19, case 3: it
    raised TypeError and left a stray file): redirected actors still write the infra log and
    what an unredirected actor prints no longer reaches the driver's terminal."""
    log_path = tmp_path / "logs"
    run = run_script(
        """
        import json, time, ray
        from skyrl_fdlog.ray import init_ray, redirected

        log_file = init_ray(LOG_PATH, address=ADDRESS, log_to_driver=False)

        @ray.remote(num_cpus=0)
        @redirected
        class Redirected:
            def speak(self):
                print("redirected actor line", flush=True)

        @ray.remote(num_cpus=0)
        class Unredirected:
            def speak(self):
                print("unredirected actor line", flush=True)

        ray.get([Redirected.remote().speak.remote(), Unredirected.remote().speak.remote()])
        time.sleep(3)  # log_to_driver would forward the line meanwhile
        ray.shutdown()
        print("RESULT " + json.dumps({"log_file": str(log_file)}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
    )
    log_file = Path(run.result["log_file"])
    assert list(log_path.iterdir()) == [log_file]
    wait_for_lines(log_file, ["redirected actor line"])
    assert "unredirected actor line" not in run.stdout + run.stderr


def test_restarted_task_made_killed_and_detached_actors_keep_the_run_file(cluster, tmp_path):
    """What issue 19 found holding, kept: with a caller's working_dir and env_vars merged into
    init_ray's runtime_env, an actor restarted by max_restarts comes back to the same file
    under the same name; an actor created from a task logs there; a detached actor outlives
    its driver and logs into that driver's file when a later driver calls it; what an actor's
    child wrote until ray.kill of the actor is there in whole records (Ray ends the child and
    the helper with the actor)."""
    log_path, work_dir = tmp_path / "logs", tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "marker.txt").write_text("shipped\n")
    first = run_script(
        """
        import json, os, subprocess, time, ray
        from skyrl_fdlog.ray import init_ray, redirected

        log_file = init_ray(LOG_PATH, address=ADDRESS, namespace="held",
                            runtime_env={"working_dir": WORK_DIR, "env_vars": {"CALLER": "kept"}})

        @ray.remote(num_cpus=0, max_restarts=1)
        @redirected
        class Phoenix:
            def __init__(self):
                print(f"phoenix up in {os.getpid()}", flush=True)

            def die(self):
                os._exit(1)

            def where(self):
                return {"pid": os.getpid(), "log_file": os.environ.get("SKYRL_LOG_FILE"),
                        "caller": os.environ.get("CALLER"), "shipped": os.path.exists("marker.txt")}

        @ray.remote(num_cpus=0)
        @redirected
        class Speaker:
            def __init__(self, line):
                print(line, flush=True)

            def start_child(self, line):
                command = f"while true; do echo '{line}'; sleep 0.05; done"
                return subprocess.Popen(["sh", "-c", command]).pid

        @ray.remote(num_cpus=0)
        def make_actor():
            actor = Speaker.options(name="from-task").remote("made by a task")
            return ray.get(actor.start_child.remote("task child"))  # also waits for __init__

        phoenix = Phoenix.options(name="phoenix").remote()
        before = ray.get(phoenix.where.remote())
        try:
            ray.get(phoenix.die.remote())
        except ray.exceptions.RayActorError:
            pass
        for _ in range(100):  # calls fail until the restart is done
            try:
                after = ray.get(phoenix.where.remote())
                break
            except ray.exceptions.RayActorError:
                time.sleep(0.2)
        children = [ray.get(make_actor.remote())]
        doomed = Speaker.options(name="doomed").remote("doomed up")
        children.append(ray.get(doomed.start_child.remote("orphan child")))
        time.sleep(0.5)
        ray.kill(doomed)
        keeper = Speaker.options(name="keeper", lifetime="detached").remote("keeper up")
        ray.get(keeper.start_child.remote("keeper child"))
        ray.shutdown()
        print("RESULT " + json.dumps({"log_file": str(log_file), "before": before,
                                      "after": after, "children": children}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
        WORK_DIR=str(work_dir),
    )
    log_file = Path(first.result["log_file"])
    try:
        before, after = first.result["before"], first.result["after"]
        assert before["pid"] != after["pid"]
        for report in (before, after):
            assert report == {**report, "log_file": str(log_file), "caller": "kept", "shipped": True}
        records = wait_for_lines(
            log_file,
            [
                f"phoenix up in {before['pid']}",
                f"phoenix up in {after['pid']}",
                "made by a task",
                "doomed up",
                "keeper up",
            ],
        )
        assert {record.name for record in records if record.payload.startswith(b"phoenix up")} == {"phoenix"}
        # Ray ends the killed actor's children and helper with it; what they wrote is whole.
        assert any(record.payload == b"orphan child" for record in records)
        # The kill waits until the child has spoken: Ray ends an actor's children with it, and
        # a child ended before its first echo would leave nothing to find.
        later = run_script(
            """
            import time
            import ray
            ray.init(address=ADDRESS, namespace="held")
            keeper = ray.get_actor("keeper")
            ray.get(keeper.start_child.remote("called by a later driver"))
            deadline = time.monotonic() + 30
            while b"called by a later driver" not in open(LOG, "rb").read() and time.monotonic() < deadline:
                time.sleep(0.05)
            ray.kill(keeper)
            print("RESULT {}")
        """,
            ADDRESS=cluster.address,
            LOG=str(log_file),
        )
        assert "called by a later driver" not in later.stdout + later.stderr
        records = wait_for_lines(log_file, ["called by a later driver", "task child"])
        assert {record.name for record in records} - RAY_OWN_NAMES == {
            "phoenix",
            "from-task",
            "doomed",
            "keeper",
        }
    finally:
        for pid in first.result["children"]:  # unless Ray already ended them with their actor
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_a_failing_actors_cause_reaches_the_terminal_and_a_healthy_one_stays_quiet(cluster, tmp_path):
    """Issue 13, items 1 and 2: an engine on a second node whose child prints the cause and
    exits 1, after which __init__ raises.  The driver's terminal shows the child's cause line,
    attributed to the actor and the child's pid, and the infra log's path, through Ray's
    forwarding of the actor's original stderr (the log is the node's own file), then once the
    actor's last words, with the cause among them: for @redirected and for a plain redirect()
    in __init__.  A healthy actor's 100 INFO and WARNING lines leave nothing on the terminal,
    nor does its ray.kill."""
    log_path = tmp_path / "logs"
    run = run_script(
        """
        import json, subprocess, sys, time, ray
        from skyrl_fdlog.ray import init_ray, redirected

        log_file = init_ray(LOG_PATH, address=ADDRESS)

        @ray.remote(num_cpus=0, resources={"node-a": 0.01})
        @redirected
        class Engine:
            def __init__(self, fail):
                for i in range(50):
                    print(f"INFO 11-27 02:47:06 [loader.py:1] loaded error_shard_{i}.bin", flush=True)
                    print(f"WARNING 11-27 02:47:06 [config.py:1] casting {i}", flush=True)
                if fail:
                    subprocess.run([sys.executable, "-c", "import sys; "
                                    "print('EngineCore: CUDA out of memory. Tried to allocate 9 GiB',"
                                    " file=sys.stderr); sys.exit(1)"])
                    raise RuntimeError("Engine core initialization failed. See root cause above.")

            def ping(self):
                return 1

        @ray.remote(num_cpus=0, resources={"node-a": 0.01})
        class BareEngine:
            def __init__(self, fail):
                import skyrl_fdlog
                skyrl_fdlog.redirect()
                print("INFO loading the tokenizer", flush=True)
                if fail:
                    subprocess.run([sys.executable, "-c", "import sys; print('EngineCore: CUDA out "
                                    "of memory while loading the bare engine', file=sys.stderr); "
                                    "sys.exit(1)"])
                    raise RuntimeError("Engine core initialization failed. See root cause above.")

            def ping(self):
                return 1

        healthy = Engine.options(name="healthy-engine").remote(False)
        ray.get(healthy.ping.remote())
        ray.kill(healthy)
        healthy_bare = BareEngine.options(name="healthy-bare-engine").remote(False)
        ray.get(healthy_bare.ping.remote())
        healthy_bare.__ray_terminate__.remote()  # its atexit handlers run: an orderly end
        errors = []
        for failing in (Engine.options(name="vllm-engine-0").remote(True),
                        BareEngine.options(name="vllm-engine-1").remote(True)):
            try:
                ray.get(failing.ping.remote())
                errors.append(None)
            except Exception as exc:
                errors.append(type(exc).__name__)
        time.sleep(4)  # Ray's log monitor forwards worker output about every second
        print("RESULT " + json.dumps({"log_file": str(log_file), "errors": errors}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
    )
    terminal = run.stdout + run.stderr
    print(terminal)  # the closing note quotes what the user sees (pytest -s)
    log_file = run.result["log_file"]
    assert run.result["errors"] == ["ActorDiedError", "ActorDiedError"]
    lines = terminal.splitlines()
    for name, cause_text in (
        ("vllm-engine-0", "EngineCore: CUDA out of memory. Tried to allocate 9 GiB"),
        ("vllm-engine-1", "EngineCore: CUDA out of memory while loading the bare engine"),
    ):
        cause = [i for i, line in enumerate(lines) if f"{name}[" in line and cause_text in line]
        assert f"skyrl_fdlog: error lines of {name} follow; all its output is in {log_file}" in terminal
        words = [
            i
            for i, line in enumerate(lines)
            if f"skyrl_fdlog: {name}: process " in line
            and "ended: the actor's __init__ raised an exception" in line
        ]
        assert len(words) == 1, terminal[-5000:]
        assert lines[words[0]].endswith(f"(every line is in {log_file}):")
        # live, as an error line, then again among the last words
        assert len(cause) == 2 and cause[0] < words[0] < cause[1], terminal[-5000:]
    # INFO and WARNING lines reach the terminal only among the failed engine's last words
    infra = [line for line in lines if "loaded error_shard_" in line or "casting" in line]
    assert len(infra) <= 20 and all("vllm-engine-0[" in line for line in infra), infra
    assert "healthy-engine" not in terminal and "healthy-bare-engine" not in terminal
    records = records_of(Path(log_file))
    assert sum(b"casting" in record.payload for record in records) == 100


def test_an_actor_aborting_in_a_method_leaves_its_last_words_on_the_terminal(cluster, tmp_path):
    """Issue 13, item 2: a method whose child prints an NCCL-style line, after which the
    actor aborts (SIGABRT).  The driver's terminal shows, once, the actor's last lines with
    the child's line among them, and the infra log's path; an actor ended by ray.kill (an
    orderly end) prints nothing.  Likewise for a segfault in C code (ctypes reading address
    0)."""
    log_path = tmp_path / "logs"
    run = run_script(
        """
        import ctypes, json, os, subprocess, sys, time, ray
        from skyrl_fdlog.ray import init_ray, redirected

        log_file = init_ray(LOG_PATH, address=ADDRESS)

        @ray.remote(num_cpus=0, resources={"node-a": 0.01}, max_restarts=0)
        @redirected
        class Worker:
            def step(self, death):
                for i in range(5):
                    print(f"step {i} of {os.getpid()}", flush=True)
                subprocess.run([sys.executable, "-c", "print('comm 0x5 rank 3 nRanks 8 - "
                                "Abort COMPLETE, NCCL communicator was aborted')"])
                if death == "abort":
                    os.abort()
                if death == "segfault":
                    ctypes.string_at(0)
                return 1

        crashing = Worker.options(name="policy-worker-0").remote()
        quiet = Worker.options(name="ref-worker-0").remote()
        faulting = Worker.options(name="rollout-worker-0").remote()
        ray.get(quiet.step.remote(None))
        ray.kill(quiet)
        errors = []
        for actor, death in ((crashing, "abort"), (faulting, "segfault")):
            try:
                ray.get(actor.step.remote(death))
                errors.append(None)
            except Exception as exc:
                errors.append(type(exc).__name__)
        time.sleep(4)  # Ray's log monitor forwards worker output about every second
        print("RESULT " + json.dumps({"log_file": str(log_file), "errors": errors}))
    """,
        ADDRESS=cluster.address,
        LOG_PATH=str(log_path),
    )
    terminal = run.stdout + run.stderr
    print(terminal)  # the closing note quotes what the user sees (pytest -s)
    log_file = run.result["log_file"]
    assert run.result["errors"] == ["ActorDiedError", "ActorDiedError"]
    for name, signal_name in (("policy-worker-0", "Aborted"), ("rollout-worker-0", "Segmentation fault")):
        headers = [
            line
            for line in terminal.splitlines()
            if f"{name}: process " in line and "died of a fatal signal" in line
        ]
        assert len(headers) == 1 and log_file in headers[0], terminal[-4000:]
        for text in ("NCCL communicator was aborted", f"Fatal Python error: {signal_name}"):
            assert any(f"{name}[" in line and text in line for line in terminal.splitlines()), terminal[
                -4000:
            ]
    assert "ref-worker-0" not in terminal
