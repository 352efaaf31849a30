"""`KASSA_LOG_FILE`: the same redacted lines as stdout, appended to a file rotated by size.

Several processes sharing one file are covered by the acceptance test that runs
`kassa serve --workers 2`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from kassa.observability.logging import LogFile, LogFileError, configure_logging, log_file_of
from kassa.settings import SettingsError, load_settings
from tests.test_cli import assert_one_line_failure, kassa

CARD = "4111111111111111"
PASSWORD = "correct horse battery staple"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
BASE_ENV = {"KASSA_JWT_SECRET": "s" * 40, "KASSA_DATABASE_URL": "sqlite+aiosqlite:///:memory:"}


@pytest.fixture
def logging_restored(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Leave logging as the other tests expect it: no file handler, stdout parked (capsys
    closes its buffer after the test)."""
    yield
    configure_logging("WARNING", "json")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()


def lines_of(*paths: Path) -> list[dict[str, object]]:
    parsed = []
    for path in paths:
        for raw in path.read_text(encoding="utf-8").splitlines():
            value = json.loads(raw)
            assert isinstance(value, dict), raw
            parsed.append(value)
    return parsed


def log_secrets() -> None:
    structlog.get_logger("kassa.test").info(
        "charging", card=f"card {CARD}", password=PASSWORD, authorization=f"Bearer {TOKEN}"
    )
    logging.getLogger("uvicorn.error").warning(
        "client sent %s with Authorization: Bearer %s", CARD, TOKEN
    )


# Settings ---------------------------------------------------------------------------------


def test_log_file_is_off_by_default_with_10_mib_and_5_backups() -> None:
    settings = load_settings(BASE_ENV)
    assert settings.log_file is None
    assert settings.log_file_max_bytes == 10 * 1024 * 1024
    assert settings.log_file_backups == 5
    assert log_file_of(settings) is None


def test_log_file_settings_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        {
            **BASE_ENV,
            "KASSA_LOG_FILE": str(tmp_path / "kassa.log"),
            "KASSA_LOG_FILE_MAX_BYTES": "4096",
            "KASSA_LOG_FILE_BACKUPS": "3",
        }
    )
    assert log_file_of(settings) == LogFile(tmp_path / "kassa.log", 4096, 3)


def test_an_empty_log_file_setting_means_stdout_only() -> None:
    assert load_settings({**BASE_ENV, "KASSA_LOG_FILE": ""}).log_file is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KASSA_LOG_FILE_MAX_BYTES", "0"),
        ("KASSA_LOG_FILE_MAX_BYTES", "-1"),
        ("KASSA_LOG_FILE_MAX_BYTES", "ten"),
        ("KASSA_LOG_FILE_BACKUPS", "0"),
        ("KASSA_LOG_FILE_BACKUPS", "many"),
    ],
)
def test_invalid_log_file_limits_are_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE_ENV, name: value})
    message = str(raised.value)
    assert name in message
    assert "\n" not in message


# Lines ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("logging_restored")
def test_the_file_gets_the_same_lines_as_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kassa.log"
    configure_logging("INFO", "json", LogFile(path, 1024 * 1024, 2))
    structlog.get_logger("kassa.test").info("hello", request_id="file-1")
    logging.getLogger("alembic").warning("from the standard library")
    stdout = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines_of(path) == stdout
    assert [line["event"] for line in stdout] == ["hello", "from the standard library"]


@pytest.mark.usefixtures("logging_restored")
def test_the_file_never_holds_a_card_number_password_or_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kassa.log"
    configure_logging("INFO", "json", LogFile(path, 1024 * 1024, 2))
    log_secrets()
    written = path.read_bytes()
    assert written.count(b"\n") == 2
    for secret in (CARD, PASSWORD, TOKEN):
        assert secret.encode() not in written, secret
    assert b"[REDACTED]" in written
    assert CARD not in capsys.readouterr().out


@pytest.mark.usefixtures("logging_restored")
def test_console_format_goes_to_the_file_redacted_too(tmp_path: Path) -> None:
    path = tmp_path / "kassa.log"
    configure_logging("INFO", "console", LogFile(path, 1024 * 1024, 2))
    log_secrets()
    written = path.read_bytes()
    assert b"charging" in written
    for secret in (CARD, PASSWORD, TOKEN):
        assert secret.encode() not in written, secret


