"""Black-box: `kassa serve` and `kassa worker` as processes; a webhook registered over HTTP
receives the events of a payment, signed so that the `standardwebhooks` library verifies
them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.acceptance.conftest import KASSA, Server, clean_env, launch, stop
from tests.acceptance.test_lifecycle import card_payment, register_and_login
from tests.webhooks import Receiver

pytestmark = pytest.mark.acceptance


def test_loopback_webhooks_are_refused_by_default(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        for url in ("http://127.0.0.1:9/hooks", "http://localhost/hooks", "http://10.0.0.1/"):
            response = client.post(
                "/api/webhooks", json={"url": url, "events": ["*"]}, headers=user["headers"]
            )
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "webhook_url_refused"


def test_a_worker_delivers_signed_events_over_http(tmp_path: Path) -> None:
    receiver = Receiver().start()
    server = launch(tmp_path, webhook_allow_private="true")
    try:
        with server.client() as client:
            user = register_and_login(client)
            hook = client.post(
                "/api/webhooks",
                json={"url": receiver.url, "events": ["payment.created", "payment.completed"]},
                headers=user["headers"],
            )
            assert hook.status_code == 201, hook.text
            payment = client.post("/api/payments", json=card_payment(), headers=user["headers"])
            processed = client.post(
                "/api/payments/process",
                json={"payment_id": payment.json()["id"]},
                headers=user["headers"],
            )
            assert processed.json()["status"] == "completed"
            events = client.get("/api/events", headers=user["headers"]).json()["data"]

            worker = subprocess.run(
                [str(KASSA), "worker", "--once"],
                cwd=tmp_path,
                env=clean_env(tmp_path, webhook_allow_private="true"),
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert worker.returncode == 0, worker.stderr
            deadline = time.monotonic() + 10
            while len(receiver.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)

            verifier = Webhook(hook.json()["secret"])
            received = [verifier.verify(r.body, r.headers) for r in receiver.requests]
            assert sorted(p["type"] for p in received) == ["payment.completed", "payment.created"]
            wanted = {e["id"]: e for e in events if e["type"] != "payment.processing"}
            assert {p["id"]: p for p in received} == wanted
            assert received[0]["data"]["object"]["details"]["last4"] == "1111"
            for request in receiver.requests:
                assert b"4111111111111111" not in request.body

            attempts = client.get(
                f"/api/webhooks/{hook.json()['id']}/deliveries", headers=user["headers"]
            ).json()["data"]
            assert [a["status"] for a in attempts] == ["succeeded", "succeeded"]
    finally:
        stop(server.process)
        receiver.stop()
