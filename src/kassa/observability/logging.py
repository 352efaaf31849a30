"""Structured logs: one JSON object a line on stdout, redacted before it is written.

The redaction step is the last processor before rendering, so no code path can bypass it:
card numbers (any 12–19 digit Luhn-valid run), CVCs, passwords, tokens and secrets are
replaced whatever key or message they hide in.

With `KASSA_LOG_FILE` the same rendered line is also appended to that file, rotated by size;
every process of `kassa serve --workers N` (and a `kassa worker` beside them) may share one
file: writes and rotation take a lock file beside it (`.__<name>.lock`).

kassa's own lines (`structlog.get_logger(name)`) are filtered, rendered and written by structlog
itself, without a `logging.LogRecord` each; other libraries' lines (uvicorn, alembic) go
through the standard library and `ProcessorFormatter`, with the same processors, to the same
handlers, so both come out in one shape.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from concurrent_log_handler import ConcurrentRotatingFileHandler
from structlog.typing import EventDict, WrappedLogger

from kassa.settings import Settings
from kassa.vault.cards import MIN_PAN_DIGITS, card_number_spans

REDACTED = "[REDACTED]"
SENSITIVE_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "cvc",
        "cvv",
        "number",
        "card_number",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "secret",
        "jwt_secret",
        "vault_keys",
        "api_key",
        "stripe_api_key",
        "cookie",
    }
)
# Stretches of digits, spaces and dashes: every digit run above lies inside one.
_DIGITS_AND_SEPARATORS = re.compile(r"[\d -]{12,}")


def _has_twelve_digits(text: str) -> bool:
    """Whether a card number could hide here: a stretch with at least 12 digits."""
    return any(
        len(part) - part.count(" ") - part.count("-") >= MIN_PAN_DIGITS
        for part in _DIGITS_AND_SEPARATORS.findall(text)
    )


def _token_like(text: str) -> bool:
    """What any of the token patterns below needs, found by substring search."""
    return (
        "earer" in text.lower()
        or "eyJ" in text
        or "whsec_" in text
        or "k_live_" in text
        or "k_test_" in text
    )


_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Webhook secrets are standard base64 (with + / =), Stripe keys alphanumeric.
_SECRET_WORDS = re.compile(r"\b(?:whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9+/=]+")


def _mask_card_numbers(text: str) -> str:
    """Every card number in `text` (see `card_number_spans`: ids are logged on purpose, and
    digits inside a UUID are never a card number) replaced by one mark."""
    spans = card_number_spans(text)
    if not spans:
        return text
    out: list[str] = []
    done = 0
    for start, end in spans:
        out += [text[done:start], REDACTED]
        done = end
    out.append(text[done:])
    return "".join(out)


# What a database error's text may carry of a statement's values: SQLAlchemy's parameter list
# (the engines hide it, but a driver's error text may not pass through them), asyncpg's
# "invalid input for query argument $1: '<value>'", and PostgreSQL's DETAIL ("Key (email)=(…)",
# "Failing row contains (…)", which may be a whole row with its password hash).
_STATEMENT_VALUES = re.compile(
    r"(\[parameters: ).*?(?=\n\(Background on this error|\Z)"
    r"|(invalid input for query argument \$\d+: |DETAIL: |Failing row contains "
    r"|Key \([^)\n]*\)=\()[^\n]*",
    re.DOTALL,
)
_STATEMENT_VALUE_MARKS = ("[parameters: ", "query argument", "DETAIL: ", "Failing row", ")=(")


def _redact_statement_values(text: str) -> str:
    return _STATEMENT_VALUES.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


# Anything one of the checks in `redact_text` could act on contains one of these: a value
# without any (an id, a route, a timestamp: most values of most lines) is settled by this one
# search. It only lets text through early; everything it matches gets every check below.
_WORTH_A_LOOK = re.compile(
    r"[\d -]{12,}|(?i:earer)|eyJ|whsec_|k_live_|k_test_"
    r"|\[parameters: |query argument|DETAIL: |Failing row|\)=\("
)


def redact_text(text: str) -> str:
    # Every value of every line passes here, so the common case (an id, a route, a
    # timestamp) is settled by one search (`_WORTH_A_LOOK`), then by a few: nothing
    # token-like, no statement values, no run of 12 digits outside a UUID. Only a value that
    # fails them gets the full treatment.
    if _WORTH_A_LOOK.search(text) is None:
        return text
    if any(mark in text for mark in _STATEMENT_VALUE_MARKS):
        text = _redact_statement_values(text)
    if _token_like(text):
        text = _BEARER.sub(r"\1 " + REDACTED, text)
        text = _JWT.sub(REDACTED, text)
        text = _SECRET_WORDS.sub(REDACTED, text)
    if _has_twelve_digits(text):
        return _mask_card_numbers(text)
    return text


def redact_value(key: str | None, value: Any) -> Any:
    if key is not None and key.lower() in SENSITIVE_KEYS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact_value(None, v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        # A card number logged as a number is still a card number.
        text = str(value)
        if not _has_twelve_digits(text):
            return value
        return value if _mask_card_numbers(text) == text else REDACTED
    if isinstance(value, float | bool) or value is None:
        return value
    return redact_text(str(value))


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    return {k: redact_value(k, v) for k, v in event_dict.items()}


def _drop_color_message(_l: WrappedLogger, _n: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def _orjson_dumps(obj: MutableMapping[str, Any], **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


@dataclass(frozen=True, slots=True)
class LogFile:
    """A file that gets a copy of every log line: rotated when it reaches `max_bytes`,
    keeping `backups` older files (`<path>.1` the newest)."""

    path: Path
    max_bytes: int
    backups: int


class LogFileError(Exception):
    """The log file cannot be written; the message is one human-readable line."""


def log_file_of(settings: Settings) -> LogFile | None:
    if settings.log_file is None:
        return None
    return LogFile(settings.log_file, settings.log_file_max_bytes, settings.log_file_backups)


class _RenderOnce(logging.Formatter):
    """Renders a record once for all handlers, so the file gets the very line stdout got
    (same timestamp), redacted once. A record of one of kassa's own lines arrives rendered."""

    _ATTRIBUTE = "_kassa_rendered"

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        rendered = getattr(record, self._ATTRIBUTE, None)
        if not isinstance(rendered, str):
            rendered = self._inner.format(record)
            setattr(record, self._ATTRIBUTE, rendered)
        return rendered


