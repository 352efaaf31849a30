"""Every route with an `{…_id}` path parameter parses it in one router-level dependency: a
malformed id is answered like an unknown one (404 with the resource's problem document),
never 422 or 500, and only after authentication (401 first)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, register_user

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
# The problem code each kind of id answers when it names nothing of the caller's.
NOT_FOUND = {
    "payment_id": "payment_not_found",
    "event_id": "event_not_found",
    "webhook_id": "webhook_not_found",
    "key_id": "api_key_not_found",
    "session_id": "checkout_session_not_found",
}
MALFORMED = ["abc", "3f2a1b0c9d8e4f7a8b6c5d4e3f2a1b0c", "{3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c}"]


def _routes_with_ids() -> list[tuple[str, str, str]]:
    document = json.loads(OPENAPI.read_text())
    routes = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"].endswith("_id"):
                    routes.append((method.upper(), path, parameter["name"]))
    return routes


ROUTES = _routes_with_ids()


def test_every_id_in_a_path_has_a_not_found_problem() -> None:
    assert len(ROUTES) >= 9
    assert {name for _, _, name in ROUTES} <= set(NOT_FOUND)


async def _call(api: Api, method: str, path: str, headers: dict[str, str]) -> Any:
    body = {"json": {}} if method == "POST" else {}
    return await api.client.request(method, path, headers=headers, **body)


@pytest.mark.parametrize(("method", "template", "name"), ROUTES)
async def test_a_malformed_id_is_the_same_404_as_an_unknown_one(
    api: Api, method: str, template: str, name: str
) -> None:
    user = await register_user(api.client)
    unknown = await _call(
        api, method, template.replace(f"{{{name}}}", str(uuid.uuid4())), user.headers
    )
    assert unknown.status_code == 404, unknown.text
    for raw in MALFORMED:
        response = await _call(api, method, template.replace(f"{{{name}}}", raw), user.headers)
        assert response.status_code == 404, (raw, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == NOT_FOUND[name]
        assert problem == unknown.json()


@pytest.mark.parametrize(("method", "template", "name"), ROUTES)
async def test_a_malformed_id_without_a_token_is_401_first(
    api: Api, method: str, template: str, name: str
) -> None:
    response = await _call(api, method, template.replace(f"{{{name}}}", "abc"), {})
    assert response.status_code == 401, response.text
