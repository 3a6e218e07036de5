"""The service's log lines follow ``sys.stderr``: a CLI run inside a host that captures
stderr (a test runner, a notebook) must not leave later lines writing to its closed stream."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest
import structlog

from service.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_lines_go_to_the_current_stderr_after_the_first_is_closed(
    monkeypatch: pytest.MonkeyPatch, restored_logging: None
) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("info", "json")
    log = structlog.get_logger("service.tests.logs")
    log.info("while.captured")
    logging.getLogger("grpc.tests").warning("stdlib while captured")
    assert [orjson.loads(line)["event"] for line in first.getvalue().splitlines()] == [
        "while.captured",
        "stdlib while captured",
    ]
    first.close()

    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    # Before the fix: ValueError, I/O operation on closed file (the stream at configuration).
    log.info("after.close", request_id="r-1")
    logging.getLogger("grpc.tests").warning("stdlib after close")
    lines = [orjson.loads(line) for line in second.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["after.close", "stdlib after close"]
    assert lines[0]["request_id"] == "r-1"
