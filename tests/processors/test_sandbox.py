"""`make sandbox`, started the way the README says: kassa with KASSA_PROCESSOR=stripe against
localstripe (deploy/localstripe/kassa_localstripe.py) on loopback, no containers. A card
payment completes and is refunded, and localstripe holds the charge and the refund."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import free_port
from tests.conftest import card_details

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 90.0

pytestmark = pytest.mark.acceptance


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make sandbox exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"make sandbox did not serve {url}:\n{log.read_text()}")


def test_make_sandbox_completes_and_refunds_a_card_payment_through_localstripe(
    tmp_path: Path,
) -> None:
    port, stripe_port = free_port(), free_port()
    log = tmp_path / "sandbox.log"
    # The caller's environment (make and uv need it) without any KASSA_* setting of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env["SANDBOX_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/sandbox.db"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "-s", "sandbox", f"PORT={port}", f"LOCALSTRIPE_PORT={stripe_port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, f"{base}/healthz", log)
        with httpx.Client(base_url=base, timeout=30) as client:
            email, password = "sandbox@example.com", "sandbox password 1"
            registered = client.post(
                "/api/auth/register", json={"name": "S", "email": email, "password": password}
            )
            assert registered.status_code == 201, registered.text
            login = client.post("/api/auth/login", json={"email": email, "password": password})
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            # Live mode: the configured processor (test mode is always the simulator).
            client.headers["Kassa-Mode"] = "live"
            created = client.post(
                "/api/payments",
                json={
                    "amount": 4200,
                    "currency": "EUR",
                    "payment_method": "credit_card",
                    "details": card_details(),
                },
            )
            assert created.status_code == 201, created.text
            payment_id = created.json()["id"]
            processed = client.post("/api/payments/process", json={"payment_id": payment_id})
            assert processed.status_code == 200, processed.text
            assert processed.json()["status"] == "completed", processed.json()
            refund = client.post(f"/api/payments/{payment_id}/refund", json={"amount": 1200})
            assert refund.status_code == 201, refund.text
            assert refund.json()["status"] == "succeeded"
        # What localstripe itself holds (a fresh one: only this payment).
        stripe = httpx.Client(
            base_url=f"http://127.0.0.1:{stripe_port}",
            headers={"Authorization": "Bearer sk_test_localstripe_sandbox"},
        )
        charges = stripe.get("/v1/charges", params={"limit": 100}).json()["data"]
        assert [(c["amount"], c["currency"], c["status"]) for c in charges] == [
            (4200, "eur", "succeeded")
        ]
        refunds = stripe.get("/v1/refunds", params={"limit": 100}).json()["data"]
        assert [r["amount"] for r in refunds] == [1200]
        stripe.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Ctrl-C (or SIGTERM) stops both servers. make is only the group's leader: wait for
    # every process of the group (the script, localstripe, kassa) to be gone before looking.
    _wait_group_gone(process.pid)
    assert not _listening(port)
    assert not _listening(stripe_port)


def _wait_group_gone(group: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the sandbox's processes were still running {timeout:g} s after SIGTERM")
