"""What /docs' "Try it out" sends succeeds: the request examples of /openapi.json, sent as
they stand to `kassa serve` on its embedded SQLite (only the payment id a user pastes from
create's answer is filled in), answer 2xx, and every answer matches its declared schema and
headers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.acceptance.conftest import Server

pytestmark = pytest.mark.acceptance

DECLARED_ALWAYS = ("X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


class Spec:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        root = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource("urn:kassa:openapi", root)

    def operation(self, method: str, path: str) -> dict[str, Any]:
        found: dict[str, Any] = self.document["paths"][path][method]
        return found

    def example(self, method: str, path: str, name: str | None = None) -> dict[str, Any]:
        body = self.operation(method, path)["requestBody"]["content"]["application/json"]
        examples = body["examples"]
        value: dict[str, Any] = examples[name or next(iter(examples))]["value"]
        return dict(value)

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        """The answer is one the document declares: its status, its body's schema, and the
        headers declared for every answer."""
        declared = self.operation(method, path)["responses"]
        status = str(response.status_code)
        assert status in declared, (method, path, status, response.text)
        content = declared[status].get("content", {})
        media = response.headers.get("content-type", "").split(";")[0]
        if content:
            assert media in content, (method, path, status, media)
            schema = {"$ref": "urn:kassa:openapi" + content[media]["schema"]["$ref"]}
            validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
            errors = [e.message for e in validator.iter_errors(response.json())]
            assert not errors, (method, path, status, errors)
        for header in DECLARED_ALWAYS:
            assert header in declared[status]["headers"], (method, path, status, header)
            assert response.headers.get(header), (method, path, status, header)


@pytest.fixture(scope="module")
def spec(sqlite_server: Server) -> Spec:
    with sqlite_server.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    return Spec(response.json())


@pytest.fixture(scope="module")
def auth(sqlite_server: Server) -> dict[str, str]:
    email, password = f"docs-{uuid.uuid4().hex[:10]}@example.com", "a long enough password"
    with sqlite_server.client() as client:
        registered = client.post(
            "/api/auth/register", json={"name": "Docs", "email": email, "password": password}
        )
        assert registered.status_code == 201, registered.text
        login = client.post("/api/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def test_create_process_and_refund_examples_succeed_as_sent_from_docs(
    sqlite_server: Server, spec: Spec, auth: dict[str, str]
) -> None:
    with sqlite_server.client() as client:
        created = client.post(
            "/api/payments", json=spec.example("post", "/api/payments"), headers=auth
        )
        assert created.status_code == 201, created.text
        spec.check("post", "/api/payments", created)
        payment = created.json()
        assert payment["status"] == "pending"

        process_body = spec.example("post", "/api/payments/process")
        assert set(process_body) == {"payment_id"}
        process_body["payment_id"] = payment["id"]  # pasted from create's answer
        processed = client.post("/api/payments/process", json=process_body, headers=auth)
        assert processed.status_code == 200, processed.text
        spec.check("post", "/api/payments/process", processed)
        assert processed.json()["status"] == "completed"

        refund_path = "/api/payments/{payment_id}/refund"
        refunded = client.post(
            refund_path.format(payment_id=payment["id"]),
            json=spec.example("post", refund_path),
            headers=auth,
        )
        assert refunded.status_code == 201, refunded.text
        spec.check("post", refund_path, refunded)
        assert refunded.json()["status"] == "succeeded"

        again = client.post("/api/payments/process", json=process_body, headers=auth)
        assert again.status_code == 409
        spec.check("post", "/api/payments/process", again)
        assert again.json()["code"] == "invalid_state"


def test_the_wallet_example_succeeds(
    sqlite_server: Server, spec: Spec, auth: dict[str, str]
) -> None:
    body = spec.example("post", "/api/payments", "WalletPaymentRequest")
    with sqlite_server.client() as client:
        created = client.post("/api/payments", json=body, headers=auth)
    assert created.status_code == 201, created.text
    spec.check("post", "/api/payments", created)


def test_a_create_retried_with_its_idempotency_key_is_replayed_as_declared(
    sqlite_server: Server, spec: Spec, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    body = spec.example("post", "/api/payments")
    with sqlite_server.client() as client:
        first = client.post("/api/payments", json=body, headers=headers)
        second = client.post("/api/payments", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    declared = spec.operation("post", "/api/payments")["responses"]["201"]["headers"]
    assert "Idempotent-Replayed" in declared
    spec.check("post", "/api/payments", second)


def test_an_unauthenticated_call_is_the_declared_problem(sqlite_server: Server, spec: Spec) -> None:
    with sqlite_server.client() as client:
        refused = client.post("/api/payments", json=spec.example("post", "/api/payments"))
    assert refused.status_code == 401
    spec.check("post", "/api/payments", refused)
    assert refused.headers["WWW-Authenticate"] == "Bearer"
