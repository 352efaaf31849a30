"""Fixtures for the edge tests: real `kassa serve` processes, the shared Redis under a key
prefix of the test's own, and a private `redis-server` that a test may kill and restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kassa.ratelimit.limiter import create_storage
from tests.acceptance.conftest import (
    KASSA,
    START_TIMEOUT_SECONDS,
    Server,
    clean_env,
    free_port,
    launch,
    stop,
)
from tests.conftest import IN_CI, _create_pg_database, _drop_pg_database, _pg_reachable

SHARED_REDIS = ("127.0.0.1", 6379)
REDIS_SERVER = shutil.which("redis-server")


def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI requires it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`serve(*args, **settings)` starts `kassa serve` in a fresh directory (with
    `tls=(certfile, keyfile, client_trust)` it serves HTTPS); all are stopped when the test
    ends."""
    started: list[Server] = []

    def start(
        *args: str, tls: tuple[Path, Path, ssl.SSLContext] | None = None, **settings: str
    ) -> Server:
        workdir = tmp_path / f"server-{len(started)}"
        workdir.mkdir()
        if tls is not None:
            server = launch_tls(workdir, *tls, **settings)
        else:
            server = launch(workdir, *args, **settings)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server.process)


def launch_tls(
    workdir: Path, certfile: Path, keyfile: Path, trust: ssl.SSLContext, **kassa: str
) -> Server:
    """Like `launch`, for `kassa serve` with TLS files: it waits on https://…/healthz, which
    the client verifies with `trust`. `base_url` stays http://; tests swap the scheme."""
    port = free_port()
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    args = ["--tls-certfile", str(certfile), "--tls-keyfile", str(keyfile)]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [str(KASSA), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=workdir,
            env=clean_env(workdir, **kassa),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    server = Server(f"http://127.0.0.1:{port}", port, workdir, stdout_path, stderr_path, process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with httpx.Client(verify=trust, timeout=1.0) as client:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                pytest.fail(f"kassa serve (TLS) did not start:\n{server.stderr()[-4000:]}")
            try:
                if client.get(f"https://127.0.0.1:{port}/healthz").status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.2)


@pytest.fixture(scope="session")
def empty_pg_url() -> Iterator[str]:
    """A fresh, unmigrated PostgreSQL database (`kassa serve` migrates it)."""
    if not _pg_reachable():
        _unavailable("PostgreSQL is not reachable")
    name, url = _create_pg_database()
    yield url
    _drop_pg_database(name)


@pytest.fixture
def shared_redis_url() -> Iterator[tuple[str, str]]:
    """The shared Redis and a key prefix no other test run uses; the test's keys (and only
    those) are deleted afterwards."""
    host, port = SHARED_REDIS
    if not _redis_answers(host, port):
        _unavailable(f"Redis is not reachable at {host}:{port}")
    url = f"redis://{host}:{port}/0"
    prefix = f"kassa-test-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    asyncio.run(create_storage(url, prefix=prefix).reset())


class OwnRedis:
    """A `redis-server` of this test's own, without persistence, that can be killed and
    started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        assert self.process is None or self.process.poll() is not None
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if REDIS_SERVER is None:
        _unavailable("redis-server is not installed")
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()
