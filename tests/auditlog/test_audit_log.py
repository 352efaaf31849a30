"""The audit log: one row for each audited action, naming the actor, the client IP and the
request id, never a password; GET /api/audit-events lists a user's own; nothing can change
a row once written (triggers on both databases)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import make_url

from kassa.auditlog.models import AuditEvent
from kassa.auditlog.service import ACTIONS, Actor, AuditLog
from kassa.db import table_of
from tests.conftest import Api, User, completed_payment, create_payment, register_user
from tests.lists import get_list, walk
from tests.payments import assert_problem

PATH = "/api/audit-events"
CLIENT_IP = "203.0.113.7"  # the ASGI client of api_factory
EVENT_KEYS = {
    "id",
    "action",
    "actor_type",
    "actor_id",
    "object_type",
    "object_id",
    "livemode",
    "ip",
    "request_id",
    "details",
    "created_at",
}
_AUDIT = table_of(AuditEvent)


async def _rows(api: Api, **where: Any) -> list[dict[str, Any]]:
    """Audit rows straight from the table (oldest first)."""
    statement = select(_AUDIT).order_by(_AUDIT.c.created_at, _AUDIT.c.id)
    for column, value in where.items():
        statement = statement.where(_AUDIT.c[column] == value)
    return [dict(row) for row in await api.container.db.rows(statement)]


async def _events(api: Api, user: User, **params: Any) -> list[dict[str, Any]]:
    return (await get_list(api, user, PATH, limit=100, **params))["data"]


async def test_a_login_is_audited_with_the_user_ip_and_request_id(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/auth/login",
        json={"email": user.email, "password": user.password},
        headers={"X-Request-ID": "login-req-1"},
    )
    assert response.status_code == 200
    [first, second] = await _events(api, user, action="login")  # register_user logged in too
    assert set(first) == EVENT_KEYS
    assert first["actor_type"] == "user"
    assert first["actor_id"] == user.id
    assert (first["object_type"], first["object_id"]) == ("user", user.id)
    assert first["ip"] == CLIENT_IP
    assert first["request_id"] == "login-req-1"
    assert first["livemode"] is None
    assert second["request_id"] != "login-req-1"


async def test_a_failed_login_is_audited_without_the_password(api: Api) -> None:
    user = await register_user(api.client)
    wrong = "wrong horse " + uuid.uuid4().hex
    response = await api.client.post(
        "/api/auth/login",
        json={"email": user.email, "password": wrong},
        headers={"X-Request-ID": "failed-1"},
    )
    assert response.status_code == 401
    [event] = await _events(api, user, action="login_failed")
    assert event["actor_type"] == "anonymous"
    assert event["actor_id"] is None
    assert (event["object_type"], event["object_id"]) == ("user", user.id)
    assert (event["ip"], event["request_id"]) == (CLIENT_IP, "failed-1")
    rows = await _rows(api, action="login_failed")
    assert rows
    assert wrong not in repr(rows)
    assert user.password not in repr(await _rows(api))


async def test_a_failed_login_for_an_unknown_email_is_kept_outside_any_account(api: Api) -> None:
    email = f"nobody-{uuid.uuid4().hex}@example.com"
    wrong = "wrong horse " + uuid.uuid4().hex
    response = await api.client.post(
        "/api/auth/login",
        json={"email": email, "password": wrong},
        headers={"X-Request-ID": "unknown-email-1"},
    )
    assert response.status_code == 401
    [row] = await _rows(api, request_id="unknown-email-1")
    assert row["action"] == "login_failed"
    assert row["user_id"] is None
    assert row["object_id"] is None
    assert row["ip"] == CLIENT_IP
    assert wrong not in repr(row)
    assert email not in repr(row)


async def test_a_password_change_is_audited(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/auth/password",
        json={"current_password": user.password, "new_password": "a new horse battery"},
        headers={**user.headers, "X-Request-ID": "pw-1"},
    )
    assert response.status_code == 204
    [event] = await _events(api, user, action="password_changed")
    assert (event["actor_type"], event["actor_id"]) == ("user", user.id)
    assert (event["ip"], event["request_id"]) == (CLIENT_IP, "pw-1")
    assert "a new horse battery" not in repr(await _rows(api))
    assert user.password not in repr(await _rows(api))


async def test_a_wrong_current_password_changes_nothing_and_audits_no_change(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/auth/password",
        json={"current_password": "not my password at all", "new_password": "x" * 20},
        headers=user.headers,
    )
    assert response.status_code == 401
    assert await _events(api, user, action="password_changed") == []


async def test_a_refund_is_audited_in_its_transaction(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    response = await api.client.post(
        f"/api/payments/{payment['id']}/refund",
        json={"amount": 250},
        headers={**user.headers, "X-Request-ID": "refund-1"},
    )
    assert response.status_code == 201
    refund = response.json()
    [event] = await _events(api, user, action="refund.created")
    assert (event["object_type"], event["object_id"]) == ("refund", refund["id"])
    assert (event["actor_type"], event["actor_id"]) == ("user", user.id)
    assert (event["ip"], event["request_id"]) == (CLIENT_IP, "refund-1")
    assert event["details"] == {"payment_id": payment["id"], "amount": 250, "currency": "USD"}
    assert event["livemode"] is False
    assert event["created_at"] == refund["created_at"]
    # A refund refused (more than is left) leaves no audit row.
    again = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 10_000}, headers=user.headers
    )
    assert again.status_code == 422
    assert len(await _events(api, user, action="refund.created")) == 1


async def test_an_idempotent_replay_of_a_refund_is_not_audited_twice(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    for _ in range(2):
        response = await api.client.post(
            f"/api/payments/{payment['id']}/refund",
            json={"amount": 100},
            headers={**user.headers, "Idempotency-Key": "refund-once"},
        )
        assert response.status_code == 201
    assert len(await _events(api, user, action="refund.created")) == 1


async def _authorized(api: Api, user: User, amount: int = 1000) -> dict[str, Any]:
    """A manual-capture payment, processed: authorized and waiting (`requires_capture`)."""
    payment = await create_payment(api.client, user, amount=amount, capture="manual")
    processed = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert processed.json()["status"] == "requires_capture", processed.text
    return payment


async def test_a_capture_is_audited_with_its_amount_once_and_a_refused_one_not(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user, amount=1000)
    path = f"/api/payments/{payment['id']}/capture"
    headers = {**user.headers, "X-Request-ID": "capture-1", "Idempotency-Key": "capture-once"}
    for _ in range(2):  # the repeat is a replay: one capture, one audit event
        captured = await api.client.post(path, json={"amount": 600}, headers=headers)
        assert captured.status_code == 200, captured.text
    [event] = await _events(api, user, action="payment.capture_requested")
    assert (event["object_type"], event["object_id"]) == ("payment", payment["id"])
    assert (event["actor_type"], event["actor_id"]) == ("user", user.id)
    assert (event["ip"], event["request_id"]) == (CLIENT_IP, "capture-1")
    assert event["details"] == {"amount": 600, "currency": "USD"}
    assert event["livemode"] is False
    # Captured already: a second capture is refused (409) and leaves no audit event.
    again = await api.client.post(path, json={"amount": 100}, headers=user.headers)
    assert again.status_code == 409
    # More than was authorized: refused before anything starts, and not audited either.
    other = await _authorized(api, user, amount=500)
    too_much = await api.client.post(
        f"/api/payments/{other['id']}/capture", json={"amount": 501}, headers=user.headers
    )
    assert too_much.status_code == 422
    assert len(await _events(api, user, action="payment.capture_requested")) == 1


@pytest.mark.parametrize("authorized", [False, True])
async def test_a_cancel_is_audited_with_the_status_it_left(api: Api, authorized: bool) -> None:
    user = await register_user(api.client)
    if authorized:
        payment = await _authorized(api, user)
    else:
        payment = await create_payment(api.client, user)
    path = f"/api/payments/{payment['id']}/cancel"
    headers = {**user.headers, "X-Request-ID": "cancel-1"}
    canceled = await api.client.post(path, headers=headers)
    assert canceled.json()["status"] == "canceled", canceled.text
    [event] = await _events(api, user, action="payment.cancel_requested")
    assert (event["object_type"], event["object_id"]) == ("payment", payment["id"])
    assert (event["actor_type"], event["request_id"]) == ("user", "cancel-1")
    status_was = "requires_capture" if authorized else "pending"
    assert event["details"] == {"status_was": status_was, "currency": "USD"}
    again = await api.client.post(path, headers=user.headers)
    assert again.status_code == 409
    assert len(await _events(api, user, action="payment.cancel_requested")) == 1


async def test_a_capture_whose_audit_row_fails_does_not_start(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit row is written in the transaction that moves the payment to its capture:
    when it cannot be written the payment stays authorized, and a capture later succeeds."""
    user = await register_user(api.client)
    payment = await _authorized(api, user)

    async def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the audit log is out of reach")

    monkeypatch.setattr(AuditLog, "record", staticmethod(refuse))
    path = f"/api/payments/{payment['id']}/capture"
    failed = await api.client.post(path, headers=user.headers)
    assert failed.status_code == 500
    monkeypatch.undo()
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["status"] == "requires_capture"
    captured = await api.client.post(path, headers=user.headers)
    assert captured.json()["status"] == "completed"
    [event] = await _events(api, user, action="payment.capture_requested")
    assert event["details"] == {"amount": 1000, "currency": "USD"}


