"""API keys: created, listed and revoked with a login token; a key is shown once, stored only as
a keyed hash, works wherever a login token does except key management, sessions and password
changes, and stops working on the next request after its revoke."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import inspect, select

from kassa.db import Base
from kassa.models import import_all_models
from tests.apikeys.keys import create_key
from tests.conftest import Api, payment_body, register_user

SECRET = re.compile(r"^sk_(test|live)_[0-9A-Za-z]{43}$")


async def test_a_created_key_shows_its_secret_once_and_lists_without_it(api: Api) -> None:
    user = await register_user(api.client)
    test_key = await create_key(api.client, user, name="backend")
    live_key = await create_key(api.client, user, mode="live", scopes=["read", "payments"])

    assert SECRET.match(test_key.secret)
    assert test_key.secret.startswith("sk_test_")
    assert SECRET.match(live_key.secret)
    assert live_key.secret.startswith("sk_live_")
    assert test_key.body["mode"] == "test"
    assert test_key.body["livemode"] is False
    assert test_key.body["scopes"] == ["read", "payments", "refunds", "webhooks", "checkout"]
    assert live_key.body["mode"] == "live"
    assert live_key.body["livemode"] is True
    assert sorted(live_key.body["scopes"]) == ["payments", "read"]
    assert test_key.body["last4"] == test_key.secret[-4:]
    assert set(test_key.body) == {
        "id", "name", "mode", "livemode", "scopes", "last4", "created_at", "secret"
    }  # fmt: skip

    listed = await api.client.get("/api/keys", headers=user.headers)
    assert listed.status_code == 200, listed.text
    data = listed.json()["data"]
    assert [k["id"] for k in data] == [live_key.id, test_key.id]  # newest first
    assert all("secret" not in k for k in data)
    assert test_key.secret not in listed.text
    assert live_key.secret not in listed.text

    other = await register_user(api.client)
    assert (await api.client.get("/api/keys", headers=other.headers)).json() == {"data": []}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "mode": "prod"},
        {"name": "", "mode": "test"},
        {"name": "x", "mode": "test", "scopes": []},
        {"name": "x", "mode": "test", "scopes": ["admin"]},
        {"name": "x", "mode": "test", "secret": "sk_test_mine"},
        {"name": "4242 4242 4242 4242", "mode": "test"},
    ],
)
async def test_a_bad_create_is_422(api: Api, body: dict[str, object]) -> None:
    user = await register_user(api.client)
    response = await api.client.post("/api/keys", json=body, headers=user.headers)
    assert response.status_code == 422, response.text


async def test_a_key_works_like_a_login_token_on_the_api(api: Api) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    created = await api.client.post(
        "/api/payments",
        json=payment_body(),
        headers={**key.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    processed = await api.client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=key.headers
    )
    assert processed.status_code == 200, processed.text
    refunded = await api.client.post(f"/api/payments/{payment_id}/refund", headers=key.headers)
    assert refunded.status_code == 201, refunded.text
    for path in ("/api/transactions", "/api/events", "/api/webhooks", "/api/auth/profile"):
        response = await api.client.get(path, headers=key.headers)
        assert response.status_code == 200, (path, response.text)
    # The key's owner sees the key's work with a login token (both in test mode).
    seen = await api.client.get(f"/api/payments/{payment_id}", headers=user.headers)
    assert seen.status_code == 200
    assert seen.json()["amount_refunded"] == 1050


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/keys"),
        ("GET", "/api/keys"),
        ("DELETE", "/api/keys/{key}"),
        ("POST", "/api/auth/password"),
        ("POST", "/api/auth/logout"),
    ],
)
async def test_a_key_is_refused_403_where_a_login_token_is_needed(
    api: Api, method: str, path: str
) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    body = {
        "/api/keys": {"name": "minted by a key", "mode": "live"},
        "/api/auth/password": {
            "current_password": user.password,
            "new_password": "another long password 1",
        },
    }.get(path)
    response = await api.client.request(
        method, path.format(key=key.id), json=body, headers=key.headers
    )
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "forbidden"
    # Nothing happened: the key still works, the password is unchanged, no key was made.
    assert (await api.client.get("/api/auth/profile", headers=key.headers)).status_code == 200
    login = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert login.status_code == 200
    keys = (await api.client.get("/api/keys", headers=user.headers)).json()["data"]
    assert [k["id"] for k in keys] == [key.id]


async def test_a_revoked_key_is_refused_on_the_next_request(api: Api) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    kept = await create_key(api.client, user)
    assert (await api.client.get("/api/transactions", headers=key.headers)).status_code == 200

    revoked = await api.client.delete(f"/api/keys/{key.id}", headers=user.headers)
    assert revoked.status_code == 204, revoked.text

    refused = await api.client.get("/api/transactions", headers=key.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert refused.headers["www-authenticate"].lower().startswith("bearer")
    assert (await api.client.get("/api/transactions", headers=kept.headers)).status_code == 200
    listed = (await api.client.get("/api/keys", headers=user.headers)).json()["data"]
    assert [k["id"] for k in listed] == [kept.id]
    # Revoked already, another's, unknown or malformed: 404 alike.
    other = await register_user(api.client)
    for who, key_id in (
        (user, key.id),
        (other, kept.id),
        (user, str(uuid.uuid4())),
        (user, "not-an-id"),
    ):
        response = await api.client.delete(f"/api/keys/{key_id}", headers=who.headers)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "api_key_not_found"
    assert (await api.client.get("/api/transactions", headers=kept.headers)).status_code == 200


@pytest.mark.parametrize(
    "secret",
    ["sk_test_", "sk_live_nope", "sk_test_" + "A" * 43, "sk_" + "x" * 200],
)
async def test_an_unknown_key_is_401(api: Api, secret: str) -> None:
    response = await api.client.get(
        "/api/transactions", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"


async def test_the_secret_is_stored_only_as_a_keyed_hash(api: Api) -> None:
    """Every text and binary column of every table, read back: neither the secret, nor its
    body without the prefix, nor its unkeyed SHA-256 (which would let a dump be checked
    against guesses offline) is anywhere in the database."""
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    assert (await api.client.get("/api/transactions", headers=key.headers)).status_code == 200
    body = key.secret.removeprefix("sk_test_")
    plain_hash = hashlib.sha256(key.secret.encode()).digest()
    forbidden_text = (key.secret, body, plain_hash.hex())
    import_all_models()
    found = []
    for table in Base.metadata.sorted_tables:
        for row in await api.container.db.rows(select(table)):
            for column, value in row.items():
                if isinstance(value, bytes):
                    if plain_hash in value or body.encode() in value:
                        found.append((table.name, column))
                elif value is not None and any(text in str(value) for text in forbidden_text):
                    found.append((table.name, column))
    assert found == []
    stored = await api.container.db.scalar(
        select(Base.metadata.tables["api_key"].c.secret_hash).where(
            Base.metadata.tables["api_key"].c.id == uuid.UUID(key.id)
        )
    )
    assert stored == api.container.keys.secret_hash(key.secret) != plain_hash


async def test_verifying_a_key_is_one_statement_by_a_unique_index(api: Api) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = api.container.db.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        principal = await api.container.keys.authenticate(key.secret)
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
    assert str(principal.key_id) == key.id
    assert principal.livemode is False
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, statements
    assert "api_key.secret_hash = " in reads[0]

    def unique_columns(sync_conn: object) -> list[list[str]]:
        inspector = inspect(sync_conn)
        uniques = [u["column_names"] for u in inspector.get_unique_constraints("api_key")]
        indexes = [i["column_names"] for i in inspector.get_indexes("api_key") if i.get("unique")]
        return [list(c) for c in uniques + indexes]

    async with api.container.db.engine.connect() as conn:
        assert ["secret_hash"] in await conn.run_sync(unique_columns)


async def test_key_creation_and_revocation_and_a_keys_refund_are_audited_by_id(api: Api) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user, mode="live")
    paid = await api.client.post("/api/payments", json=payment_body(), headers=key.headers)
    pid = paid.json()["id"]
    await api.client.post("/api/payments/process", json={"payment_id": pid}, headers=key.headers)
    refunded = await api.client.post(f"/api/payments/{pid}/refund", headers=key.headers)
    assert refunded.status_code == 201
    assert (await api.client.delete(f"/api/keys/{key.id}", headers=user.headers)).status_code == 204

    listed = await api.client.get(
        "/api/audit-events", headers={**user.headers, "Kassa-Mode": "live"}
    )
    assert listed.status_code == 200, listed.text
    events = {e["action"]: e for e in listed.json()["data"]}
    assert key.secret not in listed.text
    created, revoked = events["api_key.created"], events["api_key.revoked"]
    for event in (created, revoked):
        assert event["object_type"] == "api_key"
        assert event["object_id"] == key.id
        assert event["actor_type"] == "user"
        assert event["actor_id"] == user.id
        assert event["livemode"] is None  # the account's, seen in both modes
    assert created["details"] == {"mode": "live"}
    refund = events["refund.created"]
    assert (refund["actor_type"], refund["actor_id"]) == ("api_key", key.id)
    assert refund["livemode"] is True
    test_mode = await api.client.get("/api/audit-events", headers=user.headers)
    assert "refund.created" not in {e["action"] for e in test_mode.json()["data"]}
