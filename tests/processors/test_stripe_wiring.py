"""KASSA_PROCESSOR=stripe as kassa builds it from its settings: one Stripe customer per
kassa user, remembered in kassa's database; settings that cannot work are refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kassa.app import create_app
from kassa.container import build_container
from kassa.processors.customers import DatabaseCustomerStore
from kassa.processors.stripe import StripeProcessor
from kassa.settings import SettingsError
from tests.conftest import card_details, completed_payment, make_settings, register_user
from tests.processors.conftest import STRIPE_TEST_KEY, LocalStripe


async def test_the_settings_build_a_stripe_connector_with_one_customer_per_user(
    database_url: str, localstripe_url: str
) -> None:
    settings = make_settings(
        database_url,
        processor="stripe",
        stripe_api_key=STRIPE_TEST_KEY,
        stripe_api_base=localstripe_url + "/",
    )
    container = build_container(settings)
    try:
        assert isinstance(container.processor, StripeProcessor)
        app = create_app(container=container)
        # Live mode reaches the configured processor; test mode is always the simulator.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://kassa.test",
            headers={"Kassa-Mode": "live"},
        ) as client:
            user = await register_user(client)
            first = await completed_payment(client, user, details=card_details())
            second = await completed_payment(client, user, amount=777, details=card_details())
        customer = await DatabaseCustomerStore(container.db, "stripe").get(user.id)
        assert customer is not None
        charges = await LocalStripe(localstripe_url).succeeded_charges(customer)
        assert sorted(c["amount"] for c in charges) == sorted([first["amount"], second["amount"]])
        assert {c["customer"] for c in charges} == {customer}
    finally:
        await container.aclose()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"processor": "stripe"}, "KASSA_STRIPE_API_KEY"),
        ({"stripe_api_base": "ftp://stripe.example"}, "KASSA_STRIPE_API_BASE"),
        ({"stripe_api_base": "http://127.0.0.1:1/v1?x"}, "KASSA_STRIPE_API_BASE"),
    ],
)
def test_stripe_settings_that_cannot_work_are_refused_in_one_line(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        make_settings("sqlite+aiosqlite:///unused.db", **overrides)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
