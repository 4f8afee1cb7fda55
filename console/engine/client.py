"""Client side of the control protocol, used by the CLI and the console."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from collectors.errors import EngineError, FleetdeckError
from console import __version__
from console.engine.protocol import ERROR_EXIT_CODES, MAX_LINE_BYTES, PROTOCOL_VERSION, encode


class NoEngine(FleetdeckError):
    """No engine listens on the socket."""


class RemoteError(EngineError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = ERROR_EXIT_CODES.get(code, 1)


class EngineClient:
    """`async with EngineClient.connect(path) as c: await c.call("status")`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.engine_info: dict[str, Any] = {}

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 5.0,
                      readonly: bool = False) -> EngineClient:
        """Connect and say hello; `readonly` asks the engine to refuse every change."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=MAX_LINE_BYTES), timeout
            )
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise NoEngine(f"no fleetdeck engine is running (socket {path})") from e
        except TimeoutError as e:
            raise NoEngine(f"engine at {path} did not answer within {timeout:.0f}s") from e
        except PermissionError:  # the kernel refused: say so instead of a traceback
            raise EngineError(f"not allowed to open the engine socket {path} (permission "
                              "denied; ask the engine's owner for access)") from None
        except OSError as e:
            raise EngineError(f"cannot open the engine socket {path}: "
                              f"{(e.strerror or type(e).__name__).lower()}") from None
        client = cls(reader, writer)
        try:
            client.engine_info = await asyncio.wait_for(client.call(
                "hello", protocol=PROTOCOL_VERSION, client=f"fleetdeck {__version__}",
                readonly=readonly), timeout)
        except TimeoutError:
            await client.close()
            raise EngineError(f"engine at {path} did not answer within {timeout:.0f}s "
                              "(busy?); try again") from None
        except BaseException:
            await client.close()
            raise
        return client

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, BrokenPipeError):
            pass

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def call(self, method: str, **params: Any) -> Any:
        async with contextlib.aclosing(self._exchange(method, params)) as replies:
            async for kind, payload in replies:
                if kind == "result":
                    return payload
        raise EngineError(f"engine closed the connection during {method}")

    async def stream(self, method: str, **params: Any) -> AsyncIterator[Any]:
        """Events of a streaming method; closing early drops the connection's stream."""
        async with contextlib.aclosing(self._exchange(method, params)) as replies:
            async for kind, payload in replies:
                if kind == "event":
                    yield payload

    async def _exchange(self, method: str,
                        params: Mapping[str, Any]) -> AsyncGenerator[tuple[str, Any], None]:
        async with self._lock:
            rid = next(self._ids)
            self._writer.write(encode({"id": rid, "method": method, "params": dict(params)}))
            await self._writer.drain()
            while True:
                line = await self._reader.readline()
                if not line:
                    raise EngineError(f"engine closed the connection during {method}")
                msg = json.loads(line)
                if msg.get("id") != rid:
                    continue
                if "error" in msg:
                    err = msg["error"]
                    raise RemoteError(err.get("code", "failed"), err.get("message", "error"))
                if "event" in msg:
                    yield "event", msg["event"]
                    continue
                yield "result", msg.get("result")
                return
