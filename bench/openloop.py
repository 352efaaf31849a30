"""An open-loop load: lifecycles start at fixed times, whatever the server is doing.

wrk keeps N connections busy, so when the server slows down wrk slows down too and never
sends the requests a real population of users would have sent meanwhile (coordinated
omission): its latencies describe a queue of N. Here lifecycle i is due at start + i / rate;
its first request's latency is measured from that due time, so a late generator or a slow
server both show. Each later request of a lifecycle (process after create, …) is sent when
the one before it answers, as a user's next step is, and measured from its sending.

The lifecycle is bench/lifecycle.lua's: create → process, a status read every 2nd, a partial
refund every 4th. HTTP/1.1 keep-alive over asyncio streams, no client library: the generator
shares the machine with the servers, so it should cost little.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

PAYMENT = orjson.dumps(
    {
        "amount": 2500,
        "currency": "USD",
        "payment_method": "credit_card",
        "details": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"},
    }
)
REFUND = orjson.dumps({"amount": 1000, "reason": "requested_by_customer"})
# Stamps come from a high-resolution clock, not the event loop's (uvloop's is whole
# milliseconds, cached per loop iteration).
clock = time.perf_counter


def due_times(rate: float, seconds: float) -> list[float]:
    """Offsets (s) from the start at which lifecycles are due: evenly spaced at `rate` a
    second over `seconds`, the first at 0."""
    if rate <= 0 or seconds <= 0:
        return []
    count = math.floor(rate * seconds + 1e-9)
    return [index / rate for index in range(count)]


def lifecycle_parts(index: int) -> list[str]:
    """Lifecycle `index` (from 1): bench/lifecycle.lua's pattern."""
    parts = ["create", "process"]
    if index % 2 == 0:
        parts.append("status")
    if index % 4 == 0:
        parts.append("refund")
    return parts


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of ascending values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = 0  # requests answered on it
        self.idle_since = clock()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
            lines.append("Content-Type: application/json")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, chunked = 0, False
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            body = await self.reader.readexactly(length)
            self.used += 1
            return status, body
        chunks = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await self.reader.readexactly(size + 2))
            if size == 0:
                self.used += 1
                return status, b"".join(c[:-2] for c in chunks)

    def close(self) -> None:
        self.writer.close()


@dataclass
class OpenLoopResult:
    target: str
    rate: float  # lifecycles due per second
    seconds: float
    due: int
    completed: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # every request
    lifecycle_ms: list[float] = field(default_factory=list)  # due time → last answer
    late_ms: float = 0.0  # the generator's worst lateness in starting a lifecycle
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        requests = sorted(self.latencies_ms)
        whole = sorted(self.lifecycle_ms)
        return {
            "target": self.target,
            "rate": round(self.rate, 1),
            "seconds": self.seconds,
            "due": self.due,
            "completed": self.completed,
            "errors": self.errors,
            "requests": len(requests),
            "p50_ms": round(percentile(requests, 0.50), 1),
            "p99_ms": round(percentile(requests, 0.99), 1),
            "p999_ms": round(percentile(requests, 0.999), 1),
            "max_ms": round(requests[-1], 1) if requests else 0.0,
            "lifecycle_p50_ms": round(percentile(whole, 0.50), 1),
            "lifecycle_p99_ms": round(percentile(whole, 0.99), 1),
            "late_ms": round(self.late_ms, 1),
            "notes": self.notes[:5],
        }


class OpenLoop:
    # Servers close a keep-alive connection idle for a while (uvicorn: 5 s); one idle for
    # longer than this is closed here rather than reused.
    MAX_IDLE = 2.0

    def __init__(self, host: str, port: int, tokens: Sequence[str], timeout: float = 10.0):
        self.host, self.port = host, port
        self.tokens = list(tokens)
        self.timeout = timeout
        self.idle: list[Connection] = []
        self.nonce = uuid.uuid4().hex[:12]

    async def _connection(self) -> Connection:
        while self.idle:
            connection = self.idle.pop()
            if clock() - connection.idle_since < self.MAX_IDLE:
                return connection
            connection.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return Connection(reader, writer)

    async def _send(
        self, connection: Connection, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[Connection, int, bytes]:
        """One request; a reused connection the server closed before reading it (EOF before
        any answer) is replaced once by a new one, as HTTP clients do. The time it took
        stays in the request's latency."""
        try:
            status, answer = await connection.request(method, path, headers, body)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            # Reset, or a broken pipe: which one a closed connection gives depends on
            # whether the request's write or the answer's read met the close first.
            partial = getattr(error, "partial", b"")
            if not connection.used or partial:
                raise
            connection.close()
            connection = await self._connection()
            status, answer = await connection.request(method, path, headers, body)
        return connection, status, answer

    async def lifecycle(self, index: int, due: float, result: OpenLoopResult) -> None:
        auth = "Bearer " + self.tokens[index % len(self.tokens)]
        connection = await self._connection()
        payment_id = ""
        started = due  # the first request counts from its due time
        try:
            for step, part in enumerate(lifecycle_parts(index + 1)):
                headers = {"Authorization": auth}
                if part != "status":
                    headers["Idempotency-Key"] = f"{self.nonce}-{index}-{step}"
                body = b""
                if part == "create":
                    method, path, body, expected = "POST", "/api/payments", PAYMENT, 201
                elif part == "process":
                    body = b'{"payment_id":"' + payment_id.encode() + b'"}'
                    method, path, expected = "POST", "/api/payments/process", 200
                elif part == "status":
                    method, path, expected = "GET", f"/api/payments/{payment_id}/status", 200
                else:
                    method, path, body = "POST", f"/api/payments/{payment_id}/refund", REFUND
                    expected = 201
                connection, status, answer = await asyncio.wait_for(
                    self._send(connection, method, path, headers, body), self.timeout
                )
                now = clock()
                result.latencies_ms.append(1000 * (now - started))
                started = now
                if status != expected:
                    raise HttpError(f"{part}: {status} {answer[:120]!r}")
                if part == "create":
                    payment_id = orjson.loads(answer)["id"]
            result.completed += 1
            result.lifecycle_ms.append(1000 * (clock() - due))
            connection.idle_since = clock()
            self.idle.append(connection)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as e:
            result.errors += 1
            result.notes.append(f"{type(e).__name__}: {e}")
            connection.close()

    async def run(self, target: str, rate: float, seconds: float) -> OpenLoopResult:
        offsets = due_times(rate, seconds)
        result = OpenLoopResult(target, rate, seconds, due=len(offsets))
        start = clock() + 0.2
        running: set[asyncio.Task[None]] = set()
        for index, offset in enumerate(offsets):
            due = start + offset
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            result.late_ms = max(result.late_ms, 1000 * (clock() - due))
            task = asyncio.create_task(self.lifecycle(index, due, result))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running)
        for connection in self.idle:
            connection.close()
        self.idle.clear()
        return result


def run_open_loop(
    target: str, host: str, port: int, tokens: Sequence[str], rate: float, seconds: float
) -> dict[str, Any]:
    """One open-loop run on a fresh event loop (uvloop when installed)."""
    factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a kassa dependency
        factory = asyncio.new_event_loop
    began = time.monotonic()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(OpenLoop(host, port, tokens).run(target, rate, seconds))
    summary = result.summary()
    summary["wall_seconds"] = round(time.monotonic() - began, 1)
    return summary
