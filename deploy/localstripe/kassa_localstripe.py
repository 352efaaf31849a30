"""localstripe (a stateful fake Stripe) as kassa's tests and sandbox run it.

    python deploy/localstripe/kassa_localstripe.py [--host 127.0.0.1] [--port 8420]

prints `PORT <n>` on standard output once it listens (`--port 0` picks a free port), then
serves until SIGTERM or Ctrl-C. The tests (tests/processors/), `make sandbox` and the
sandbox's container image (deploy/localstripe/Dockerfile) all run this one module; it needs
only localstripe itself (deploy/localstripe/requirements.txt), not kassa.

Two adjustments to localstripe 1.15 about how it runs, not what it answers, and one
behaviour it lacks:
- its own command line pickles its whole store (card numbers included) to /tmp after every
  write and reads it back on start; here the state lives in memory only, so a sandbox starts
  fresh and parallel test workers never share or leak a file;
- it predates the API version the `stripe` SDK speaks, which names the payment method types
  of a PaymentIntent `allowed_payment_method_types` (it knows `payment_method_types`), so
  stock localstripe answers every card payment with HTTP 400; the parameter is renamed on
  the way in. It never affects an outcome in localstripe;
- 3-D Secure with a redirect: localstripe answers a card that asks for authentication with
  a `use_stripe_sdk` next action only and refuses `return_url` on confirm. Here, a confirm
  with a `return_url` answers as Stripe does — `next_action.redirect_to_url` — to a small
  page this wrapper serves (under `/_config/kassa/3ds/`, a path localstripe lets through
  without a key, as Stripe's own test page needs none) whose "Complete" and "Fail" buttons
  call localstripe's own authentication endpoint and send the customer to the `return_url`.
  A confirm without a `return_url` is left exactly as localstripe answers it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import socket
import sys
from typing import Any

from aiohttp import web
from localstripe import errors, resources, server

_RETURN_URLS: dict[str, str] = {}  # PaymentIntent id → the return_url it was confirmed with
_BASE: list[str] = []  # this server's own address, once it listens
_CONFIRM = re.compile(r"^/v1/payment_intents/(pi_\w+)/confirm$")
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>localstripe 3-D Secure</title></head><body><h1>3-D Secure (localstripe)</h1>
<form method="post" action="{base}/complete"><button type="submit">Complete</button></form>
<form method="post" action="{base}/fail"><button type="submit">Fail</button></form>
</body></html>"""


def _patch_redirects() -> None:
    """Confirm with a `return_url` → a `redirect_to_url` next action to `challenge_page`."""
    original_post_data = server.get_post_data

    async def get_post_data(request: web.Request, remove_auth: bool = True) -> Any:
        data = await original_post_data(request, remove_auth=remove_auth)
        match = _CONFIRM.match(request.path)
        if match and isinstance(data, dict) and "return_url" in data:
            _RETURN_URLS[match.group(1)] = str(data.pop("return_url"))
        return data

    server.get_post_data = get_post_data
    original_confirm = resources.PaymentIntent._confirm

    def confirm(self: Any, on_failure_now: Any) -> None:
        original_confirm(self, on_failure_now)
        return_url = _RETURN_URLS.get(self.id)
        if self.next_action and return_url and _BASE:
            self.next_action = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"{_BASE[0]}/_config/kassa/3ds/{self.id}",
                    "return_url": return_url,
                },
            }

    resources.PaymentIntent._confirm = confirm  # type: ignore[method-assign]
    server.app.router.add_get("/_config/kassa/3ds/{id}", challenge_page)
    server.app.router.add_post("/_config/kassa/3ds/{id}/{answer}", challenge_answer)


async def challenge_page(request: web.Request) -> web.Response:
    base = f"/_config/kassa/3ds/{request.match_info['id']}"
    return web.Response(text=_PAGE.format(base=base), content_type="text/html")


async def challenge_answer(request: web.Request) -> web.StreamResponse:
    intent_id, answer = request.match_info["id"], request.match_info["answer"]
    intent = resources.PaymentIntent._api_retrieve(intent_id)
    if intent.status == "requires_action":
        # A decline after authenticating raises here; the PaymentIntent records it.
        with contextlib.suppress(errors.UserError):
            resources.PaymentIntent._api_authenticate(
                intent_id, client_secret=intent.client_secret, success=answer == "complete"
            )
    raise web.HTTPSeeOther(_RETURN_URLS.get(intent_id, "/"))


def patch(*, rename: bool = True) -> None:
    """Apply the adjustments to the imported localstripe (idempotent); `rename=False` keeps
    its API as released (state still in memory only), to show what stock localstripe does."""
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    if not rename or getattr(resources.PaymentIntent.__init__, "_kassa_patched", False):
        return
    _patch_redirects()
    original = resources.PaymentIntent.__init__

    def init(
        self: Any, *args: Any, allowed_payment_method_types: Any = None, **kwargs: Any
    ) -> None:
        if allowed_payment_method_types is not None:
            kwargs["payment_method_types"] = allowed_payment_method_types
        original(self, *args, **kwargs)

    init._kassa_patched = True  # type: ignore[attr-defined]
    resources.PaymentIntent.__init__ = init  # type: ignore[method-assign]


async def serve(host: str, port: int, *, rename: bool = True) -> None:
    patch(rename=rename)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    _BASE.append(f"http://{shown}:{sock.getsockname()[1]}")
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="localstripe, as kassa runs it")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8420, help="0 picks a free port")
    parser.add_argument(
        "--as-released",
        action="store_true",
        help="keep localstripe's API as released: the SDK's PaymentIntents are refused (400)",
    )
    options = parser.parse_args(argv)
    asyncio.run(serve(options.host, options.port, rename=not options.as_released))
    return 0


if __name__ == "__main__":
    sys.exit(main())
