"""Lists and the audit log against `kassa serve` over HTTP: filters and cursors through a
real query string, and audit rows that name the socket's client address and the request id
the client sent."""

from __future__ import annotations

from tests.acceptance.conftest import Server
from tests.acceptance.test_lifecycle import card_payment, register_and_login


def test_lists_filters_and_cursors_over_http(server: Server) -> None:
    with server.client() as client:
        user = register_and_login(client)
        headers = user["headers"]
        made = []
        for amount, currency in ((100, "USD"), (200, "EUR"), (300, "USD")):
            body = {**card_payment(amount, currency), "metadata": {"order": str(amount)}}
            response = client.post("/api/payments", json=body, headers=headers)
            assert response.status_code == 201, response.text
            made.append(response.json()["id"])
        page = client.get("/api/payments", params={"limit": 2}, headers=headers).json()
        assert [p["id"] for p in page["data"]] == made[:0:-1]
        rest = client.get(
            "/api/payments", params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers
        ).json()
        assert [p["id"] for p in rest["data"]] == [made[0]]
        assert rest["has_more"] is False
        usd = client.get("/api/payments?currency=usd&metadata[order]=300", headers=headers)
        assert [p["id"] for p in usd.json()["data"]] == [made[2]]
        refused = client.get("/api/payments?currency=usd&currency=eur", headers=headers)
        assert refused.status_code == 422
        processed = client.post(
            "/api/payments/process", json={"payment_id": made[0]}, headers=headers
        )
        assert processed.json()["status"] == "completed"
        refund = client.post(
            f"/api/payments/{made[0]}/refund",
            json={"amount": 50},
            headers={**headers, "X-Request-ID": "acceptance-refund"},
        ).json()
        listed = client.get(f"/api/payments/{made[0]}/refunds", headers=headers).json()
        assert [r["id"] for r in listed["data"]] == [refund["id"]]
        assert client.get("/api/refunds", headers=headers).json()["data"][0]["id"] == refund["id"]

        events = client.get(
            "/api/audit-events", params={"action": "refund.created"}, headers=headers
        ).json()["data"]
        assert len(events) == 1
        assert events[0]["object_id"] == refund["id"]
        assert events[0]["ip"] == "127.0.0.1"
        assert events[0]["request_id"] == "acceptance-refund"
        assert events[0]["actor_id"] == user["id"]
