"""The simulator's 3-D Secure page in a real browser (Debian's headless chromium driven by
playwright-core), against `kassa serve`: a person clicks "Complete" and the payment settles;
clicks "Fail" and it fails with `authentication_failed`; presses "Complete" in two tabs at
once and is charged once. Nothing the page loads comes from outside kassa, and its strict
policy (no script at all) leaves the browser nothing to complain about."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import Server
from tests.browserkit import run_script

pytestmark = pytest.mark.acceptance

THREE_DS = {"number": "4000002760003184", "exp_month": 12, "exp_year": 2099, "cvc": "123"}


def _user(client: httpx.Client) -> dict[str, str]:
    email = f"challenge-{os.urandom(6).hex()}@example.com"
    password = "correct horse battery"
    registered = client.post(
        "/api/auth/register", json={"name": "Shop", "email": email, "password": password}
    )
    assert registered.status_code == 201, registered.text
    login = client.post("/api/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _asking(client: httpx.Client, headers: dict[str, str], return_url: str) -> dict[str, Any]:
    created = client.post(
        "/api/payments",
        json={
            "amount": 2500,
            "currency": "EUR",
            "payment_method": "credit_card",
            "details": THREE_DS,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    processed = client.post(
        "/api/payments/process",
        json={"payment_id": created.json()["id"], "return_url": return_url},
        headers=headers,
    )
    body: dict[str, Any] = processed.json()
    assert body["status"] == "requires_action", body
    return body


def test_a_person_completes_fails_and_double_submits_the_challenge(
    server: Server, tmp_path: Path
) -> None:
    with server.client() as client:
        headers = _user(client)
        # The shop's page the customer comes back to: here, kassa's own health check.
        back = f"{server.base_url}/healthz"
        complete, fail, twice = (_asking(client, headers, back) for _ in range(3))
        for payment in (complete, fail, twice):
            assert payment["next_action"]["url"].startswith(server.base_url + "/simulator/3ds/")
        output = run_script(
            "challenge.mjs",
            {
                "KASSA_URL": server.base_url,
                "COMPLETE_URL": complete["next_action"]["url"],
                "FAIL_URL": fail["next_action"]["url"],
                "TWICE_URL": twice["next_action"]["url"],
                "SCREENSHOT": str(tmp_path / "challenge.png"),
            },
        )
        assert "challenge walked" in output

        def status(payment: dict[str, Any]) -> dict[str, Any]:
            got: dict[str, Any] = client.get(
                f"/api/payments/{payment['id']}", headers=headers
            ).json()
            return got

        assert status(complete)["status"] == "completed"
        assert (status(fail)["status"], status(fail)["failure_code"]) == (
            "failed",
            "authentication_failed",
        )
        assert status(twice)["status"] == "completed"
        events = client.get("/api/events?limit=100", headers=headers).json()["data"]
        completions = [
            e
            for e in events
            if e["type"] == "payment.completed" and e["data"]["object"]["id"] == twice["id"]
        ]
        assert len(completions) == 1  # one charge, one completion
        charges = client.get("/api/transactions?limit=100", headers=headers).json()["data"]
        twice_charges = [t for t in charges if t["payment_id"] == twice["id"]]
        assert [(t["type"], t["status"]) for t in twice_charges] == [("charge", "succeeded")]
    assert (tmp_path / "challenge.png").stat().st_size > 1000
