"""A customer pays through a checkout session in a real browser (headless chromium driven by
playwright-core) against `kassa serve`, and lands on the shop's own success page."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.acceptance.conftest import Server
from tests.browserkit import run_script

pytestmark = pytest.mark.acceptance


class _Shop(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>Shop</title><h1>Thanks for your order</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@contextlib.contextmanager
def serve_shop() -> Iterator[str]:
    """A tiny shop on loopback: its success page says thanks."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    with serve_shop() as url:
        yield url


def merchant(server: Server) -> dict[str, str]:
    with server.client() as client:
        email = f"shop-{threading.get_ident()}-{id(server)}@example.com"
        password = "correct horse battery staple"
        client.post(
            "/api/auth/register", json={"name": "Corner Shop", "email": email, "password": password}
        )
        login = client.post("/api/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        return {"Authorization": f"Bearer {login.json()['access_token']}"}


def open_session(server: Server, headers: dict[str, str], shop: str) -> dict[str, str]:
    with server.client() as client:
        response = client.post(
            "/api/checkout/sessions",
            headers=headers,
            json={
                "amount": 2500,
                "currency": "EUR",
                "description": "Order 1001",
                "success_url": f"{shop}/thanks?session={{CHECKOUT_SESSION_ID}}",
                "cancel_url": f"{shop}/cart",
            },
        )
        assert response.status_code == 201, response.text
        created: dict[str, str] = response.json()
        return created


def test_a_customer_pays_in_a_browser_after_a_decline_and_through_3ds(
    sqlite_server: Server, shop: str
) -> None:
    headers = merchant(sqlite_server)
    paid, declined, secure = (open_session(sqlite_server, headers, shop) for _ in range(3))
    output = run_script(
        "checkout.mjs",
        {
            "PAY_URL": paid["url"],
            "DECLINE_URL": declined["url"],
            "THREEDS_URL": secure["url"],
            "SUCCESS_PREFIX": f"{shop}/thanks",
        },
    )
    assert f"paid: {shop}/thanks?session={paid['id']}" in output
    assert f"declined, then paid: {shop}/thanks?session={declined['id']}" in output
    assert f"authenticated, then paid: {shop}/thanks?session={secure['id']}" in output
    with sqlite_server.client() as client:
        for session in (paid, declined, secure):
            state = client.get(f"/api/checkout/sessions/{session['id']}", headers=headers).json()
            assert state["status"] == "complete"
        events = client.get("/api/events?type=checkout.session.completed", headers=headers).json()[
            "data"
        ]
        assert {e["data"]["object"]["id"] for e in events} == {
            paid["id"],
            declined["id"],
            secure["id"],
        }