@pytest.mark.usefixtures("logging_restored")
def test_the_file_rotates_by_size_keeping_the_given_number_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "kassa.log"
    configure_logging("INFO", "json", LogFile(path, 400, 3))
    log = structlog.get_logger("kassa.test")
    for n in range(60):
        log.info("line", n=n, padding="x" * 40)
    backups = sorted(p.name for p in tmp_path.glob("kassa.log.*"))
    assert backups == ["kassa.log.1", "kassa.log.2", "kassa.log.3"]
    kept = lines_of(path, *(tmp_path / name for name in backups))
    numbers = sorted(int(str(line["n"])) for line in kept)
    # The newest lines survive, each whole and once; the oldest went with the dropped files.
    assert numbers == list(range(numbers[0], 60))
    assert numbers[0] > 0
    for name in ["kassa.log", *backups]:
        assert (tmp_path / name).stat().st_size < 400 + 200  # one line past the limit at most


@pytest.mark.usefixtures("logging_restored")
def test_configuring_again_closes_the_previous_file(tmp_path: Path) -> None:
    configure_logging("INFO", "json", LogFile(tmp_path / "first.log", 1024, 1))
    structlog.get_logger("kassa.test").info("one")
    configure_logging("INFO", "json", LogFile(tmp_path / "second.log", 1024, 1))
    structlog.get_logger("kassa.test").info("two")
    assert [line["event"] for line in lines_of(tmp_path / "first.log")] == ["one"]
    assert [line["event"] for line in lines_of(tmp_path / "second.log")] == ["two"]


# Bad paths --------------------------------------------------------------------------------


@pytest.mark.usefixtures("logging_restored")
def test_a_log_file_in_a_missing_directory_is_refused_and_logging_is_unchanged(
    tmp_path: Path,
) -> None:
    configure_logging("INFO", "json")
    before = list(logging.getLogger().handlers)
    with pytest.raises(LogFileError) as raised:
        configure_logging("INFO", "json", LogFile(tmp_path / "nowhere" / "kassa.log", 1024, 1))
    assert "does not exist" in str(raised.value)
    assert logging.getLogger().handlers == before


@pytest.mark.usefixtures("logging_restored")
def test_a_directory_as_the_log_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LogFileError) as raised:
        configure_logging("INFO", "json", LogFile(tmp_path, 1024, 1))
    assert "is a directory" in str(raised.value)


@pytest.mark.parametrize("command", ["migrate", "serve", "worker"])
def test_cli_refuses_a_log_file_in_a_missing_directory_in_one_line(
    tmp_path: Path, command: str
) -> None:
    result = kassa(tmp_path, command, KASSA_LOG_FILE=str(tmp_path / "missing" / "kassa.log"))
    line = assert_one_line_failure(result)
    assert "cannot write the log file" in line
    assert "missing" in line
    assert result.stdout == ""


def test_cli_refuses_an_unwritable_log_file_in_one_line(tmp_path: Path) -> None:
    # /proc refuses new files even to root, for whom permission bits do not count.
    result = kassa(tmp_path, "migrate", KASSA_LOG_FILE="/proc/kassa-test.log")
    line = assert_one_line_failure(result)
    assert "cannot write the log file /proc/kassa-test.log" in line


def test_cli_refuses_an_invalid_log_file_limit_in_one_line(tmp_path: Path) -> None:
    result = kassa(tmp_path, "migrate", KASSA_LOG_FILE_BACKUPS="0")
    assert "KASSA_LOG_FILE_BACKUPS" in assert_one_line_failure(result)


def test_migrate_writes_its_log_lines_to_stdout_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "kassa.log"
    path.parent.mkdir()
    result = kassa(tmp_path, "migrate", KASSA_LOG_FILE=str(path), KASSA_LOG_LEVEL="INFO")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    stdout = [json.loads(line) for line in result.stdout.splitlines()]
    assert stdout
    assert lines_of(path) == stdout