class _RotatingFileHandler(ConcurrentRotatingFileHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (the stdlib's name)
        # A write that fails later (disk full, file removed with its directory) loses the
        # file's copy of this line only: stdout still has it, and the contract keeps stderr
        # free of the traceback the standard handler would print there.
        return


def _file_handler(target: LogFile) -> _RotatingFileHandler:
    """Open (creating) the log file now, so a bad path stops start-up in one line instead of
    failing on the first write."""
    path = target.path.expanduser().absolute()
    if path.is_dir():
        raise LogFileError(f"cannot write the log file {path}: it is a directory")
    if not path.parent.is_dir():
        raise LogFileError(
            f"cannot write the log file {path}: the directory {path.parent} does not exist"
        )
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LogFileError(f"cannot write the log file {path}: {reason}") from None
    if not os.access(path.parent, os.W_OK):
        # Rotation renames in the directory, and the cross-process lock file lives there.
        raise LogFileError(
            f"cannot write the log file {path}: the directory {path.parent} is not writable"
        )
    return _RotatingFileHandler(
        str(path), maxBytes=target.max_bytes, backupCount=target.backups, encoding="utf-8"
    )


class _Outputs:
    """Where kassa's own lines go, rendered: the very handlers the standard library's lines
    go to (stdout's, and the rotated file's when there is one), so rotation, the file's lock,
    a test's swapped stream and a failed write's handling are the same for both.

    Also structlog's logger factory: `structlog.get_logger(name)` gets a `_Output` of that
    name, which `add_logger_name` reads."""

    def __init__(
        self,
        stdout: logging.StreamHandler[TextIO],
        file: _RotatingFileHandler | None,
        guess_name: structlog.stdlib.LoggerFactory,
    ) -> None:
        self._stdout = stdout
        self._file = file
        self._guess_name = guess_name
        self._by_name: dict[str, _Output] = {}

    def __call__(self, *args: Any) -> _Output:
        # A logger without a name is named for the module that asked, as the standard
        # library's factory names it.
        name = str(args[0]) if args else self._guess_name().name
        output = self._by_name.get(name)
        if output is None:
            output = self._by_name[name] = _Output(name, self)
        return output

    def write(self, name: str, levelno: int, line: str) -> None:
        stdout = self._stdout
        try:
            # What `StreamHandler.emit` does, under the handler's lock as `handle` takes it.
            stdout.acquire()
            try:
                stdout.stream.write(line + stdout.terminator)
                stdout.flush()
            finally:
                stdout.release()
        except RecursionError:
            raise
        except Exception:
            stdout.handleError(_record_of(name, levelno, line))
        if self._file is not None:
            self._file.handle(_record_of(name, levelno, line))


def _record_of(name: str, levelno: int, line: str) -> logging.LogRecord:
    """A record carrying a rendered line, for a handler's own path (the file's rotation and
    lock, a failed write's report): built only where one is needed."""
    return logging.makeLogRecord(
        {
            "name": name,
            "levelno": levelno,
            "levelname": logging.getLevelName(levelno),
            "msg": line,
            _RenderOnce._ATTRIBUTE: line,
        }
    )


class _Output:
    """structlog's wrapped logger for one name: gets each line rendered, as a string."""

    __slots__ = ("_outputs", "name")

    def __init__(self, name: str, outputs: _Outputs) -> None:
        self.name = name
        self._outputs = outputs

    def debug(self, line: str) -> None:
        self._outputs.write(self.name, logging.DEBUG, line)

    def info(self, line: str) -> None:
        self._outputs.write(self.name, logging.INFO, line)

    def warning(self, line: str) -> None:
        self._outputs.write(self.name, logging.WARNING, line)

    def error(self, line: str) -> None:
        self._outputs.write(self.name, logging.ERROR, line)

    def critical(self, line: str) -> None:
        self._outputs.write(self.name, logging.CRITICAL, line)


def configure_logging(level: str = "INFO", fmt: str = "json", file: LogFile | None = None) -> None:
    """Send structlog and the standard library (uvicorn, alembic) through one redacting
    pipeline, to stdout and, when given, to a rotated `file` (the same lines). Raises
    `LogFileError` before changing anything when the file cannot be written."""
    file_handler = _file_handler(file) if file is not None else None
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handlers: list[logging.Handler] = [handler]
    if file_handler is not None:
        handlers.append(file_handler)
    shared_formatter = _RenderOnce(formatter) if file_handler is not None else formatter
    for each in handlers:
        each.setFormatter(shared_formatter)
    structlog.configure(
        processors=[*shared, redact, renderer],
        logger_factory=_Outputs(
            handler,
            file_handler,
            structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__]),
        ),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # A cached logger would keep the level and outputs of the configuration it was first
        # used under; tests, and `kassa` commands before their app, configure again.
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, _RotatingFileHandler):
            old.close()  # its file and lock file; a new one takes over
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "alembic", "sqlalchemy"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The request middleware writes its own access line with the request id.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # httpx logs every request with its whole URL, and a webhook receiver's query string
    # often holds its token: the delivery logs its own line with the URL cut down.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
