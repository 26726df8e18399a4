"""A TCP proxy in front of a real redis-server, to lose a reply the way a crash loses it.

`lose_reply_to(b"EVALSHA")` arms it: the next connection that sends such a command has its
command delivered to Redis (which runs it) and its reply thrown away, the connection cut;
with `then_refuse=True` Redis then looks down. `refuse = True` closes every new connection at
once, as a Redis that is down.
"""

from __future__ import annotations

import asyncio
import contextlib


class RedisProxy:
    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.refuse = False
        self.lost: list[bytes] = []  # the replies thrown away
        self._armed: bytes | None = None
        self._then_refuse = False
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    def lose_reply_to(self, command: bytes, *, then_refuse: bool = False) -> None:
        self._armed = command
        self._then_refuse = then_refuse

    async def __aenter__(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        try:
            redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:
            writer.close()
            return
        cut = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self._armed is not None and self._armed in data:
                    self._armed = None
                    cut.set()  # this command runs; its reply is lost
                    self.refuse = self.refuse or self._then_refuse
                redis_writer.write(data)
                await redis_writer.drain()

        async def downstream() -> None:
            while data := await redis_reader.read(65536):
                if cut.is_set():
                    self.lost.append(data)
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        with contextlib.suppress(OSError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for stream in (writer, redis_writer):
            stream.close()
