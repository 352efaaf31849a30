"""localstripe (a stateful fake Stripe) as kassa's tests and sandbox run it.

    python deploy/localstripe/kassa_localstripe.py [--host 127.0.0.1] [--port 8420]

prints `PORT <n>` on standard output once it listens (`--port 0` picks a free port), then
serves until SIGTERM or Ctrl-C. The tests (tests/processors/), `make sandbox` and the
sandbox's container image (deploy/localstripe/Dockerfile) all run this one module; it needs
only localstripe itself (deploy/localstripe/requirements.txt), not kassa.

Two adjustments to localstripe 1.15, both about how it runs, not what it answers:
- its own command line pickles its whole store (card numbers included) to /tmp after every
  write and reads it back on start; here the state lives in memory only, so a sandbox starts
  fresh and parallel test workers never share or leak a file;
- it predates the API version the `stripe` SDK speaks, which names the payment method types
  of a PaymentIntent `allowed_payment_method_types` (it knows `payment_method_types`), so
  stock localstripe answers every card payment with HTTP 400; the parameter is renamed on
  the way in. It never affects an outcome in localstripe.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import Any

from aiohttp import web
from localstripe import resources, server


def patch(*, rename: bool = True) -> None:
    """Apply the adjustments to the imported localstripe (idempotent); `rename=False` keeps
    its API as released (state still in memory only), to show what stock localstripe does."""
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    if not rename or getattr(resources.PaymentIntent.__init__, "_kassa_patched", False):
        return
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
