"""kassa's own log lines: rendered by structlog and written to the handlers' stream without
the standard library's records, in the shape other libraries' lines have, at the level of the
latest configuration."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from kassa.observability.logging import LogFile, configure_logging

CARD = "4111111111111111"
TIMESTAMP = re.compile(r'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"')
# Obtained at import, as kassa's modules obtain theirs, and used under several configurations.
log = structlog.get_logger("kassa.test.lines")


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """Leave logging as the other tests expect it: no file handler, stdout parked (capsys
    closes its buffer after the test), no request id bound."""
    yield
    structlog.contextvars.clear_contextvars()
    configure_logging("WARNING", "json")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()


def events_in(text: str) -> list[Any]:
    return [json.loads(line)["event"] for line in text.splitlines()]


def test_a_line_holds_its_values_then_event_request_id_level_logger_and_utc_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    structlog.contextvars.bind_contextvars(request_id="req-1")
    log.info("payment_created", payment_id="pay_1", amount=1050, card=f"card {CARD}")
    [line] = capsys.readouterr().out.splitlines()
    assert TIMESTAMP.sub('"timestamp":"T"', line) == (
        '{"payment_id":"pay_1","amount":1050,"card":"card [REDACTED]","event":"payment_created",'
        '"request_id":"req-1","level":"info","logger":"kassa.test.lines","timestamp":"T"}'
    )


def test_a_library_line_has_the_same_keys_in_the_same_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    structlog.contextvars.bind_contextvars(request_id="req-2")
    log.warning("own")
    logging.getLogger("uvicorn.error").warning("foreign")
    own, foreign = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert list(own) == list(foreign) == ["event", "request_id", "level", "logger", "timestamp"]
    assert foreign["logger"] == "uvicorn.error"


def test_an_exception_line_is_at_error_level_with_its_traceback_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    try:
        raise ValueError(f"declined {CARD}")
    except ValueError:
        log.exception("charge_failed")
    out = capsys.readouterr().out
    [line] = [json.loads(each) for each in out.splitlines()]
    assert line["level"] == "error"
    assert "ValueError: declined [REDACTED]" in line["exception"]
    assert CARD not in out


def test_a_logger_follows_the_level_of_the_latest_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("DEBUG", "json")
    log.debug("debug_1")
    configure_logging("WARNING", "json")
    log.debug("debug_2")
    log.info("info_2")
    log.warning("warning_2")
    configure_logging("INFO", "json")
    log.debug("debug_3")
    log.info("info_3")
    assert events_in(capsys.readouterr().out) == ["debug_1", "warning_2", "info_3"]


def test_a_logger_without_a_name_is_named_for_the_module_that_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    structlog.get_logger().info("nameless")
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["logger"] == __name__


def test_kassas_lines_make_no_standard_library_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    made: list[str] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record.name)
        return record

    logging.setLogRecordFactory(counting)
    try:
        log.info("own")
        own = list(made)
        logging.getLogger("alembic").warning("foreign")
    finally:
        logging.setLogRecordFactory(factory)
    assert own == []
    assert "alembic" in made
    assert events_in(capsys.readouterr().out) == ["own", "foreign"]


def test_a_failed_write_to_stdout_neither_raises_nor_costs_the_file_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kassa.log"
    configure_logging("INFO", "json", LogFile(path, 1024 * 1024, 2))
    closed = io.StringIO()
    closed.close()
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.stream = closed
    log.info("still_in_the_file")
    [line] = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["event"] == "still_in_the_file"
    # As the standard library's handler reports a failed write: on stderr, once.
    assert capsys.readouterr().err.count("--- Logging error ---") == 1
