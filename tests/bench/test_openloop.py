"""bench/openloop.py: lifecycles are due at fixed times and each first request is timed from
its due time, so a server that falls behind shows as latency, not as a lower rate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from bench.openloop import Connection, OpenLoop, clock, due_times, lifecycle_parts, percentile


def test_due_times_are_evenly_spaced_at_the_rate_from_zero() -> None:
    assert due_times(4, 1) == [0, 0.25, 0.5, 0.75]
    assert due_times(2.5, 2) == pytest.approx([0, 0.4, 0.8, 1.2, 1.6])


def test_due_times_count_is_rate_times_seconds_rounded_down() -> None:
    assert len(due_times(33.3, 10)) == 333
    assert len(due_times(0.3, 10)) == 3  # 3.0 despite float error
    assert due_times(0, 10) == []
    assert due_times(5, 0) == []


def test_lifecycle_parts_follow_the_wrk_script() -> None:
    assert lifecycle_parts(1) == ["create", "process"]
    assert lifecycle_parts(2) == ["create", "process", "status"]
    assert lifecycle_parts(3) == ["create", "process"]
    assert lifecycle_parts(4) == ["create", "process", "status", "refund"]


def test_percentile_is_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile([7.0], 0.999) == 7
    assert percentile([], 0.5) == 0


# --- against a server that can serve only one request at a time --------------------------


class SlowServer:
    """Answers the benchmark's four endpoints, one request at a time, each after `delay`."""

    def __init__(self, delay: float, answers_per_connection: int = 0) -> None:
        self.delay = delay
        self.answers_per_connection = answers_per_connection  # then close it unannounced
        self.lock = asyncio.Lock()
        self.paths: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        try:
            while True:
                if answered and answered == self.answers_per_connection:
                    writer.close()
                    return
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
                length = 0
                for line in head.decode().split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":")[1])
                await reader.readexactly(length)
                async with self.lock:
                    await asyncio.sleep(self.delay)
                self.paths.append(f"{method} {path}")
                status = 201 if path.endswith(("/payments", "/refund")) else 200
                body = orjson.dumps({"id": "p1", "status": "ok"})
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
                )
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@asynccontextmanager
async def _serve(server: SlowServer) -> AsyncIterator[int]:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    yield listening.sockets[0].getsockname()[1]
    listening.close()


async def test_every_due_lifecycle_runs_in_order_of_its_parts() -> None:
    server = SlowServer(delay=0.0)
    async with _serve(server) as port:
        result = await OpenLoop("127.0.0.1", port, ["t"]).run("fast", rate=40, seconds=0.2)
    assert (result.due, result.completed, result.errors) == (8, 8, 0)
    assert len(result.latencies_ms) == 8 * 2 + 4 * 1 + 2 * 1  # statuses every 2nd, refunds 4th
    assert server.paths.count("POST /api/payments") == 8
    assert server.paths.count("POST /api/payments/p1/refund") == 2


async def test_a_server_that_falls_behind_shows_as_latency_not_as_a_lower_rate() -> None:
    # 10 lifecycles due in 0.25 s, each of 2–4 requests of 50 ms served one at a time: about
    # 1.2 s of work. A closed loop would see ~50 ms per request; timed from the due times,
    # the last lifecycles wait for the whole queue in front of them.
    server = SlowServer(delay=0.05)
    async with _serve(server) as port:
        result = await OpenLoop("127.0.0.1", port, ["t"]).run("slow", rate=40, seconds=0.25)
    assert result.completed == result.due == 10
    worst = max(result.latencies_ms)
    assert worst > 6 * 50, result.latencies_ms  # a closed loop of one would see ~50 ms
    assert max(result.lifecycle_ms) > 900


async def test_a_kept_alive_connection_the_server_closed_is_replaced_not_counted_as_an_error() -> (
    None
):
    # The server closes every connection after one answer, as a server closes one idle past
    # its keep-alive timeout: the next request on it reads EOF before any answer.
    server = SlowServer(delay=0.0, answers_per_connection=1)
    async with _serve(server) as port:
        result = await OpenLoop("127.0.0.1", port, ["t"]).run("closing", rate=40, seconds=0.2)
    assert (result.completed, result.errors) == (8, 0), result.notes
    assert server.paths.count("POST /api/payments/process") == 8


class _ClosedUnderfoot(Connection):
    """A reused connection whose peer closed it: the request's write broke the pipe."""

    def __init__(self, error: BaseException) -> None:
        self.used = 1
        self.error = error
        self.closed = False

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        raise self.error

    def close(self) -> None:
        self.closed = True


class _Fresh(Connection):
    def __init__(self) -> None:
        self.used = 0
        self.idle_since = clock()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        self.used += 1
        return 200, b"{}"


@pytest.mark.parametrize(
    "error",
    [
        BrokenPipeError(32, "Broken pipe"),
        ConnectionResetError(104, "reset"),
        ConnectionAbortedError(),
    ],
)
async def test_a_reused_connection_broken_either_way_is_replaced_once(error: OSError) -> None:
    loop = OpenLoop("127.0.0.1", 1, ["t"])
    fresh = _Fresh()
    loop.idle.append(fresh)
    broken = _ClosedUnderfoot(error)
    connection, status, _ = await loop._send(broken, "GET", "/", {}, b"")
    assert (connection, status, broken.closed) == (fresh, 200, True)
