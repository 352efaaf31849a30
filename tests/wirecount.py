"""TCP proxies that count, on the wire, the round trips a client asks of PostgreSQL and Redis.

Counting on the wire sees every path to the server — ORM sessions, Core, an autocommit
engine and anything that talks to the driver directly — which no library-level event does.

PostgreSQL: the client's messages are read as the frontend protocol; every message after which
the client waits for the server is one round trip: Sync (`S`, the end of an extended-query
exchange), Flush (`H`, which asyncpg sends after Parse/Describe when it prepares a statement)
and simple Query (`Q`, e.g. a bare BEGIN or COMMIT). Redis: every command the client sends (a
RESP array) is one; a pipelined batch would count each command it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

# Untyped start-up requests a client may send before its start-up message: the server answers
# SSL and GSS encryption requests with one byte and the client goes on untyped.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_PG_ROUND_TRIP_MESSAGES = frozenset({b"S", b"H", b"Q"})


@dataclass
class Tally:
    """Round trips seen since the last `reset`."""

    count: int = 0

    def reset(self) -> None:
        self.count = 0


@dataclass
class PostgresReader:
    """Reads a client-to-server PostgreSQL stream, adding each round trip to `tally`."""

    tally: Tally
    started: bool = False
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return
                (length, code) = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                del self.buffer[:length]
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    self.started = True
                continue
            if len(self.buffer) < 5:
                return
            kind = bytes(self.buffer[:1])
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            del self.buffer[: 1 + length]
            if kind in _PG_ROUND_TRIP_MESSAGES:
                self.tally.count += 1


@dataclass
class RedisReader:
    """Reads a client-to-server RESP stream, adding each command to `tally`."""

    tally: Tally
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while (consumed := self._command_length()) is not None:
            del self.buffer[:consumed]
            self.tally.count += 1

    def _command_length(self) -> int | None:
        """The length of the first whole command in the buffer, or None until it has come."""
        line_end = self.buffer.find(b"\r\n")
        if line_end < 0:
            return None
        if self.buffer[:1] != b"*":  # an inline command: one line
            return line_end + 2
        position = line_end + 2
        for _ in range(int(self.buffer[1:line_end])):
            end = self.buffer.find(b"\r\n", position)
            if end < 0:
                return None
            size = int(self.buffer[position + 1 : end])
            position = end + 2 + size + 2
            if len(self.buffer) < position:
                return None
        return position


class CountingProxy:
    """Forwards a local port to `upstream`, feeding each client's bytes to a fresh reader."""

    def __init__(
        self, upstream: tuple[str, int], reader: Callable[[Tally], PostgresReader | RedisReader]
    ) -> None:
        self.upstream = upstream
        self.tally = Tally()
        self._reader = reader
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(*self.upstream)
        reader = self._reader(self.tally)
        upward = asyncio.create_task(self._pipe(client_in, server_out, reader.feed))
        downward = asyncio.create_task(self._pipe(server_in, client_out, None))
        self._pipes.update((upward, downward))
        upward.add_done_callback(self._pipes.discard)
        downward.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        seen: Callable[[bytes], None] | None,
    ) -> None:
        try:
            while data := await source.read(65536):
                # Counted before it is forwarded: by the time the answer comes back, the
                # request that caused it is in the tally.
                if seen is not None:
                    seen(data)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
