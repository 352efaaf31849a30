"""Webhook endpoints: create (the secret shown once), list, get, delete; strict bodies, URL
rules and the SSRF guard at creation; 404 for anything not the caller's."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from kassa.errors import ValidationFailed
from kassa.webhooks.service import MAX_ENDPOINTS_PER_USER, WebhookService
from tests.conftest import Api, register_user
from tests.payments import assert_invalid, assert_problem, dump_database
from tests.webhooks import FakeResolver, MovableClock, create_webhook

pytestmark = pytest.mark.usefixtures("clean_webhooks")
ENDPOINT_KEYS = {"id", "url", "events", "status", "disabled_at", "livemode", "created_at"}
PUBLIC_URL = "https://hooks.example.com/kassa?team=payments"


@pytest.fixture
async def public(resolver_api: Any) -> Api:
    """Private networks refused (the default), with a DNS where hooks.example.com is public."""
    made: Api = await resolver_api(
        FakeResolver(
            {
                "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
                "rebind.example.com": ["93.184.215.14", "127.0.0.1"],
                "metadata.example.com": ["169.254.169.254"],
                "intranet.example.com": ["10.20.30.40"],
                "localhost": ["::1", "127.0.0.1"],
            }
        ),
        MovableClock(),
    )
    return made


async def test_create_shows_the_secret_once(public: Api) -> None:
    user = await register_user(public.client)
    created = await create_webhook(
        public.client, user, PUBLIC_URL, ["payment.completed", "refund.created"]
    )
    assert set(created) == ENDPOINT_KEYS | {"secret"}
    assert created["url"] == PUBLIC_URL
    assert created["events"] == ["payment.completed", "refund.created"]
    assert created["status"] == "enabled"
    assert created["disabled_at"] is None
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    listed = await public.client.get("/api/webhooks", headers=user.headers)
    assert listed.status_code == 200
    [item] = listed.json()["data"]
    assert set(item) == ENDPOINT_KEYS
    assert item == {k: v for k, v in created.items() if k != "secret"}
    one = await public.client.get(f"/api/webhooks/{created['id']}", headers=user.headers)
    assert one.json() == item
    for response in (listed, one):
        assert secret.removeprefix("whsec_") not in response.text


async def test_the_secret_is_not_stored_in_clear(public: Api) -> None:
    user = await register_user(public.client)
    secret = (await create_webhook(public.client, user, PUBLIC_URL))["secret"]
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    dump = await dump_database(public.container.db.engine)
    for rows in dump.values():
        for row in rows:
            assert secret.removeprefix("whsec_") not in row
            assert raw.decode("latin-1") not in row


async def test_two_endpoints_get_two_secrets_and_duplicate_events_collapse(public: Api) -> None:
    user = await register_user(public.client)
    first = await create_webhook(public.client, user, PUBLIC_URL, ["*"])
    second = await create_webhook(
        public.client, user, PUBLIC_URL, ["payment.failed", "payment.failed", "refund.created"]
    )
    assert first["secret"] != second["secret"]
    assert first["events"] == ["*"]
    assert second["events"] == ["payment.failed", "refund.created"]
    listed = (await public.client.get("/api/webhooks", headers=user.headers)).json()["data"]
    assert [e["id"] for e in listed] == [first["id"], second["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example.com/", "events": ["*"]}, "url"),
        ({"url": "hooks.example.com", "events": ["*"]}, "url"),
        ({"url": "https://u:p@hooks.example.com/", "events": ["*"]}, "url"),
        ({"url": "https://hooks.example.com/#x", "events": ["*"]}, "url"),
        ({"url": "https://" + "a" * 2050, "events": ["*"]}, "url"),
        ({"url": 42, "events": ["*"]}, "url"),
        ({"url": PUBLIC_URL, "events": []}, "events"),
        ({"url": PUBLIC_URL, "events": ["payment.exploded"]}, "events"),
        ({"url": PUBLIC_URL, "events": ["*", "payment.created"]}, "events"),
        ({"url": PUBLIC_URL, "events": "*"}, "events"),
        ({"url": PUBLIC_URL}, "events"),
        ({"events": ["*"]}, "url"),
        ({"url": PUBLIC_URL, "events": ["*"], "secret": "whsec_mine"}, "secret"),
        ({"url": PUBLIC_URL, "events": ["*"], "enabled": False}, "enabled"),
        ({"url": PUBLIC_URL, "events": [1]}, "events"),
        ({"url": PUBLIC_URL, "events": ["payment." + "x" * 60]}, "events"),
        ({"url": PUBLIC_URL, "events": ["payment.created"] * 33}, "events"),
        ({"url": PUBLIC_URL, "events": ["*", "*"]}, "events"),
    ],
)
async def test_a_bad_body_is_422(public: Api, body: dict[str, Any], field: str) -> None:
    user = await register_user(public.client)
    response = await public.client.post("/api/webhooks", json=body, headers=user.headers)
    assert_invalid(response, field)
    assert (await public.client.get("/api/webhooks", headers=user.headers)).json()["data"] == []


async def test_a_body_that_is_not_json_is_400(public: Api) -> None:
    user = await register_user(public.client)
    response = await public.client.post(
        "/api/webhooks",
        content=b'{"url": "https://hooks.example.com/", "events": ["*"]',
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")
    assert (await public.client.get("/api/webhooks", headers=user.headers)).json()["data"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://localhost/hooks",
        "http://[::1]/hooks",
        "http://10.0.0.1/hooks",
        "http://192.168.1.20/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://0.0.0.0/hooks",
        "http://2130706433/hooks",
        "https://rebind.example.com/hooks",
        "https://metadata.example.com/hooks",
        "https://intranet.example.com/hooks",
        "https://unknown-host.example.com/hooks",
    ],
)
async def test_internal_addresses_are_refused_at_creation(public: Api, url: str) -> None:
    user = await register_user(public.client)
    response = await public.client.post(
        "/api/webhooks", json={"url": url, "events": ["*"]}, headers=user.headers
    )
    body = assert_problem(response, 422, "webhook_url_refused")
    assert [e["field"] for e in body["errors"]] == ["url"]
    listed = (await public.client.get("/api/webhooks", headers=user.headers)).json()["data"]
    assert listed == []


async def test_allowing_private_networks_allows_loopback_but_never_metadata(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(webhook_allow_private=True)
    user = await register_user(api.client)
    await create_webhook(api.client, user, "http://127.0.0.1:8080/hooks")
    await create_webhook(api.client, user, "http://localhost:8080/hooks")
    await create_webhook(api.client, user, "http://10.0.0.1/hooks")
    response = await api.client.post(
        "/api/webhooks",
        json={"url": "http://169.254.169.254/latest/meta-data/", "events": ["*"]},
        headers=user.headers,
    )
    assert_problem(response, 422, "webhook_url_refused")


async def test_production_accepts_only_https(public: Api) -> None:
    service = public.container.webhooks
    production = WebhookService(
        public.container.db,
        service._vault,
        MovableClock(),
        event_types=service._event_types,
        require_https=True,
        allow_private=False,
        resolver=service._resolver,
    )
    user = await register_user(public.client)
    with pytest.raises(ValidationFailed) as refused:
        await production.create(
            uuid.UUID(user.id), "http://hooks.example.com/", ["*"], livemode=False
        )
    assert refused.value.errors[0].field == "url"
    assert "https" in refused.value.errors[0].message
    created = await production.create(
        uuid.UUID(user.id), "https://hooks.example.com/", ["*"], livemode=False
    )
    assert created.endpoint.url == "https://hooks.example.com/"


async def test_an_account_has_a_limited_number_of_endpoints(public: Api) -> None:
    user = await register_user(public.client)
    for _ in range(MAX_ENDPOINTS_PER_USER):
        await create_webhook(public.client, user, PUBLIC_URL)
    response = await public.client.post(
        "/api/webhooks", json={"url": PUBLIC_URL, "events": ["*"]}, headers=user.headers
    )
    assert_problem(response, 422, "webhook_limit_reached")


async def test_delete_then_it_is_gone(public: Api) -> None:
    user = await register_user(public.client)
    created = await create_webhook(public.client, user, PUBLIC_URL)
    response = await public.client.delete(f"/api/webhooks/{created['id']}", headers=user.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await public.client.get("/api/webhooks", headers=user.headers)).json()["data"] == []
    again = await public.client.delete(f"/api/webhooks/{created['id']}", headers=user.headers)
    assert_problem(again, 404, "webhook_not_found")


async def test_another_users_endpoint_is_404(public: Api) -> None:
    owner = await register_user(public.client)
    other = await register_user(public.client)
    created = await create_webhook(public.client, owner, PUBLIC_URL)
    assert (await public.client.get("/api/webhooks", headers=other.headers)).json()["data"] == []
    ids = [created["id"], str(uuid.uuid4()), "nope", created["id"].replace("-", "")]
    for ident in ids:
        headers = other.headers if ident == created["id"] else owner.headers
        for method, path in (
            ("GET", f"/api/webhooks/{ident}"),
            ("DELETE", f"/api/webhooks/{ident}"),
            ("GET", f"/api/webhooks/{ident}/deliveries"),
        ):
            response = await public.client.request(method, path, headers=headers)
            assert_problem(response, 404, "webhook_not_found")
    still = (await public.client.get("/api/webhooks", headers=owner.headers)).json()["data"]
    assert [e["id"] for e in still] == [created["id"]]


async def test_webhooks_need_a_token(public: Api) -> None:
    for method, path in (
        ("POST", "/api/webhooks"),
        ("GET", "/api/webhooks"),
        ("DELETE", f"/api/webhooks/{uuid.uuid4()}"),
        ("GET", f"/api/webhooks/{uuid.uuid4()}/deliveries"),
    ):
        response = await public.client.request(method, path)
        assert_problem(response, 401, "unauthorized")


async def test_unknown_query_parameters_are_422(public: Api) -> None:
    user = await register_user(public.client)
    created = await create_webhook(public.client, user, PUBLIC_URL)
    for path in ("/api/webhooks", f"/api/webhooks/{created['id']}/deliveries"):
        response = await public.client.get(path, params={"expand": "secret"}, headers=user.headers)
        assert_invalid(response, "expand")
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "garbage"}):
        response = await public.client.get(
            f"/api/webhooks/{created['id']}/deliveries", params=params, headers=user.headers
        )
        assert_invalid(response, next(iter(params)))


async def test_a_delete_with_an_unknown_query_parameter_is_422_and_deletes_nothing(
    public: Api,
) -> None:
    user = await register_user(public.client)
    created = await create_webhook(public.client, user, PUBLIC_URL)
    response = await public.client.delete(
        f"/api/webhooks/{created['id']}", params={"force": "true"}, headers=user.headers
    )
    assert_invalid(response, "force")
    listed = (await public.client.get("/api/webhooks", headers=user.headers)).json()["data"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert listed[0]["status"] == "enabled"
