"""The checkout page over HTTP: a customer pays, is declined and retries, and the page
refuses cross-origin forms, a second use of a completed session, and an expired one."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kassa.checkout import repository
from tests.checkout import SHOP, card_form, form_of, open_session
from tests.conftest import Api, User, register_user


async def page(client: httpx.AsyncClient, session_id: str) -> httpx.Response:
    return await client.get(f"/checkout/{session_id}")


async def pay(
    client: httpx.AsyncClient, session_id: str, form: dict[str, str], **headers: str
) -> httpx.Response:
    return await client.post(f"/checkout/{session_id}", data=form, headers=headers)


async def payments_of(api: Api, user: User) -> list[dict[str, Any]]:
    response = await api.client.get("/api/transactions?limit=100", headers=user.headers)
    return [t for t in response.json()["data"] if t["type"] == "charge"]


async def test_the_page_shows_the_merchant_the_amount_and_a_labelled_card_form(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user, description="Two coffees")
    response = await page(api.client, session["id"])
    assert response.status_code == 200
    html = response.text
    assert "Test User" in html  # the merchant's name
    assert "€25.00" in html
    assert "Two coffees" in html
    for field in ("number", "expiry", "cvc", "holder_name"):
        assert f'<label for="{field}">' in html
        assert f'id="{field}"' in html
    assert "Apple Pay" in html
    assert f'href="{SHOP}/cart"' in html
    policy = response.headers["content-security-policy"]
    assert "script-src" not in policy
    assert "default-src 'none'" in policy
    assert f"form-action 'self' {SHOP}" in policy
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert f"Path=/checkout/{session['id']}" in cookie


async def test_amounts_follow_the_readers_language(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user, amount=123456, currency="EUR")
    german = await api.client.get(
        f"/checkout/{session['id']}", headers={"Accept-Language": "de-DE,de;q=0.9"}
    )
    assert "1.234,56\xa0€" in german.text
    yen = await open_session(api.client, user, amount=500, currency="JPY")
    assert "¥500" in (await page(api.client, yen["id"])).text


async def test_paying_with_a_good_card_completes_the_session_and_goes_to_the_shop(
    api: Api,
) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user, metadata={"order_id": "7"})
    form = form_of((await page(api.client, session["id"])).text)
    response = await pay(api.client, session["id"], {**form, **card_form()})
    assert response.status_code == 303
    assert response.headers["location"] == f"{SHOP}/thanks?session={session['id']}"

    got = await api.client.get(f"/api/checkout/sessions/{session['id']}", headers=user.headers)
    done = got.json()
    assert done["status"] == "complete"
    payment = await api.client.get(f"/api/payments/{done['payment_id']}", headers=user.headers)
    assert payment.json()["status"] == "completed"
    assert payment.json()["amount"] == 2500
    assert payment.json()["currency"] == "EUR"
    assert payment.json()["metadata"] == {"order_id": "7"}
    assert payment.json()["details"]["last4"] == "4242"

    events = await api.client.get(
        "/api/events?type=checkout.session.completed", headers=user.headers
    )
    [event] = events.json()["data"]
    assert event["data"]["object"]["id"] == session["id"]
    assert event["data"]["object"]["payment_id"] == done["payment_id"]
    assert event["data"]["object"]["status"] == "complete"

    again = await page(api.client, session["id"])
    assert "Paid" in again.text
    assert 'name="number"' not in again.text


async def test_a_wallet_pays_in_test_mode(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    response = await pay(
        api.client, session["id"], {**form, "method": "wallet", "wallet": "google_pay"}
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(SHOP)


async def test_a_decline_is_shown_and_a_retry_with_another_card_pays(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    declined = await pay(api.client, session["id"], {**form, **card_form("4000000000000002")})
    assert declined.status_code == 303
    assert declined.headers["location"] == f"/checkout/{session['id']}"
    shown = await page(api.client, session["id"])
    assert "Your card was declined" in shown.text
    retry_form = form_of(shown.text)
    assert retry_form["attempt"] == "1"
    state = await api.client.get(f"/api/checkout/sessions/{session['id']}", headers=user.headers)
    assert state.json()["status"] == "open"

    paid = await pay(api.client, session["id"], {**retry_form, **card_form()})
    assert paid.status_code == 303
    assert paid.headers["location"].startswith(SHOP)
    charges = await payments_of(api, user)
    assert sorted(c["status"] for c in charges) == ["failed", "succeeded"]


async def test_a_stale_form_for_a_declined_attempt_pays_nothing(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    await pay(api.client, session["id"], {**form, **card_form("4000000000000002")})
    # The same attempt again (a second tab, the back button): answered by its one payment.
    again = await pay(api.client, session["id"], {**form, **card_form()})
    assert again.status_code == 303
    assert again.headers["location"] == f"/checkout/{session['id']}"
    assert len(await payments_of(api, user)) == 1


async def test_a_double_submit_and_two_tabs_pay_once(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    answers = await asyncio.gather(
        *(pay(api.client, session["id"], {**form, **card_form()}) for _ in range(4))
    )
    assert {a.status_code for a in answers} <= {303, 409}
    assert any(a.headers.get("location", "").startswith(SHOP) for a in answers)
    charges = await payments_of(api, user)
    assert len(charges) == 1
    state = await api.client.get(f"/api/checkout/sessions/{session['id']}", headers=user.headers)
    assert state.json()["status"] == "complete"
    events = await api.client.get(
        "/api/events?type=checkout.session.completed", headers=user.headers
    )
    assert len(events.json()["data"]) == 1


async def test_a_second_use_of_a_completed_session_is_refused(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    await pay(api.client, session["id"], {**form, **card_form()})
    second = await pay(api.client, session["id"], {**form, **card_form("5555555555554444")})
    assert second.status_code == 409
    assert "takes no more payments" in second.text
    assert len(await payments_of(api, user)) == 1


async def test_a_form_from_another_origin_or_without_its_token_is_refused(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    sid = session["id"]
    attempts = [
        await pay(api.client, sid, {**card_form(), "attempt": "0"}),  # no token
        await pay(api.client, sid, {**form, **card_form(), "csrf": "0" * 64}),  # wrong token
        await pay(api.client, sid, {**form, **card_form()}, Origin="https://evil.example"),
        await pay(api.client, sid, {**form, **card_form()}, **{"Sec-Fetch-Site": "cross-site"}),
    ]
    # A browser on another site has no cookie either (SameSite=Lax): a fresh client.
    async with httpx.AsyncClient(
        transport=api.client._transport, base_url="http://kassa.test"
    ) as stranger:
        attempts.append(await pay(stranger, sid, {**form, **card_form()}))
    assert [a.status_code for a in attempts] == [403] * 5
    assert await payments_of(api, user) == []
    # Another session's token does not open this one.
    other = await open_session(api.client, user)
    other_form = form_of((await page(api.client, other["id"])).text)
    assert (await pay(api.client, sid, {**other_form, **card_form()})).status_code == 403


async def test_an_invalid_card_is_refused_on_the_page_without_echoing_it(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    response = await pay(
        api.client,
        session["id"],
        {**form, **card_form("4242424242424241", expiry="13/99", cvc="1")},
    )
    assert response.status_code == 422
    assert "Enter a valid card number." in response.text
    assert "4242424242424241" not in response.text
    assert 'aria-invalid="true"' in response.text
    assert await payments_of(api, user) == []


async def test_an_expired_session_shows_so_and_takes_no_payment(api: Api) -> None:
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    form = form_of((await page(api.client, session["id"])).text)
    sid = uuid.UUID(session["id"])
    past = datetime.now(UTC) - timedelta(seconds=1)
    db = api.container.db
    from sqlalchemy import update

    from kassa.checkout.models import CheckoutSession

    await db.execute(
        update(CheckoutSession).where(CheckoutSession.id == sid).values(expires_at=past)
    )
    assert (await repository.get_session(db, sid)) is not None
    shown = await page(api.client, session["id"])
    assert shown.status_code == 410
    assert "expired" in shown.text
    refused = await pay(api.client, session["id"], {**form, **card_form()})
    assert refused.status_code == 409
    state = await api.client.get(f"/api/checkout/sessions/{session['id']}", headers=user.headers)
    assert state.json()["status"] == "expired"
    assert await payments_of(api, user) == []


async def test_an_unknown_session_page_is_not_found(api: Api) -> None:
    for path in (str(uuid.uuid4()), "nope"):
        assert (await page(api.client, path)).status_code == 404


async def test_payment_forms_count_against_the_clients_rate_limit(api_factory: Any) -> None:
    api = await api_factory(rate_limit="6/minute")
    user = await register_user(api.client)  # 2 of the 6 (register, login)
    session = await open_session(api.client, user)  # 3
    form = form_of((await page(api.client, session["id"])).text)  # a GET: not counted
    tries = [
        await pay(api.client, session["id"], {**form, **card_form("4000000000000002")})
        for _ in range(4)
    ]
    assert [t.status_code for t in tries[:3]] == [303, 303, 303]
    refused = tries[3]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    # A person reads it: a page (kassa's stylesheet, no script), not a JSON problem.
    assert refused.headers["content-type"].startswith("text/html")
    assert refused.headers["content-security-policy"].startswith(
        "default-src 'none'; style-src 'self'"
    )
    assert "Too many requests" in refused.text
    assert "Nothing was charged" in refused.text
    assert f'href="/checkout/{session["id"]}"' in refused.text
