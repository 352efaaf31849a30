"""Black-box acceptance: `kassa serve` as a process, driven over real HTTP."""

from __future__ import annotations

import json
import secrets
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import Server, launch, stop

pytestmark = pytest.mark.acceptance

CARD = "4111111111111111"
CVC = "987"


def register_and_login(client: httpx.Client) -> dict[str, Any]:
    email = f"acc-{uuid.uuid4().hex[:12]}@example.com"
    password = "acceptance " + secrets.token_hex(8)
    registered = client.post(
        "/api/auth/register", json={"name": "Sam Cardholder", "email": email, "password": password}
    )
    assert registered.status_code == 201, registered.text
    login = client.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return {
        "id": registered.json()["id"],
        "email": email,
        "password": password,
        "tokens": tokens,
        "headers": {"Authorization": f"Bearer {tokens['access_token']}"},
    }


def card_payment(amount: int = 2500, currency: str = "USD") -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": currency,
        "payment_method": "credit_card",
        "details": {
            "number": CARD,
            "exp_month": 12,
            "exp_year": 2099,
            "cvc": CVC,
            "holder_name": "Sam Cardholder",
        },
        "description": "acceptance",
    }


def log_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for raw in server.stdout().splitlines():
        if raw.strip():
            value = json.loads(raw)
            assert isinstance(value, dict), raw
            lines.append(value)
    return lines


def settled_log_lines(server: Server, last_request_id: str) -> list[dict[str, Any]]:
    """The log so far, once the access line of `last_request_id` is written (the server
    writes it just after the response, so a client can be a little ahead of the log)."""
    deadline = time.monotonic() + 10
    while True:
        lines = log_lines(server)
        if any(line.get("request_id") == last_request_id for line in lines):
            return lines
        assert time.monotonic() < deadline, f"no log line for request {last_request_id}"
        time.sleep(0.05)


