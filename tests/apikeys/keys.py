"""Small factories for tests that call kassa with API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import User


@dataclass
class Key:
    id: str
    secret: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


async def create_key(
    client: httpx.AsyncClient,
    user: User,
    *,
    mode: str = "test",
    scopes: list[str] | None = None,
    name: str = "Shop backend",
) -> Key:
    body: dict[str, Any] = {"name": name, "mode": mode}
    if scopes is not None:
        body["scopes"] = scopes
    response = await client.post("/api/keys", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return Key(created["id"], created["secret"], created)
