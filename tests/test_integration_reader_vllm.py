"""vLLM's own log lines, from its real logger and formatter, read back by the reader: the
(EngineCore pid=N) decoration folded into the prefix in every output format.  Needs vLLM
(requirements/dev.txt), so it runs with `make test`, not with `make test-fast`."""

from __future__ import annotations

import re

import pytest

from skyrl_fdlog.reader import iter_records
from test_cli import out_lines
from test_reader_formats import CYAN, json_lines, write_real_log
from test_reader_helpers import cli

pytestmark = pytest.mark.vllm


def test_real_vllm_log_lines_lose_their_decoration_and_keep_their_role(tmp_path):
    """vLLM's own logger (its real formatter, coloured as on a terminal) in a redirected
    process: the reader shows its lines with the role in the prefix and no repeated
    (EngineCore pid=N), in every output format; the file keeps the bytes."""
    log = tmp_path / "vllm.log"
    write_real_log(
        log,
        """
        from vllm.config.logging import LoggingConfig
        from vllm.logger import configure_logging, init_logger
        from vllm.utils.system_utils import decorate_logs
        configure_logging(LoggingConfig())
        decorate_logs("EngineCore")
        logger = init_logger("vllm.engine_test")
        logger.warning("KV cache is %d%% full", 95)
        logger.error("engine died")
    """,
        name="vllm-engine-0",
        VLLM_LOGGING_COLOR="1",
        VLLM_CONFIGURE_LOGGING="1",
    )
    ours = [r for r in iter_records(log) if b"KV cache" in r.payload or b"engine died" in r.payload]
    assert len(ours) == 2
    pid = ours[0].pid
    assert all(r.payload.startswith(CYAN + b"(EngineCore pid=%d)" % pid) for r in ours)
    shown = [line for line in out_lines(cli("cat", log)) if b"KV cache" in line or b"engine died" in line]
    assert len(shown) == 2
    for line in shown:
        assert b"vllm-engine-0[%d/EngineCore]" % pid in line
        assert b"pid=" not in line and b"\x1b" not in line and b"\\x1b" not in line
    assert re.search(
        rb"\] (out|err): WARNING \d\d-\d\d [\d:]{8} \[<string>:\d+\] "
        rb"KV cache is 95% full$",
        shown[0],
    )
    objects = [o for o in json_lines("cat", log) if o["role"] == "EngineCore"]
    assert [(o["level"], o["message"].split("] ", 1)[1]) for o in objects] == [
        ("warning", "KV cache is 95% full"),
        ("error", "engine died"),
    ]
    no_prefix = [line for line in out_lines(cli("cat", "--no-prefix", log)) if b"engine died" in line]
    assert no_prefix and no_prefix[0].startswith(b"ERROR ")
