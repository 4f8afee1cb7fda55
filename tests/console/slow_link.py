"""A slow engine for console tests: a Unix-socket relay in front of a real engine that holds
every request (after the hello) for `delay_s` before passing it on, as a loaded engine would.
Replies pass straight back. Requests on one connection keep their order; several in flight
are held side by side, not one after another."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

from console.app import EngineLink
from console.engine.protocol import MAX_LINE_BYTES


class SlowRelay:
    """`async with SlowRelay(engine_socket, relay_socket, 3.0):` serves the relay socket."""

    def __init__(self, target: Path, path: Path, delay_s: float) -> None:
        self.target = target
        self.path = path
        self.delay_s = delay_s
        self.requests = 0  # requests passed on (the hello not counted)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SlowRelay:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                       limit=MAX_LINE_BYTES)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.target),
                                                                  limit=MAX_LINE_BYTES)
        back = asyncio.create_task(self._pipe(up_reader, writer))
        self._tasks.add(back)
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        forward = asyncio.create_task(self._release(held, up_writer))
        self._tasks.add(forward)
        try:
            hello = await reader.readline()
            up_writer.write(hello)
            while line := await reader.readline():
                await held.put((loop.time() + self.delay_s, line))
        finally:
            for t in (back, forward):
                t.cancel()
            up_writer.close()
            writer.close()
            self._tasks.discard(task)

    async def _release(self, held: asyncio.Queue[tuple[float, bytes]],
                       up: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, line = await held.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.requests += 1
            up.write(line)
            await up.drain()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while line := await src.readline():
            dst.write(line)
            await dst.drain()


def via(link: EngineLink, socket: Path) -> EngineLink:
    """The same engine, reached through `socket` (a relay)."""
    engine = dataclasses.replace(link.loaded.config.engine, socket=socket)
    config = dataclasses.replace(link.loaded.config, engine=engine)
    return EngineLink(dataclasses.replace(link.loaded, config=config), link.embedded,
                      link.readonly)
