"""A live kassa for the generated clients: `kassa serve` and `kassa worker` as processes on
one SQLite database, once per test module, with loopback webhooks allowed so a receiver in
the test gets real, signed deliveries."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import KASSA, Server, clean_env, launch, stop

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = {"webhook_allow_private": "true", "rate_limit": "100000/minute"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("clients")
    server = launch(workdir, **SETTINGS)
    with (workdir / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [str(KASSA), "worker", "--interval", "1"],
            cwd=workdir,
            env=clean_env(workdir, **SETTINGS),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield server
    finally:
        stop(worker)
        stop(server.process)
