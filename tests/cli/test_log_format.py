"""cli/output.py setup_logging: the server's plain and JSON-lines formats."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from cyan.cli.output import LogFormat, setup_logging


@pytest.fixture(autouse=True)
def restored_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_are_one_object_each(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(False, LogFormat.JSON)
    log = logging.getLogger("cyan.gateway")
    log.warning("device %s: event %r dropped", "abc", "x\ny")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke")
    log.debug("not at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "warning"
    assert first["logger"] == "cyan.gateway"
    assert first["message"] == "device abc: event 'x\\ny' dropped"
    assert "ValueError: boom" in second["exception"]


def test_text_is_one_plain_line_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(True, LogFormat.TEXT)
    logging.getLogger("cyan.api").debug("seen at DEBUG")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("DEBUG cyan.api: seen at DEBUG")
    assert "\x1b[" not in line  # no colour codes
