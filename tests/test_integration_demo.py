"""The demo end to end, for real: `skyrl-fdlog demo` starts local Ray, a vLLM engine actor
(with its EngineCore and worker processes) and two gloo policy workers on the tiny Llama.

What the demo process prints is what a user sees on the terminal; the infra log is checked
record by record against docs/format.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from records import Record, parse

# skyrl_fdlog.config and skyrl_fdlog.demo are imported in the tests: they need the demo extra,
# which `make test-fast` (requirements/core.txt) does not install, and it still collects this file.
pytestmark = [pytest.mark.timeout(300), pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]

STEPS = 3
DEMO = Path(sys.executable).with_name("skyrl-fdlog")
# Lines that only vLLM, its subprocesses and the workers print: never on the terminal.
INFRA_MARKERS = (
    "EngineCore",
    "Initializing a V1 LLM engine",
    "Loading safetensors",
    "KV cache",
    "Warning:",
    "Triton",
    "policy rank",
    "engine weights updated",
)
# A C++ warning from torch's c10 logging, e.g. "[W1127 03:04:13.734017973 utils.cpp:68] ...".
CPP_WARNING = re.compile(rb"^\[W\d{4} [\d:.]+ \w+\.cpp:\d+\]")
ENGINE_CORE_PREFIX = re.compile(rb"^\(EngineCore pid=(\d+)\)")
# A line of Ray's driver-side logging as Ray's handler prints it.
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(DEBUG|INFO|WARNING) ", re.M)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """One tiny Llama build shared by the demo runs of this module."""
    from skyrl_fdlog.demo.tiny_model import ensure_tiny_model

    cache = tmp_path_factory.mktemp("model-cache")
    ensure_tiny_model(cache)
    return cache


def run_demo(
    model_cache: Path, log_path: Path, *overrides: str, env: dict | None = None, returncode: int = 0
) -> subprocess.CompletedProcess:
    clean_env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SKYRL_LOG_FILE", "SKYRL_DUMP_INFRA_LOG_TO_STDOUT", "RAY_ADDRESS")
    }
    result = subprocess.run(
        [str(DEMO), "demo", f"trainer.log_path={log_path}", f"model.cache_dir={model_cache}", *overrides],
        env={**clean_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == returncode, (
        f"demo exited {result.returncode}:\nstdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
    )
    return result


def records_named(records: list[Record], name: str) -> list[Record]:
    return [record for record in records if record.name == name]


def test_demo_terminal_shows_progress_and_infra_log_holds_engine_and_workers(model_cache, tmp_path):
    """A normal demo run prints configuration, dataset loading, per-step metrics, a progress
    bar, the infra log's path and lines per actor, and none of the engine's or workers' own
    output. The infra log holds that output under the right actor: vLLM's EngineCore lines
    (with the EngineCore process's pid), model loading, KV cache set-up, a C++ warning from
    torch and tqdm redraws under vllm-engine-0; each policy worker's lines under its rank."""
    log_path = tmp_path / "logs"
    result = run_demo(model_cache, log_path, f"trainer.steps={STEPS}")
    out = result.stdout
    for expected in (
        "Configuration:",
        f"log_path: {log_path}",
        "Loading dataset:",
        f"step 1/{STEPS} | reward",
        f"step {STEPS}/{STEPS} | reward",
        "training: 100%|",
        f"Finished {STEPS} steps",
    ):
        assert expected in out
    terminal = result.stdout + result.stderr
    for marker in INFRA_MARKERS:
        assert marker not in terminal, f"infra output on the terminal: {marker!r}"
    # Nor any of Ray's own lines (issue 15): they are in the infra log.
    assert not re.search(r"^(\x1b\[\d+m)?\((raylet|gcs_server|autoscaler)", terminal, re.M), terminal
    assert not RAY_LOG_LINE.search(terminal), terminal
    # A healthy run surfaces no error line and leaves no last words (issue 13)
    assert "skyrl_fdlog:" not in terminal, terminal[-3000:]

    (log_file,) = log_path.iterdir()
    assert f"Infrastructure logs: {log_file}" in out
    for actor in ("vllm-engine-0", "policy-0", "policy-1"):
        assert re.search(rf"^  {actor} +\d+ lines$", out, re.M), f"no summary line for {actor}"

    records, not_records = parse(log_file.read_bytes())
    assert not_records == []
    names = {record.name for record in records}
    assert names - {"ray-driver", "raylet", "gcs"} == {"vllm-engine-0", "policy-0", "policy-1"}
    assert "ray-driver" in names  # "Started a local Ray instance"
    engine = records_named(records, "vllm-engine-0")
    engine_core = [(record, ENGINE_CORE_PREFIX.match(record.payload)) for record in engine]
    engine_core = [(record, int(match.group(1))) for record, match in engine_core if match]
    assert engine_core, "no EngineCore lines in the infra log"
    assert all(record.pid == core_pid for record, core_pid in engine_core)
    engine_payloads = b"\n".join(record.payload for record in engine)
    for expected in (
        b"Initializing a V1 LLM engine",
        b"Loading safetensors checkpoint shards",
        b"KV cache",
        b"engine weights updated",
    ):
        assert expected in engine_payloads
    assert engine_payloads.count(b"engine weights updated") == STEPS
    assert any(CPP_WARNING.match(record.payload) for record in engine), "no C++ warning"
    assert any(record.mark == "~" for record in engine), "no tqdm redraw snapshot"
    for rank in (0, 1):
        worker = b"\n".join(record.payload for record in records_named(records, f"policy-{rank}"))
        assert f"policy rank {rank}/2: loaded".encode() in worker
        assert worker.count(f"policy rank {rank}: step on".encode()) == STEPS


def test_demo_fail_at_engine_start_shows_the_cause_and_the_log_path(model_cache, tmp_path):
    """Issue 13: `demo.fail_at=engine_start` gives the engine a model whose weights file is cut
    short. vLLM's worker process fails to read it and EngineCore and the engine's __init__
    fail after it; the terminal shows the engine's error lines live, then once its last
    words led by the worker's cause line, and the demo's own two lines naming the infra log."""
    log_path = tmp_path / "logs"
    result = run_demo(model_cache, log_path, "demo.fail_at=engine_start", returncode=1)
    terminal = result.stdout + result.stderr
    print(terminal)  # the closing note quotes what the user sees (pytest -s)
    (log_file,) = log_path.iterdir()
    lines = terminal.splitlines()
    words = [
        i
        for i, line in enumerate(lines)
        if "skyrl_fdlog: vllm-engine-0: process " in line and "__init__ raised" in line
    ]
    assert len(words) == 1 and lines[words[0]].endswith(f"(every line is in {log_file}):")
    cause = "SafetensorError: Error while deserializing header"
    assert any("vllm-engine-0[" in line and cause in line for line in lines[words[0] + 1 :])
    assert f"The actor's last lines are above; every line is in {log_file}" in result.stdout
    assert "Training stopped: The actor died because of an error raised in its creation task" in result.stdout
    assert "step 1/" not in result.stdout
    records, not_records = parse(log_file.read_bytes())
    assert not_records == [] and any(cause.encode() in record.payload for record in records)


def test_demo_dump_mode_shows_everything_on_stdout_and_writes_no_file(model_cache, tmp_path):
    """With SKYRL_DUMP_INFRA_LOG_TO_STDOUT=1 the demo creates no log directory or file, and
    the engine's output (EngineCore included) reaches the terminal through Ray, next to the
    training progress."""
    log_path = tmp_path / "logs"
    result = run_demo(model_cache, log_path, "trainer.steps=1", env={"SKYRL_DUMP_INFRA_LOG_TO_STDOUT": "1"})
    assert not log_path.exists()
    assert "step 1/1 | reward" in result.stdout
    assert "no infra log was written" in result.stdout
    terminal = result.stdout + result.stderr
    assert "EngineCore" in terminal and "Initializing a V1 LLM engine" in terminal
    assert "policy rank 0/2: loaded" in terminal


def test_trainer_log_path_is_a_hydra_override():
    """trainer.log_path defaults to /tmp/skyrl-logs and takes a Hydra-style override, and an
    unknown key is refused, as in SkyRL's configuration."""
    from hydra.errors import ConfigCompositionException

    from skyrl_fdlog.config import load_config

    assert load_config().trainer.log_path == "/tmp/skyrl-logs"
    assert load_config(["trainer.log_path=/mnt/shared/logs"]).trainer.log_path == "/mnt/shared/logs"
    with pytest.raises(ConfigCompositionException):
        load_config(["trainer.log_dir=/x"])
