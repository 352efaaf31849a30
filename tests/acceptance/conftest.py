"""`kassa serve` as a real process, once per session and database: a fresh PostgreSQL
database (the production setup) and the embedded SQLite default.

The server runs in its own temporary working directory with a clean environment, so it
generates its development secrets there and reads no stray `.env` or `KASSA_*` variable.
Its stdout and stderr go to files the tests read.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    CHEAP_ARGON2,
    IN_CI,
    PG_ADMIN_DSN,
    _create_pg_database,
    _drop_pg_database,
    _pg_reachable,
)

KASSA = Path(sys.executable).parent / "kassa"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass
class Server:
    """A running `kassa serve` and where to find what it printed."""

    base_url: str
    port: int
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    process: subprocess.Popen[bytes]

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(workdir: Path, **kassa: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "KASSA_LOG_LEVEL": "INFO",
    }
    env.update({f"KASSA_{k.upper()}": v for k, v in kassa.items()})
    if env.get("KASSA_ENV") != "production":
        # Cheap Argon2id: these servers test everything but the cost of hashing.
        for name, value in CHEAP_ARGON2.items():
            env.setdefault(name, value)
    return env


def _wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"kassa serve exited with {server.process.returncode} during start-up\n"
                f"stdout:\n{server.stdout()[-4000:]}\nstderr:\n{server.stderr()[-4000:]}",
                pytrace=False,
            )
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"kassa serve did not answer /healthz within {START_TIMEOUT_SECONDS}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def launch(
    workdir: Path, *args: str, extra_env: Mapping[str, str] | None = None, **kassa: str
) -> Server:
    """Start `kassa serve [args]` on a free port in `workdir` (with `KASSA_<NAME>` settings
    from `kassa`, and other variables such as `OTEL_*` from `extra_env`) and wait until
    /healthz answers."""
    assert KASSA.exists(), f"console script missing: {KASSA}"
    port = free_port()
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [str(KASSA), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=workdir,
            env={**clean_env(workdir, **kassa), **(extra_env or {})},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    server = Server(
        base_url=f"http://127.0.0.1:{port}",
        port=port,
        workdir=workdir,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        process=process,
    )
    try:
        _wait_until_healthy(server)
    except BaseException:
        stop(process)
        raise
    return server


@pytest.fixture(scope="session")
def acceptance_pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database: `kassa serve` must migrate it itself."""
    if not _pg_reachable():
        message = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}"
        if IN_CI:
            pytest.fail(message + " (CI requires it)", pytrace=False)
        pytest.skip(message)
    name, url = _create_pg_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


@pytest.fixture(scope="session")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, acceptance_pg_url: str
) -> Iterator[Server]:
    server = launch(tmp_path_factory.mktemp("serve-postgres"), database_url=acceptance_pg_url)
    yield server
    stop(server.process)  # before the database is dropped


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The embedded default: no KASSA_DATABASE_URL at all, so `kassa.db` in the workdir."""
    server = launch(tmp_path_factory.mktemp("serve-sqlite"))
    yield server
    stop(server.process)


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def server(request: pytest.FixtureRequest) -> Server:
    served: Server = request.getfixturevalue(f"{request.param}_server")
    return served
