"""A small Redis client: one connection per process, commands pipelined on it, replies
matched to callers in order (Redis answers in the order it was asked)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import urlsplit


class RedisError(Exception):
    """An error reply (`-ERR …`) or a lost connection."""


def encode(args: tuple[bytes | str | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        return (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        count = int(rest)
        if count < 0:
            return None
        return [await read_reply(reader) for _ in range(count)]
    raise RedisError(f"unexpected reply {line[:40]!r}")


class Redis:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._db = int(parts.path.lstrip("/") or 0)
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._reading: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._writer = writer
            self._reading = asyncio.create_task(self._read(reader, writer))
            if self._db:
                await self._send(writer, ("SELECT", self._db))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                reply = await read_reply(reader)
                self._waiting.popleft().set_result(reply)
        except (OSError, asyncio.IncompleteReadError, RedisError) as error:
            lost = RedisError(f"redis connection lost: {error}")
        except asyncio.CancelledError:
            lost = RedisError("redis client closed")
        if self._writer is writer:
            self._writer = None
        writer.close()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(lost)

    async def _send(self, writer: asyncio.StreamWriter, args: tuple[bytes | str | int, ...]) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        writer.write(encode(args))
        reply = await waiter
        if isinstance(reply, RedisError):
            raise reply
        return reply

    async def call(self, *args: bytes | str | int) -> Any:
        writer = self._writer or await self._connect()
        return await self._send(writer, args)

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