async def test_webhook_endpoint_creation_and_deletion_are_audited(api_factory: Any) -> None:
    api: Api = await api_factory(webhook_allow_private=True)
    user = await register_user(api.client)
    created = await api.client.post(
        "/api/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"]},
        headers={**user.headers, "X-Request-ID": "hook-create"},
    )
    assert created.status_code == 201
    endpoint = created.json()
    deleted = await api.client.delete(
        f"/api/webhooks/{endpoint['id']}", headers={**user.headers, "X-Request-ID": "hook-delete"}
    )
    assert deleted.status_code == 204
    events = await _events(api, user)
    hooks = [e for e in events if e["object_type"] == "webhook_endpoint"]
    assert [(e["action"], e["request_id"]) for e in hooks] == [
        ("webhook_endpoint.deleted", "hook-delete"),
        ("webhook_endpoint.created", "hook-create"),
    ]
    assert {e["object_id"] for e in hooks} == {endpoint["id"]}
    assert all(e["livemode"] is False for e in hooks)
    assert endpoint["secret"] not in repr(await _rows(api))
    # Deleting what is not there is a 404 and no audit row.
    again = await api.client.delete(f"/api/webhooks/{endpoint['id']}", headers=user.headers)
    assert again.status_code == 404
    assert len([e for e in await _events(api, user) if e["object_type"] == "webhook_endpoint"]) == 2


