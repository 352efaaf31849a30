"""Counting proxies: what a server sends its PostgreSQL and its Redis, per request, for any
app and without touching its code.

A proxy sits between the app and the real server, forwards every byte unchanged and parses
only the client's side of the wire:

- PostgreSQL: the frontend messages (Query, Parse, Bind, Execute, Sync, Flush, …), by type.
  Statements are Execute + Query. An SSLRequest or GSSENCRequest is answered "N" by the
  proxy itself, so the session stays readable.
- Redis: the commands (RESP arrays, or inline lines), counted by name.

A round trip is counted on the wire, whatever the messages: each time a connection's client
sends after the server last spoke (a "turn"). asyncpg's first use of a statement, for
example, is Parse/Describe/Flush, a wait, then Bind/Execute/Sync: two turns, one Sync.

`probe` drives one lifecycle at a time through a server wired to the proxies and counts
each request's messages.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608


class PgFrontend:
    """Parses the client's half of a PostgreSQL session and counts its messages."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.started = False

    def feed(self, data: bytes) -> bytes:
        """Takes the client's bytes; returns what the proxy must answer itself (b"N" to an
        encryption request, which is then not forwarded)."""
        self.buffer += data
        reply = b""
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return reply
                length = int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) < length:
                    return reply
                code = int.from_bytes(self.buffer[4:8], "big")
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    reply += b"N"
                    self.counts["encryption_refused"] += 1
                elif code == CANCEL_REQUEST:
                    self.counts["cancel"] += 1
                else:
                    self.started = code == PROTOCOL_3
                    self.counts["startup"] += 1
                del self.buffer[:length]
            else:
                if len(self.buffer) < 5:
                    return reply
                length = int.from_bytes(self.buffer[1:5], "big")
                if len(self.buffer) < 1 + length:
                    return reply
                self.counts[chr(self.buffer[0])] += 1
                del self.buffer[: 1 + length]

    def forwarded(self, data: bytes) -> bytes:
        """What of `data` goes on to the server: all of it, less an encryption request."""
        if not self.started and len(data) == 8:
            code = int.from_bytes(data[4:8], "big")
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                return b""
        return data


class RespCommands:
    """Parses the client's half of a Redis session and counts its commands by name."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        while True:
            taken = self._one()
            if taken is None:
                return b""
            name, used = taken
            self.counts[name] += 1
            del self.buffer[:used]

    def forwarded(self, data: bytes) -> bytes:
        return data

    def _one(self) -> tuple[str, int] | None:
        buf = self.buffer
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        if buf[:1] != b"*":  # an inline command: one line
            words = bytes(buf[:end]).split()
            return (words[0].decode().upper() if words else "", end + 2)
        count = int(buf[1:end])
        at, name = end + 2, ""
        for index in range(count):
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(buf[at + 1 : line_end])
            start = line_end + 2
            if len(buf) < start + size + 2:
                return None
            if index == 0:
                name = bytes(buf[start : start + size]).decode().upper()
            at = start + size + 2
        return name, at


Parser = PgFrontend | RespCommands


class CountingProxy:
    """A TCP proxy on a free local port, run on its own thread and event loop."""

    def __init__(self, upstream_host: str, upstream_port: int, parser: Callable[..., Parser]):
        self.upstream = (upstream_host, upstream_port)
        self.parser = parser
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def snapshot(self) -> Counter[str]:
        """A copy of the counts, taken on the proxy's own loop (the only writer)."""

        async def copy() -> Counter[str]:
            return Counter(self.counts)

        return asyncio.run_coroutine_threadsafe(copy(), self._loop).result(10)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._session, "127.0.0.1", 0)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        parser = self.parser(self.counts)
        spoke = ["server"]  # who last sent on this connection

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if spoke[0] != "client":
                    self.counts["turns"] += 1
                    spoke[0] = "client"
                answer = parser.feed(data)
                if answer:
                    writer.write(answer)
                    spoke[0] = "server"
                out = parser.forwarded(data)
                if out:
                    up_writer.write(out)
                    await up_writer.drain()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                spoke[0] = "server"
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for stream in (writer, up_writer):
                stream.close()


# --- per-request counts ---------------------------------------------------------------------


def round_trips(counts: Counter[str]) -> int:
    """Times a client spoke after its server had answered."""
    return counts["turns"]


def statements(counts: Counter[str]) -> int:
    return counts["E"] + counts["Q"]


@dataclass
class EndpointCounts:
    round_trips: list[int] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    parses: list[int] = field(default_factory=list)
    redis: list[int] = field(default_factory=list)

    def add(self, pg: Counter[str], redis: Counter[str]) -> None:
        self.round_trips.append(round_trips(pg))
        self.statements.append(statements(pg))
        self.parses.append(pg["P"])
        self.redis.append(sum(n for name, n in redis.items() if name != "turns"))

    def summary(self) -> dict[str, float]:
        """Medians, so a background task's stray statement does not count against a request."""
        return {
            "round_trips": statistics.median(self.round_trips),
            "statements": statistics.median(self.statements),
            "parses": statistics.median(self.parses),
            "redis_calls": statistics.median(self.redis),
            "samples": len(self.round_trips),
        }


PAYMENT = {
    "amount": 2500,
    "currency": "USD",
    "payment_method": "credit_card",
    "details": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"},
}


def probe(
    base: str,
    token: str,
    pg: CountingProxy,
    redis: CountingProxy | None,
    lifecycles: int = 5,
    warmup: int = 2,
    settle_seconds: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Drive whole lifecycles (create, process, status, refund), one request at a time,
    and count what each request sent. Warm-up lifecycles go first (a statement's first use
    on a connection also prepares it); then each endpoint's medians."""
    counts = {part: EndpointCounts() for part in ("create", "process", "status", "refund")}
    auth = {"Authorization": f"Bearer {token}"}
    expected = {"create": 201, "process": 200, "status": 200, "refund": 201}
    with httpx.Client(base_url=base, timeout=30) as client:

        def send(part: str, payment_id: str) -> httpx.Response:
            keyed = {**auth, "Idempotency-Key": uuid.uuid4().hex}
            if part == "create":
                return client.post("/api/payments", json=PAYMENT, headers=keyed)
            if part == "process":
                body = {"payment_id": payment_id}
                return client.post("/api/payments/process", json=body, headers=keyed)
            if part == "status":
                return client.get(f"/api/payments/{payment_id}/status", headers=auth)
            body2: dict[str, Any] = {"amount": 1000, "reason": "requested_by_customer"}
            return client.post(f"/api/payments/{payment_id}/refund", json=body2, headers=keyed)

        for index in range(warmup + lifecycles):
            payment_id = ""
            for part in counts:
                time.sleep(settle_seconds)
                pg_before = pg.snapshot()
                redis_before = redis.snapshot() if redis else Counter[str]()
                response = send(part, payment_id)
                time.sleep(settle_seconds)  # work the server does just after answering
                if response.status_code != expected[part]:
                    raise RuntimeError(
                        f"probe: {part} answered {response.status_code}: {response.text[:300]}"
                    )
                if part == "create":
                    payment_id = response.json()["id"]
                if index >= warmup:
                    redis_after = redis.snapshot() if redis else Counter[str]()
                    counts[part].add(pg.snapshot() - pg_before, redis_after - redis_before)
    return {part: c.summary() for part, c in counts.items()}