def test_payment_lifecycle_over_http(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        headers = user["headers"]
        assert user["tokens"]["token_type"] == "bearer"
        assert user["tokens"]["expires_in"] > 0
        assert user["tokens"]["refresh_token"]

        profile = client.get("/api/auth/profile", headers=headers)
        assert profile.status_code == 200
        assert profile.json()["id"] == user["id"]
        assert profile.json()["email"] == user["email"]
        assert not {"password", "password_hash"} & profile.json().keys()

        created = client.post("/api/payments", json=card_payment(2500), headers=headers)
        assert created.status_code == 201, created.text
        payment = created.json()
        assert payment["status"] == "pending"
        assert payment["details"]["brand"] == "visa"
        assert payment["details"]["last4"] == "1111"
        assert CARD not in created.text
        assert "cvc" not in payment["details"]

        processed = client.post(
            "/api/payments/process", json={"payment_id": payment["id"]}, headers=headers
        )
        assert processed.status_code == 200, processed.text
        assert processed.json()["status"] == "completed"

        status = client.get(f"/api/payments/{payment['id']}/status", headers=headers)
        assert status.status_code == 200
        assert status.json()["status"] == "completed"
        assert status.json()["amount"] == 2500
        assert status.json()["amount_refunded"] == 0
        assert status.json()["currency"] == "USD"

        partial = client.post(
            f"/api/payments/{payment['id']}/refund",
            json={"amount": 1000, "reason": "one item returned"},
            headers=headers,
        )
        assert partial.status_code == 201, partial.text
        assert partial.json()["amount"] == 1000
        assert partial.json()["status"] == "succeeded"
        status = client.get(f"/api/payments/{payment['id']}/status", headers=headers).json()
        assert (status["status"], status["amount_refunded"]) == ("partially_refunded", 1000)

        rest = client.post(f"/api/payments/{payment['id']}/refund", headers=headers)
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"] == 1500
        status = client.get(f"/api/payments/{payment['id']}/status", headers=headers).json()
        assert (status["status"], status["amount_refunded"]) == ("refunded", 2500)

        again = client.post(f"/api/payments/{payment['id']}/refund", headers=headers)
        assert again.status_code == 409
        assert again.json()["code"] == "invalid_state"

        listing = client.get("/api/transactions", headers=headers)
        assert listing.status_code == 200
        data = listing.json()["data"]
        assert [t["type"] for t in data] == ["refund", "refund", "charge"]
        assert [t["amount"] for t in data] == [1500, 1000, 2500]
        assert {t["payment_id"] for t in data} == {payment["id"]}
        assert listing.json()["has_more"] is False


def test_pending_payment_is_canceled_over_http(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        created = client.post("/api/payments", json=card_payment(700), headers=user["headers"])
        assert created.status_code == 201
        payment_id = created.json()["id"]
        canceled = client.post(f"/api/payments/{payment_id}/cancel", headers=user["headers"])
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        process = client.post(
            "/api/payments/process", json={"payment_id": payment_id}, headers=user["headers"]
        )
        assert process.status_code == 409
        assert process.json()["code"] == "invalid_state"


def test_another_users_payment_is_404_over_http(server: Server) -> None:
    with server.client() as client:
        owner = register_and_login(client)
        other = register_and_login(client)
        created = client.post("/api/payments", json=card_payment(900), headers=owner["headers"])
        payment_id = created.json()["id"]
        attempts = [
            client.get(f"/api/payments/{payment_id}", headers=other["headers"]),
            client.get(f"/api/payments/{payment_id}/status", headers=other["headers"]),
            client.post(f"/api/payments/{payment_id}/cancel", headers=other["headers"]),
            client.post(
                "/api/payments/process", json={"payment_id": payment_id}, headers=other["headers"]
            ),
        ]
        for response in attempts:
            assert response.status_code == 404, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
        still_pending = client.get(f"/api/payments/{payment_id}", headers=owner["headers"])
        assert still_pending.json()["status"] == "pending"


def test_api_responses_carry_request_id_and_ratelimit_headers(server: Server) -> None:
    with server.client() as client:
        echoed = client.get("/api/auth/profile", headers={"X-Request-ID": "acceptance-1"})
        generated = client.get("/healthz", headers={"X-Request-ID": "bad id"})
    assert echoed.status_code == 401
    assert echoed.headers["x-request-id"] == "acceptance-1"
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= echoed.headers.keys()
    assert generated.headers["x-request-id"] != "bad id"
    assert "ratelimit-limit" not in generated.headers


def test_readyz_and_metrics_over_http(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        client.post("/api/payments", json=card_payment(300), headers=user["headers"])
        ready = client.get("/readyz")
        metrics = client.get("/metrics")
    assert ready.status_code == 200
    assert metrics.status_code == 200
    names = {f.name for f in text_string_to_metric_families(metrics.text)}
    assert {"http_requests", "http_request_duration_seconds", "kassa_payments"} <= names
    assert CARD not in metrics.text


def test_server_stdout_is_only_json_lines(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        client.post(
            "/api/payments",
            json=card_payment(400),
            headers={**user["headers"], "X-Request-ID": "acceptance-json-1"},
        )
    lines = settled_log_lines(server, "acceptance-json-1")
    assert any(line.get("event") == "request" for line in lines)


def test_every_request_log_line_carries_a_request_id(server: Server) -> None:
    with server.client() as client:
        client.get("/api/auth/profile", headers={"X-Request-ID": "acceptance-log-1"})
    lines = settled_log_lines(server, "acceptance-log-1")
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests
    assert all(line.get("request_id") for line in requests)
    assert any(line["request_id"] == "acceptance-log-1" for line in requests)


def test_server_logs_never_hold_card_data_or_secrets(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        created = client.post("/api/payments", json=card_payment(500), headers=user["headers"])
        client.post(
            "/api/payments/process",
            json={"payment_id": created.json()["id"]},
            headers=user["headers"],
        )
        bad = card_payment(500)
        bad["details"]["exp_year"] = 2001
        client.post(
            "/api/payments",
            json=bad,
            headers={**user["headers"], "X-Request-ID": "acceptance-secrets-1"},
        )
    settled_log_lines(server, "acceptance-secrets-1")
    out = server.stdout()
    assert CARD not in out
    assert user["password"] not in out
    assert user["tokens"]["access_token"] not in out
    assert user["tokens"]["refresh_token"] not in out
    for line in log_lines(server):
        assert CVC not in [str(v) for v in line.values()]
    for secret_file in ("kassa.jwt.key", "kassa.vault.keys"):
        path = Path(server.workdir) / secret_file
        if path.exists():
            for value in path.read_text().split():
                assert value not in out, secret_file


def test_server_writes_nothing_to_stderr(server: Server) -> None:
    with server.client() as client:
        client.get("/healthz")
        client.get("/api/nowhere", headers={"X-Request-ID": "acceptance-stderr-1"})
    settled_log_lines(server, "acceptance-stderr-1")
    assert server.stderr() == ""


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    server = launch(tmp_path)
    try:
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after a graceful shutdown, so the exit reads as SIGTERM.
        assert server.process.wait(timeout=15) in {0, -signal.SIGTERM}
    finally:
        stop(server.process)
    assert server.stderr() == ""
    events = [line["event"] for line in log_lines(server)]
    assert "Application shutdown complete." in events


def test_metrics_are_aggregated_over_all_workers(tmp_path: Path) -> None:
    server = launch(tmp_path, "--workers", "2")
    try:
        with server.client() as client:
            # New connections let the kernel hand requests to either worker.
            for _ in range(20):
                with server.client() as fresh:
                    assert fresh.get("/api/auth/profile").status_code == 401
            text = client.get("/metrics").text
    finally:
        stop(server.process)
    total = sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "http_requests_total"
        and s.labels.get("route") == "/api/auth/profile"
        and s.labels.get("status") == "401"
    )
    assert total == 20
    assert server.stderr() == ""