async def test_the_ip_is_the_client_the_trusted_proxy_names(api_factory: Any) -> None:
    api: Api = await api_factory(trusted_proxies=CLIENT_IP)
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/auth/login",
        json={"email": user.email, "password": "not the password"},
        headers={"X-Forwarded-For": "2001:DB8:0::1", "X-Request-ID": "via-proxy"},
    )
    assert response.status_code == 401
    [event] = await _events(api, user, action="login_failed")
    assert event["ip"] == "2001:db8::1"


async def test_an_api_key_actor_is_named_by_its_id_never_its_secret() -> None:
    key_id = uuid.uuid4()
    actor = Actor(uuid.uuid4(), key_id=key_id, ip="192.0.2.1", request_id="r")
    assert (actor.type, actor.id) == ("api_key", key_id)
    assert (Actor(None).type, Actor(None).id) == ("anonymous", None)
    assert Actor(None).as_user(key_id).type == "user"


async def test_the_list_is_the_users_own_newest_first_with_cursors(api: Api) -> None:
    user, other = await register_user(api.client), await register_user(api.client)
    for _ in range(3):
        await api.client.post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        )
    await api.client.post("/api/auth/login", json={"email": user.email, "password": "nope" * 4})
    walked = await walk(api, user, PATH, limit=2)
    assert [e["action"] for e in walked] == ["login_failed", "login", "login", "login", "login"]
    assert {e["actor_id"] for e in walked} <= {user.id, None}
    stamps = [e["created_at"] for e in walked]
    assert stamps == sorted(stamps, reverse=True)
    others = await _events(api, other)
    assert [e["action"] for e in others] == ["login"]
    assert others[0]["actor_id"] == other.id


