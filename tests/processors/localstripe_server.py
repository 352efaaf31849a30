"""Run localstripe (a stateful fake Stripe) on 127.0.0.1 for the tests; prints its port.

    python tests/processors/localstripe_server.py  ->  "PORT 40123" on stdout, then serves

Two adjustments to localstripe 1.15, both about where it runs, not what it answers:
- its own command line listens on every interface and pickles its whole store (card numbers
  included) to /tmp after every write; here it listens on loopback only and keeps its state
  in memory, so parallel test workers never share or leak a file;
- it predates the API version the `stripe` SDK speaks, which names the payment method types
  of a PaymentIntent `allowed_payment_method_types` (it knows `payment_method_types`); the
  parameter is renamed on the way in. It never affects an outcome in localstripe.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from aiohttp import web
from localstripe import resources, server


def _patch() -> None:
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    original = resources.PaymentIntent.__init__

    def init(
        self: Any, *args: Any, allowed_payment_method_types: Any = None, **kwargs: Any
    ) -> None:
        if allowed_payment_method_types is not None:
            kwargs["payment_method_types"] = allowed_payment_method_types
        original(self, *args, **kwargs)

    resources.PaymentIntent.__init__ = init  # type: ignore[method-assign]


async def _serve() -> None:
    _patch()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(_serve())
    except KeyboardInterrupt:
        sys.exit(0)
