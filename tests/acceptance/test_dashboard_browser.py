"""The merchant's side in a real browser: a customer pays through checkout, a worker delivers
the events to the shop's webhook, then the merchant signs in to the dashboard, finds that
payment, refunds part of it, redelivers its checkout event (which the next worker run
delivers again, under the same webhook-id), and creates and revokes an API key."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import KASSA, clean_env, launch, stop
from tests.acceptance.test_checkout_browser import open_session, serve_shop
from tests.acceptance.test_lifecycle import register_and_login
from tests.browserkit import require_browser, run_script
from tests.webhooks import Receiver

pytestmark = pytest.mark.acceptance


def run_worker(workdir: Path) -> None:
    worker = subprocess.run(
        [str(KASSA), "worker", "--once"],
        cwd=workdir,
        env=clean_env(workdir, webhook_allow_private="true"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr


def test_a_merchant_refunds_and_redelivers_in_the_dashboard(tmp_path: Path) -> None:
    require_browser()
    receiver = Receiver().start()
    server = launch(tmp_path, webhook_allow_private="true")
    try:
        with server.client() as client:
            merchant = register_and_login(client)
            headers = merchant["headers"]
            hook = client.post(
                "/api/webhooks",
                json={"url": receiver.url, "events": ["checkout.session.completed"]},
                headers=headers,
            )
            assert hook.status_code == 201, hook.text
            with serve_shop() as shop:
                session = open_session(server, headers, shop)
                run_script(
                    "checkout.mjs",
                    {"PAY_URL": session["url"], "DECLINE_URL": "", "SUCCESS_PREFIX": shop},
                )
            paid = client.get(f"/api/checkout/sessions/{session['id']}", headers=headers).json()
            assert paid["status"] == "complete"
            run_worker(tmp_path)
            deadline = time.monotonic() + 10
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(receiver.requests) == 1

            output = run_script(
                "dashboard.mjs",
                {
                    "KASSA_URL": server.base_url,
                    "EMAIL": merchant["email"],
                    "PASSWORD": merchant["password"],
                    "PAYMENT_ID": paid["payment_id"],
                },
            )
            assert "refunded €4.00" in output
            assert "key revoked" in output
            secret = output.split("key ", 1)[1].split()[0]
            refused = client.get("/api/keys", headers={"Authorization": f"Bearer {secret}"})
            assert refused.status_code == 401  # revoked in the dashboard: refused everywhere
            payment = client.get(f"/api/payments/{paid['payment_id']}", headers=headers).json()
            assert payment["amount_refunded"] == 400
            assert payment["status"] == "partially_refunded"

            run_worker(tmp_path)
            deadline = time.monotonic() + 10
            while len(receiver.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            ids = [r.headers.get("webhook-id") for r in receiver.requests]
            assert len(ids) == 2
            assert ids[0] == ids[1]  # the same event, delivered again
    finally:
        stop(server.process)
        receiver.stop()