async def test_an_event_of_the_other_mode_is_not_listed(api: Api) -> None:
    user = await register_user(api.client)
    now = datetime.now(UTC)
    for livemode in (True, False):
        await AuditLog.record(
            api.container.db,
            Actor(uuid.UUID(user.id)),
            "refund.created",
            object_type="refund",
            object_id=uuid.uuid4(),
            at=now,
            livemode=livemode,
        )
    listed = await _events(api, user, action="refund.created")
    assert [e["livemode"] for e in listed] == [False]
    live = await api.container.audit_log.list(
        uuid.UUID(user.id), True, action=None, limit=10, cursor=None
    )
    assert sorted(e.livemode is None for e in live.data) == [False, True]  # live + the login


@pytest.mark.parametrize(
    "query", ["action=delete_everything", "action=login&action=login", "limit=0", "x=1"]
)
async def test_a_bad_query_is_refused_with_422(api: Api, query: str) -> None:
    user = await register_user(api.client)
    response = await api.client.get(f"{PATH}?{query}", headers=user.headers)
    assert_problem(response, 422, "validation_error")


async def test_every_action_can_be_filtered_on(api: Api) -> None:
    user = await register_user(api.client)
    for action in ACTIONS:
        response = await api.client.get(PATH, params={"action": action}, headers=user.headers)
        assert response.status_code == 200, action


async def test_kassa_cannot_update_or_delete_an_audit_event(api: Api) -> None:
    user = await register_user(api.client)
    [row] = await _rows(api, user_id=uuid.UUID(user.id))
    db = api.container.db
    with pytest.raises(Exception, match="append-only"):
        await db.execute(update(_AUDIT).where(_AUDIT.c.id == row["id"]).values(action="x"))
    with pytest.raises(Exception, match="append-only"):
        await db.execute(delete(_AUDIT).where(_AUDIT.c.id == row["id"]))
    with pytest.raises(Exception, match="append-only"):
        async with db.transaction() as tx:
            await tx.execute(update(_AUDIT).values(ip=None))
    assert await _rows(api, user_id=uuid.UUID(user.id)) == [row]


async def test_postgresql_refuses_changes_from_any_session(postgres_url: str) -> None:
    """An UPDATE, DELETE or TRUNCATE sent from outside kassa (a psql session as the
    superuser that owns the database) fails too: the refusal is the database's."""
    from kassa.db import Database, create_engine

    db = Database(create_engine(postgres_url, pool_size=1))
    try:
        users = await db.rows(text("SELECT id FROM user_account LIMIT 1"))
        await AuditLog.record(
            db,
            Actor(users[0]["id"] if users else None, ip="192.0.2.9"),
            "login",
            object_type="user",
            object_id=None,
            at=datetime.now(UTC),
        )
    finally:
        await db.dispose()
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetchval("SELECT count(*) FROM audit_event")
        assert before >= 1
        for statement in (
            "UPDATE audit_event SET ip = '198.51.100.1'",
            "DELETE FROM audit_event",
            "TRUNCATE audit_event",
            "UPDATE audit_event SET action = 'login' WHERE false",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_event") == before
        assert (
            await conn.fetchval("SELECT count(*) FROM audit_event WHERE ip = '198.51.100.1'") == 0
        )
    finally:
        await conn.close()


async def test_a_refund_whose_audit_row_fails_is_not_made(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit row is written in the refund's transaction: when it cannot be written, the
    refund, its reservation and its event are rolled back with it."""
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)

    async def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the audit log is out of reach")

    monkeypatch.setattr(AuditLog, "record", staticmethod(refuse))

    # PostgreSQL writes the reservation in one statement with the audit row: it fails as
    # that statement is made.
    def refuse_values(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the audit log is out of reach")

    monkeypatch.setattr(AuditLog, "record_values", staticmethod(refuse_values))
    response = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 100}, headers=user.headers
    )
    assert response.status_code == 500
    monkeypatch.undo()
    assert (await get_list(api, user, "/api/refunds"))["data"] == []
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["status"] == "completed"
    events = await api.client.get(
        "/api/events", params={"type": "refund.created"}, headers=user.headers
    )
    assert events.json()["data"] == []
    refunded = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 1000}, headers=user.headers
    )
    assert refunded.status_code == 201  # nothing was reserved by the failed attempt
