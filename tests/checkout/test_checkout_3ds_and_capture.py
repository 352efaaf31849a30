"""Checkout with cards that ask for 3-D Secure (the customer goes through kassa's challenge
page and back) and sessions that only authorize (manual capture)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from kassa.processors.simulator import SimulatorProcessor
from tests.checkout import SHOP, card_form, form_of, open_session
from tests.conftest import Api, User, register_user

BASE = "http://kassa.test"


async def kassa(api_factory: Any) -> Api:
    # The challenge pages live at KASSA_PUBLIC_URL; the test client's host is kassa.test.
    made: Api = await api_factory(public_url=BASE, processor=SimulatorProcessor(public_url=BASE))
    return made


async def pay(client: httpx.AsyncClient, session_id: str, number: str) -> httpx.Response:
    form = form_of((await client.get(f"/checkout/{session_id}")).text)
    return await client.post(f"/checkout/{session_id}", data={**form, **card_form(number)})


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def through_challenge(
    client: httpx.AsyncClient, answer: httpx.Response, button: str
) -> httpx.Response:
    """Follow the checkout's redirect to the challenge, press `button`, and come back."""
    assert answer.status_code == 303, answer.text
    challenge = answer.headers["location"]
    assert challenge.startswith(f"{BASE}/simulator/3ds/")
    page = await client.get(path_of(challenge))
    assert page.status_code == 200
    done = await client.post(f"{path_of(challenge)}/{button}")
    assert done.status_code == 303
    back = done.headers["location"]
    assert back.startswith(f"{BASE}/checkout/")
    assert "/return?" in back
    return await client.get(path_of(back))


async def session_state(api: Api, user: User, session_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/checkout/sessions/{session_id}", headers=user.headers)
    body: dict[str, Any] = response.json()
    return body


async def test_a_3ds_card_goes_through_the_challenge_and_on_to_the_shop(api_factory: Any) -> None:
    api = await kassa(api_factory)
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    back = await through_challenge(
        api.client, await pay(api.client, session["id"], "4000002760003184"), "complete"
    )
    # A page that refreshes to the shop (the challenge form's redirects may not leave kassa).
    assert back.status_code == 200
    target = f"{SHOP}/thanks?session={session['id']}"
    assert f'<meta http-equiv="refresh" content="0; url={target}">' in back.text
    assert f'href="{target}"' in back.text
    state = await session_state(api, user, session["id"])
    assert state["status"] == "complete"
    payment = await api.client.get(f"/api/payments/{state['payment_id']}", headers=user.headers)
    assert payment.json()["status"] == "completed"


async def test_a_failed_challenge_shows_why_and_the_customer_may_retry(api_factory: Any) -> None:
    api = await kassa(api_factory)
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    back = await through_challenge(
        api.client, await pay(api.client, session["id"], "4000002500003155"), "fail"
    )
    assert back.headers["location"] == f"/checkout/{session['id']}"
    shown = await api.client.get(back.headers["location"])
    assert "could not be authenticated" in shown.text
    assert (await session_state(api, user, session["id"]))["status"] == "open"
    retried = await pay(api.client, session["id"], "4242424242424242")
    assert retried.headers["location"].startswith(SHOP)


async def test_a_card_declined_after_authenticating_shows_the_decline(api_factory: Any) -> None:
    api = await kassa(api_factory)
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    back = await through_challenge(
        api.client, await pay(api.client, session["id"], "4000008400001629"), "complete"
    )
    shown = await api.client.get(back.headers["location"])
    assert "Your card was declined" in shown.text


async def test_a_session_left_at_the_challenge_offers_the_way_back_to_it(
    api_factory: Any,
) -> None:
    api = await kassa(api_factory)
    user = await register_user(api.client)
    session = await open_session(api.client, user)
    answer = await pay(api.client, session["id"], "4000000000003220")
    shown = await api.client.get(f"/checkout/{session['id']}")
    assert f'href="{answer.headers["location"]}"' in shown.text
    assert 'name="number"' not in shown.text  # no second payment while this one waits


async def test_a_manual_capture_session_completes_on_the_authorization(api_factory: Any) -> None:
    api = await kassa(api_factory)
    user = await register_user(api.client)
    session = await open_session(api.client, user, capture="manual")
    assert session["capture"] == "manual"
    paid = await pay(api.client, session["id"], "4242424242424242")
    assert paid.headers["location"].startswith(SHOP)
    state = await session_state(api, user, session["id"])
    assert state["status"] == "complete"
    payment = await api.client.get(f"/api/payments/{state['payment_id']}", headers=user.headers)
    assert payment.json()["status"] == "requires_capture"
    captured = await api.client.post(
        f"/api/payments/{state['payment_id']}/capture", json={}, headers=user.headers
    )
    assert captured.json()["status"] == "completed"
