"""A live kassa for the generated clients: `kassa serve` and `kassa worker` as processes on
one SQLite database, once per test module, with loopback webhooks allowed so a receiver in
the test gets real, signed deliveries."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kassa.settings import Settings
from tests.acceptance.conftest import KASSA, Server, clean_env, launch, stop
from tests.acceptance.test_lifecycle import card_payment, register_and_login
from tests.webhooks import Receiver

ROOT = Path(__file__).resolve().parent.parent.parent
# Loopback webhooks for the receivers in the tests; no rate limit (per address, user or key)
# in the way of the walks; the cheapest password hashing the settings allow, where they have
# Argon2 cost settings.
SETTINGS = {
    "webhook_allow_private": "true",
    "rate_limit": "100000/minute",
    "user_rate_limit": "100000/minute",
    "key_rate_limit_test": "100000/minute",
}
if "argon2_memory_kib" in Settings.model_fields:
    SETTINGS |= {"argon2_memory_kib": "8", "argon2_time_cost": "1", "argon2_parallelism": "1"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("clients")
    server = launch(workdir, extra_env={f"KASSA_{k.upper()}": v for k, v in SETTINGS.items()})
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


def readme_examples(language: str) -> list[str]:
    """The code blocks in `language` of the README's "Client libraries" section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Client libraries\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"no {language} example in the README's Client libraries section"
    return blocks


@dataclass
class Delivery:
    secret: str
    body: bytes
    headers: dict[str, str]


def a_real_delivery(server: Server) -> Delivery:
    """A new merchant's endpoint on a loopback receiver, and the `payment.completed` event that
    `kassa worker` delivers to it for a payment processed over HTTP."""
    receiver = Receiver().start()
    try:
        with server.client() as client:
            user = register_and_login(client)
            hook = client.post(
                "/api/webhooks",
                json={"url": receiver.url, "events": ["payment.completed"]},
                headers=user["headers"],
            )
            assert hook.status_code == 201, hook.text
            payment = client.post("/api/payments", json=card_payment(), headers=user["headers"])
            processed = client.post(
                "/api/payments/process",
                json={"payment_id": payment.json()["id"]},
                headers=user["headers"],
            )
            assert processed.json()["status"] == "completed", processed.text
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "kassa worker delivered nothing"
        received = receiver.requests[0]
        return Delivery(hook.json()["secret"], received.body, received.headers)
    finally:
        receiver.stop()
