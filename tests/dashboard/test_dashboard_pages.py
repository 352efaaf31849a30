"""The merchant dashboard over HTTP: sign-in with a cookie session, the payments list and a
payment's page, a partial refund (once, however often submitted), webhooks, sign-out that
revokes, and forms refused without their token or from another origin."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx

from kassa.vault.crypto import Sealed, Vault
from kassa.webhooks.service import secret_context
from tests.conftest import (
    Api,
    User,
    card_details,
    completed_payment,
    create_payment,
    register_user,
)

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_KEY = re.compile(r'name="key" value="([0-9a-f]{32})"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, user: User) -> httpx.Response:
    page = await client.get("/dashboard/login")
    assert page.status_code == 200
    return await client.post(
        "/dashboard/login",
        data={"csrf": csrf_of(page.text), "email": user.email, "password": user.password},
    )


def browser(api: Api) -> httpx.AsyncClient:
    """Another browser: its own cookie jar on the same app."""
    return httpx.AsyncClient(transport=api.client._transport, base_url="http://kassa.test")


async def test_sign_in_sets_a_guarded_cookie_and_shows_the_payments(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=123456, currency="EUR")
    async with browser(api) as merchant:
        assert (await merchant.get("/dashboard/payments")).headers["location"] == (
            "/dashboard/login"
        )
        signed = await sign_in(merchant, user)
        assert signed.status_code == 303
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith("kassa_dashboard=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/dashboard" in cookie
        listed = await merchant.get("/dashboard/payments")
        assert listed.status_code == 200
        assert "€1,234.56" in listed.text
        assert payment["id"] in listed.text
        assert "script-src" not in listed.headers["content-security-policy"]


async def test_the_cookie_is_secure_outside_development(api_factory: Any) -> None:
    api = await api_factory(env="test")
    user = await register_user(api.client)
    async with browser(api) as merchant:
        signed = await sign_in(merchant, user)
        assert all("Secure" in c for c in signed.headers.get_list("set-cookie"))


async def test_a_wrong_password_is_refused_on_the_page(api: Api) -> None:
    user = await register_user(api.client)
    async with browser(api) as merchant:
        page = await merchant.get("/dashboard/login")
        wrong = await merchant.post(
            "/dashboard/login",
            data={"csrf": csrf_of(page.text), "email": user.email, "password": "not it at all"},
        )
        assert wrong.status_code == 401
        assert "not right" in wrong.text
        assert "kassa_dashboard=" not in wrong.headers.get("set-cookie", "")


async def test_search_by_id_opens_the_payment_and_its_timeline(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    other = await register_user(api.client)
    theirs = await completed_payment(api.client, other)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        found = await merchant.get("/dashboard/payments", params={"id": payment["id"]})
        assert found.headers["location"] == f"/dashboard/payments/{payment['id']}"
        shown = await merchant.get(found.headers["location"])
        assert "payment.created" in shown.text
        assert "payment.completed" in shown.text
        assert "$10.50" in shown.text
        for wanted in (theirs["id"], "nope"):
            assert (
                await merchant.get("/dashboard/payments", params={"id": wanted})
            ).status_code == 404
        assert (await merchant.get(f"/dashboard/payments/{theirs['id']}")).status_code == 404


async def test_a_partial_refund_is_made_once_however_often_it_is_submitted(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=2500, currency="EUR")
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get(f"/dashboard/payments/{payment['id']}")
        key = _KEY.search(page.text)
        assert key is not None
        form = {"csrf": csrf_of(page.text), "key": key.group(1), "amount": "4.00"}
        path = f"/dashboard/payments/{payment['id']}/refund"
        answers = await asyncio.gather(*(merchant.post(path, data=form) for _ in range(3)))
        assert {a.status_code for a in answers} == {303}
        after = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
        assert after.json()["amount_refunded"] == 400
        assert after.json()["status"] == "partially_refunded"
        shown = await merchant.get(f"/dashboard/payments/{payment['id']}?notice=refunded")
        assert "Refund created." in shown.text
        assert "refund.created" in shown.text
        too_much = await merchant.post(path, data={**form, "key": "f" * 32, "amount": "100.00"})
        assert too_much.status_code == 422
        bad = await merchant.post(path, data={**form, "key": "e" * 32, "amount": "1.005"})
        assert bad.status_code == 422


async def test_forms_without_their_token_or_from_another_origin_are_refused(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get(f"/dashboard/payments/{payment['id']}")
        token = csrf_of(page.text)
        path = f"/dashboard/payments/{payment['id']}/refund"
        refused = [
            await merchant.post(path, data={"amount": "1.00", "key": "a" * 32}),
            await merchant.post(path, data={"csrf": "0" * 64, "amount": "1.00", "key": "b" * 32}),
            await merchant.post(
                path,
                data={"csrf": token, "amount": "1.00", "key": "c" * 32},
                headers={"Origin": "https://evil.example"},
            ),
            await merchant.post(
                path,
                data={"csrf": token, "amount": "1.00", "key": "d" * 32},
                headers={"Sec-Fetch-Site": "cross-site"},
            ),
        ]
        assert [r.status_code for r in refused] == [403] * 4
    after = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert after.json()["amount_refunded"] == 0


async def test_a_pending_payment_can_be_canceled(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get(f"/dashboard/payments/{payment['id']}")
        key = _KEY.search(page.text)
        assert key is not None
        canceled = await merchant.post(
            f"/dashboard/payments/{payment['id']}/cancel",
            data={"csrf": csrf_of(page.text), "key": key.group(1)},
        )
        assert canceled.status_code == 303
    after = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert after.json()["status"] == "canceled"
    audited = await api.client.get(
        "/api/audit-events", params={"action": "payment.cancel_requested"}, headers=user.headers
    )
    [event] = audited.json()["data"]
    assert (event["actor_type"], event["actor_id"]) == ("user", user.id)
    assert (event["object_id"], event["details"]["status_was"]) == (payment["id"], "pending")


async def test_signing_out_revokes_the_session_everywhere(api: Api) -> None:
    user = await register_user(api.client)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        stolen = merchant.cookies.get("kassa_dashboard")
        page = await merchant.get("/dashboard/payments")
        out = await merchant.post("/dashboard/logout", data={"csrf": csrf_of(page.text)})
        assert out.headers["location"] == "/dashboard/login?notice=signed_out"
    async with browser(api) as thief:
        thief.cookies.set("kassa_dashboard", str(stolen), path="/dashboard")
        again = await thief.get("/dashboard/payments")
        assert again.status_code == 303
        assert again.headers["location"] == "/dashboard/login"


async def test_webhooks_are_added_with_the_secret_shown_once_and_redelivered(
    api_factory: Any,
) -> None:
    api = await api_factory(webhook_allow_private=True)
    user = await register_user(api.client)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get("/dashboard/webhooks")
        added = await merchant.post(
            "/dashboard/webhooks",
            data={"csrf": csrf_of(page.text), "url": "http://127.0.0.1:9/hook", "events": "*"},
        )
        assert added.status_code == 200
        assert re.search(r"whsec_[A-Za-z0-9+/=]+", added.text)
        listed = await merchant.get("/dashboard/webhooks")
        assert "http://127.0.0.1:9/hook" in listed.text
        assert "whsec_" not in listed.text
        payment = await completed_payment(api.client, user)
        events = await api.client.get("/api/events", headers=user.headers)
        event_id = next(
            e["id"] for e in events.json()["data"] if e["data"]["object"]["id"] == payment["id"]
        )
        redelivered = await merchant.post(
            f"/dashboard/events/{event_id}/redeliver",
            data={"csrf": csrf_of(listed.text), "back": "//evil.example/x"},
        )
        assert redelivered.status_code == 303
        assert redelivered.headers["location"] == "/dashboard/webhooks?notice=redelivered"


async def test_an_api_key_is_created_shown_once_and_revoked(api: Api) -> None:
    user = await register_user(api.client)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get("/dashboard/keys")
        made = await merchant.post(
            "/dashboard/keys",
            data={
                "csrf": csrf_of(page.text),
                "name": "Shop backend",
                "mode": "test",
                "scope_checkout": "on",
                "scope_read": "on",
            },
        )
        assert made.status_code == 200
        found = re.search(r"sk_test_[A-Za-z0-9_-]+", made.text)
        assert found is not None
        secret = found.group(0)
        key = {"Authorization": f"Bearer {secret}"}
        works = await api.client.get("/api/checkout/sessions/" + str(uuid.uuid4()), headers=key)
        assert works.status_code == 404  # authenticated, read scope: just nothing there
        listed = await merchant.get("/dashboard/keys")
        assert secret not in listed.text
        assert "checkout, read" in listed.text
        key_id = (await api.client.get("/api/keys", headers=user.headers)).json()["data"][0]["id"]
        revoked = await merchant.post(
            f"/dashboard/keys/{key_id}/revoke", data={"csrf": csrf_of(listed.text)}
        )
        assert revoked.headers["location"] == "/dashboard/keys?notice=key_revoked"
        gone = await api.client.get("/api/checkout/sessions/" + str(uuid.uuid4()), headers=key)
        assert gone.status_code == 401
        bad = await merchant.post(
            "/dashboard/keys", data={"csrf": csrf_of(listed.text), "name": ""}
        )
        assert bad.status_code == 422


async def test_the_payments_list_takes_the_list_filters(api: Api) -> None:
    user = await register_user(api.client)
    euros = await completed_payment(api.client, user, amount=2500, currency="EUR")
    dollars = await completed_payment(api.client, user, amount=990, currency="USD")
    declined = await create_payment(api.client, user, details={**card_details("4000000000000002")})
    await api.client.post(
        "/api/payments/process", json={"payment_id": declined["id"]}, headers=user.headers
    )
    async with browser(api) as merchant:
        await sign_in(merchant, user)

        async def listed(**query: str) -> str:
            page = await merchant.get("/dashboard/payments", params=query)
            assert page.status_code == 200
            return page.text

        failed = await listed(status="failed")
        assert declined["id"][:8] in failed
        assert euros["id"][:8] not in failed
        euro = await listed(currency="eur", amount_from="20.00", amount_to="30")
        assert euros["id"][:8] in euro
        assert dollars["id"][:8] not in euro
        assert 'value="eur"' in euro or 'value="EUR"' in euro
        nothing = await listed(currency="EUR", amount_from="30.00")
        assert euros["id"][:8] not in nothing
        today = await listed(created_from="2000-01-01", method="credit_card")
        assert dollars["id"][:8] in today


async def test_the_audit_log_shows_the_dashboards_own_actions(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get(f"/dashboard/payments/{payment['id']}")
        key = _KEY.search(page.text)
        assert key is not None
        await merchant.post(
            f"/dashboard/payments/{payment['id']}/refund",
            data={"csrf": csrf_of(page.text), "key": key.group(1), "amount": "1.00"},
        )
        shown = await merchant.get(f"/dashboard/payments/{payment['id']}")
        assert "$1.00" in shown.text  # in the refunds table
        audit = await merchant.get("/dashboard/audit")
        assert audit.status_code == 200
        assert "refund.created" in audit.text
        assert "login" in audit.text


async def test_rotating_a_webhook_secret_signs_with_the_new_one(api_factory: Any) -> None:
    api = await api_factory(webhook_allow_private=True)
    user = await register_user(api.client)
    async with browser(api) as merchant:
        await sign_in(merchant, user)
        page = await merchant.get("/dashboard/webhooks")
        added = await merchant.post(
            "/dashboard/webhooks",
            data={"csrf": csrf_of(page.text), "url": "http://127.0.0.1:9/hook", "events": "*"},
        )
        first = re.search(r"whsec_[A-Za-z0-9+/=]+", added.text)
        assert first is not None
        endpoint_id = (await api.client.get("/api/webhooks", headers=user.headers)).json()["data"][
            0
        ]["id"]
        rotated = await merchant.post(
            f"/dashboard/webhooks/{endpoint_id}/rotate", data={"csrf": csrf_of(added.text)}
        )
        second = re.search(r"whsec_[A-Za-z0-9+/=]+", rotated.text)
        assert second is not None
        assert second.group(0) != first.group(0)
        endpoint = await api.container.webhooks.get(
            uuid.UUID(user.id), uuid.UUID(endpoint_id), livemode=False
        )
        sealed = Sealed(endpoint.secret_key_id, endpoint.secret_sealed)
        vault = Vault(api.container.settings.secrets.vault_keys)
        opened = vault.decrypt(sealed, context=secret_context(endpoint.id))
        assert opened == second.group(0)
        audit = await merchant.get("/dashboard/audit")
        assert "webhook_endpoint.secret_rotated" in audit.text


async def test_forms_over_the_clients_limit_get_a_page_with_the_way_back(
    api_factory: Any,
) -> None:
    api = await api_factory(rate_limit="5/minute")
    user = await register_user(api.client)  # 2 of the 5 (register, login)
    payment = await create_payment(api.client, user)  # 3
    async with browser(api) as merchant:
        await sign_in(merchant, user)  # 4 (the sign-in form)
        page = await merchant.get(f"/dashboard/payments/{payment['id']}")  # a GET: not counted
        form = {"csrf": csrf_of(page.text), "key": "e" * 32}
        path = f"/dashboard/payments/{payment['id']}/cancel"
        answers = [await merchant.post(path, data=form) for _ in range(2)]
    assert [a.status_code for a in answers] == [303, 429]
    refused = answers[1]
    assert refused.headers["content-type"].startswith("text/html")
    assert int(refused.headers["retry-after"]) > 0
    assert "Too many requests" in refused.text
    assert "Nothing was changed" in refused.text
    assert 'href="/dashboard"' in refused.text
