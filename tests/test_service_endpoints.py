"""Service endpoints: health, readiness, the OpenAPI document and the offline Swagger UI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest

from kassa.app import create_app
from kassa.container import build_container
from tests.conftest import Api, make_settings

CONTRACT_OPERATIONS = {
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("get", "/api/auth/profile"),
    ("post", "/api/auth/refresh"),
    ("post", "/api/auth/logout"),
    ("post", "/api/auth/password"),
    ("post", "/api/payments"),
    ("post", "/api/payments/process"),
    ("get", "/api/payments/{payment_id}"),
    ("get", "/api/payments/{payment_id}/status"),
    ("post", "/api/payments/{payment_id}/refund"),
    ("post", "/api/payments/{payment_id}/cancel"),
    ("get", "/api/transactions"),
}
# Refresh authenticates with the refresh token in its body (the access token may have expired).
PUBLIC_OPERATIONS = {
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/refresh"),
}
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"


def operations(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    # Path parameter names are the implementation's choice; compare them as placeholders.
    return {
        (method, re.sub(r"\{[^}]+\}", "{id}", path))
        for path, item in paths.items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def placeholders(ops: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(m, re.sub(r"\{[^}]+\}", "{id}", p)) for m, p in ops}


class _AssetCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)


@pytest.fixture
async def unreachable_db_client() -> AsyncIterator[httpx.AsyncClient]:
    container = build_container(make_settings(UNREACHABLE_DATABASE))
    app = create_app(container=container)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
    ) as client:
        yield client
    await container.aclose()


async def test_healthz_answers_200(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_healthz_answers_200_without_a_database(
    unreachable_db_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_db_client.get("/healthz")
    assert response.status_code == 200


async def test_readyz_answers_200_when_the_database_answers(api: Api) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


async def test_readyz_answers_503_when_the_database_is_unreachable(
    unreachable_db_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_db_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "unavailable"


async def test_readyz_503_does_not_leak_connection_details(
    unreachable_db_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_db_client.get("/readyz")
    assert response.status_code == 503
    for leak in ("127.0.0.1", "nope", "postgres", "Connection refused", "Errno"):
        assert leak not in response.text


async def test_api_without_a_database_is_a_problem_document_not_a_traceback(
    unreachable_db_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_db_client.post(
        "/api/auth/register",
        json={"name": "N", "email": "nodb@example.com", "password": "correct horse battery"},
    )
    assert response.status_code >= 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "x-request-id" in response.headers
    for leak in ("127.0.0.1", "Traceback", "asyncpg", "Errno", "SELECT", "INSERT"):
        assert leak not in response.text


async def test_openapi_is_an_openapi_3_document(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "kassa"


async def test_openapi_lists_every_contract_operation(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    missing = placeholders(CONTRACT_OPERATIONS) - operations(document)
    assert not missing


async def test_openapi_hides_service_endpoints(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    assert not {"/healthz", "/readyz", "/metrics", "/docs"} & set(document["paths"])


async def test_openapi_declares_the_login_token_and_api_key_bearer_schemes(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    bearer = {
        name for name, s in schemes.items() if s["type"] == "http" and s["scheme"] == "bearer"
    }
    assert bearer == {"HTTPBearer", "ApiKey"}


async def test_openapi_requires_the_bearer_scheme_on_protected_operations(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    scheme_name = next(iter(document["components"]["securitySchemes"]))
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method, path) in PUBLIC_OPERATIONS:
                assert not operation.get("security"), (method, path)
            else:
                names = {name for req in operation.get("security", []) for name in req}
                assert scheme_name in names, (method, path)


async def test_openapi_documents_problem_responses(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    refund = document["paths"]["/api/payments/{payment_id}/refund"]["post"]["responses"]
    assert "application/problem+json" in refund["404"]["content"]


async def test_openapi_documents_every_error_as_a_problem_document(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    wrong = [
        (method, path, status, content_type)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if status[0] in "45"
        for content_type in response.get("content", {})
        if content_type != "application/problem+json"
    ]
    assert wrong == []


async def test_docs_is_swagger_ui_html(api: Api) -> None:
    response = await api.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in response.text
    assert "/openapi.json" in response.text


async def test_docs_references_no_other_host(api: Api) -> None:
    html = (await api.client.get("/docs")).text
    collector = _AssetCollector()
    collector.feed(html)
    assert collector.urls
    assert all(url.startswith("/") and not url.startswith("//") for url in collector.urls)
    assert not re.search(r"https?://", html)


async def test_docs_assets_are_served_locally(api: Api) -> None:
    collector = _AssetCollector()
    collector.feed((await api.client.get("/docs")).text)
    assert any(url.endswith(".js") for url in collector.urls)
    assert any(url.endswith(".css") for url in collector.urls)
    for url in collector.urls:
        response = await api.client.get(url)
        assert response.status_code == 200, url
        assert response.content, url


async def test_docs_javascript_bundle_is_swagger_ui(api: Api) -> None:
    collector = _AssetCollector()
    collector.feed((await api.client.get("/docs")).text)
    script = next(url for url in collector.urls if url.endswith(".js"))
    response = await api.client.get(script)
    assert "javascript" in response.headers["content-type"]
    assert "SwaggerUIBundle" in response.text
