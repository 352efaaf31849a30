from __future__ import annotations

from tests.conftest import Api, completed_payment, register_user


async def test_lifecycle_register_to_partial_refund(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    refund = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 300}, headers=user.headers
    )
    assert refund.status_code == 201, refund.text
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["status"] == "partially_refunded"
    assert status.json()["amount_refunded"] == 300
    txns = await api.client.get("/api/transactions", headers=user.headers)
    assert [t["type"] for t in txns.json()["data"]] == ["refund", "charge"]
