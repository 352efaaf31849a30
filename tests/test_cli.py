"""The `kassa` console script, run as a process in a scratch directory with a clean env."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.acceptance.conftest import free_port
from tests.conftest import PG_ADMIN_DSN, _create_pg_database, _drop_pg_database, _pg_reachable

KASSA = shutil.which("kassa", path=str(Path(sys.executable).parent)) or shutil.which("kassa")
pytestmark = pytest.mark.skipif(KASSA is None, reason="the kassa console script is not installed")

TIMEOUT = 30
EXPECTED_TABLES = {"alembic_version", "user_account", "auth_session"}
UNREACHABLE_PG = "postgresql+asyncpg://postgres@127.0.0.1:1/x"


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASSA_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(settings)
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def kassa(
    workdir: Path, *args: str, timeout: float = TIMEOUT, **settings: str
) -> subprocess.CompletedProcess[str]:
    assert KASSA is not None
    return subprocess.run(
        [KASSA, *args],
        cwd=workdir,
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kassa:"), lines[0]
    return lines[0]


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def sqlite_revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert len(rows) == 1
    return str(rows[0][0])


# --help ----------------------------------------------------------------------------------


def test_help_exits_0_and_lists_the_commands(workdir: Path) -> None:
    result = kassa(workdir, "--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout
    assert "migrate" in result.stdout


def test_serve_help_exits_0_and_lists_its_options(workdir: Path) -> None:
    result = kassa(workdir, "serve", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--workers", "--tls-certfile", "--tls-keyfile"):
        assert option in result.stdout


def test_migrate_help_exits_0(workdir: Path) -> None:
    result = kassa(workdir, "migrate", "--help")
    assert result.returncode == 0, result.stderr
    assert "migrat" in result.stdout.lower()


def test_help_touches_no_files(workdir: Path) -> None:
    kassa(workdir, "--help")
    kassa(workdir, "serve", "--help")
    assert list(workdir.iterdir()) == []


def test_help_works_even_with_a_bad_setting(workdir: Path) -> None:
    result = kassa(workdir, "migrate", "--help", KASSA_MAX_AMOUNT="-5")
    assert result.returncode == 0, result.stderr


# migrate ---------------------------------------------------------------------------------


def test_migrate_creates_kassa_db_with_the_tables(workdir: Path) -> None:
    result = kassa(workdir, "migrate")
    assert result.returncode == 0, result.stderr
    database = workdir / "kassa.db"
    assert database.is_file()
    assert sqlite_tables(database) >= EXPECTED_TABLES


def test_migrate_is_idempotent(workdir: Path) -> None:
    assert kassa(workdir, "migrate").returncode == 0
    database = workdir / "kassa.db"
    tables, revision = sqlite_tables(database), sqlite_revision(database)
    again = kassa(workdir, "migrate")
    assert again.returncode == 0, again.stderr
    assert sqlite_tables(database) == tables
    assert sqlite_revision(database) == revision


def test_migrate_prints_only_json_log_lines_on_stdout_and_nothing_on_stderr(
    workdir: Path,
) -> None:
    result = kassa(workdir, "migrate")
    assert result.returncode == 0
    assert result.stderr == ""
    for line in result.stdout.splitlines():
        assert isinstance(json.loads(line), dict), line


def test_migrate_honours_kassa_database_url(workdir: Path) -> None:
    target = workdir / "elsewhere.sqlite"
    result = kassa(workdir, "migrate", KASSA_DATABASE_URL=f"sqlite+aiosqlite:///{target}")
    assert result.returncode == 0, result.stderr
    assert sqlite_tables(target) >= EXPECTED_TABLES
    assert not (workdir / "kassa.db").exists()


def test_migrate_reads_settings_from_dotenv(workdir: Path) -> None:
    (workdir / ".env").write_text("KASSA_DATABASE_URL=sqlite+aiosqlite:///from-dotenv.db\n")
    result = kassa(workdir, "migrate")
    assert result.returncode == 0, result.stderr
    assert (workdir / "from-dotenv.db").is_file()


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    if not _pg_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}")
    name, url = _create_pg_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


def postgres_tables(url: str) -> set[str]:
    async def query() -> set[str]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        finally:
            await conn.close()
        return {row["tablename"] for row in rows}

    return asyncio.run(query())


def test_migrate_creates_the_tables_in_postgresql_idempotently(
    workdir: Path, fresh_postgres: str
) -> None:
    first = kassa(workdir, "migrate", KASSA_DATABASE_URL=fresh_postgres)
    assert first.returncode == 0, first.stderr
    tables = postgres_tables(fresh_postgres)
    assert tables >= EXPECTED_TABLES
    second = kassa(workdir, "migrate", KASSA_DATABASE_URL=fresh_postgres)
    assert second.returncode == 0, second.stderr
    assert postgres_tables(fresh_postgres) == tables


# start-up failures -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_bad_setting_fails_with_one_line_naming_it(workdir: Path, command: str) -> None:
    result = kassa(workdir, command, KASSA_MAX_AMOUNT="-5")
    line = assert_one_line_failure(result)
    assert "KASSA_MAX_AMOUNT" in line
    assert not (workdir / "kassa.db").exists()


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_unknown_setting_fails_with_one_line_naming_it(workdir: Path, command: str) -> None:
    line = assert_one_line_failure(kassa(workdir, command, KASSA_MAX_AMMOUNT="5"))
    assert "KASSA_MAX_AMMOUNT" in line


def test_unknown_setting_in_dotenv_fails_with_one_line(workdir: Path) -> None:
    (workdir / ".env").write_text("KASSA_NOT_A_SETTING=1\n")
    line = assert_one_line_failure(kassa(workdir, "migrate"))
    assert "KASSA_NOT_A_SETTING" in line


def test_short_jwt_secret_fails_without_showing_it(workdir: Path) -> None:
    secret = "my-short-secret"
    result = kassa(workdir, "migrate", KASSA_JWT_SECRET=secret)
    line = assert_one_line_failure(result)
    assert "KASSA_JWT_SECRET" in line
    assert secret not in result.stdout + result.stderr


def test_production_with_sqlite_fails_with_one_line(workdir: Path) -> None:
    result = kassa(
        workdir,
        "serve",
        KASSA_ENV="production",
        KASSA_JWT_SECRET="p" * 40,
        KASSA_VAULT_KEYS="k1:" + "a" * 43,
    )
    line = assert_one_line_failure(result)
    assert "SQLite" in line
    assert "p" * 40 not in result.stderr


def test_sqlite_in_a_missing_directory_fails_with_one_line(workdir: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir}/no/such/dir/kassa.db"
    assert_one_line_failure(kassa(workdir, "migrate", KASSA_DATABASE_URL=url))


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_unreachable_postgresql_fails_quickly_with_one_line(workdir: Path, command: str) -> None:
    started = time.monotonic()
    result = kassa(workdir, command, KASSA_DATABASE_URL=UNREACHABLE_PG)
    assert time.monotonic() - started < TIMEOUT
    line = assert_one_line_failure(result)
    assert "127.0.0.1:1" in line


def test_database_password_is_hidden_in_the_failure_line(workdir: Path) -> None:
    url = "postgresql+asyncpg://postgres:hunter2-secret@127.0.0.1:1/x"
    result = kassa(workdir, "migrate", KASSA_DATABASE_URL=url)
    assert_one_line_failure(result)
    assert "hunter2-secret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("given", "missing"), [("--tls-certfile", "keyfile"), ("--tls-keyfile", "certfile")]
)
def test_serve_with_only_one_tls_file_fails_with_one_line(
    workdir: Path, given: str, missing: str
) -> None:
    pem = workdir / "tls.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    line = assert_one_line_failure(kassa(workdir, "serve", given, str(pem)))
    assert "--tls-certfile" in line
    assert "--tls-keyfile" in line
    assert not (workdir / "kassa.db").exists()


def test_serve_with_a_missing_tls_file_fails_without_traceback(workdir: Path) -> None:
    result = kassa(workdir, "serve", "--tls-certfile", "nope.pem", "--tls-keyfile", "nope.key")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "nope.pem" in result.stderr


def test_unknown_command_fails_without_traceback(workdir: Path) -> None:
    result = kassa(workdir, "frobnicate")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout


# serve -----------------------------------------------------------------------------------


def test_serve_migrates_then_answers_healthz(workdir: Path) -> None:
    assert KASSA is not None
    port = free_port()
    process = subprocess.Popen(
        [KASSA, "serve", "--port", str(port)],
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 200, f"kassa serve did not answer /healthz (exit {process.poll()})"
        assert sqlite_tables(workdir / "kassa.db") >= EXPECTED_TABLES
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit reflects the signal.
    assert process.returncode in {0, -signal.SIGTERM}
    assert stderr == ""
    assert "Traceback" not in stdout
    for line in stdout.splitlines():
        assert isinstance(json.loads(line), dict), line


# --version, help layout, a port in use -----------------------------------------------------


def test_version_prints_the_installed_version(workdir: Path) -> None:
    from importlib.metadata import version

    result = kassa(workdir, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"kassa {version('kassa')}\n"
    assert result.stderr == ""
    assert list(workdir.iterdir()) == []


HELP_PAGES = [
    [],
    ["serve"],
    ["migrate"],
    ["worker"],
    ["reconcile"],
    ["vault"],
    ["vault", "rotate"],
    ["ledger"],
    ["ledger", "verify"],
]


def _stray_breaks(page: str, width: int) -> list[str]:
    """Lines broken where the next word would still have fitted (or running past `width`):
    a break the source text made, not the terminal."""
    found = []
    lines = page.splitlines()
    section = ""
    for before, line in zip(["", *lines], lines, strict=False):
        if len(line) > width:
            found.append(f"too wide: {line!r}")
        if line and not line.startswith(" "):
            section = line
            continue
        if not before.strip() or not line.strip() or section.startswith("Commands"):
            continue
        if section.startswith("Options") and line.lstrip().startswith("-"):
            continue  # a new option
        word = line.split()[0]
        gap = 2 if word.startswith("[") else 1  # click sets "[default: …]" two spaces off
        if len(before.rstrip()) + gap + len(word) <= width:
            found.append(f"broken early: {before!r} / {line!r}")
    return found


@pytest.mark.parametrize("width", [60, 80, 120])
def test_help_pages_have_no_stray_line_breaks(width: int) -> None:
    from typer.testing import CliRunner

    from kassa.cli import app

    runner = CliRunner()
    for args in HELP_PAGES:
        result = runner.invoke(
            app, [*args, "--help"], terminal_width=width, env={"COLUMNS": str(width)}
        )
        assert result.exit_code == 0, (args, result.output)
        assert _stray_breaks(result.output, width) == [], (args, result.output)
        assert "╭" not in result.output


def test_serve_on_a_port_in_use_fails_with_one_line(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = kassa(workdir, "serve", "--port", str(port))
    line = assert_one_line_failure(result)
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in line
    assert "already in use" in line
    assert result.stdout == ""
    assert not (workdir / "kassa.db").exists()  # refused before touching the database


def test_serve_on_an_unknown_host_fails_with_one_line(workdir: Path) -> None:
    line = assert_one_line_failure(kassa(workdir, "serve", "--host", "no-such-host.invalid"))
    assert "cannot listen on no-such-host.invalid:8000" in line
