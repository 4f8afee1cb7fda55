"""The control socket server: hello handshake, peer credentials, request dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console import __version__
from console.engine.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, RequestError, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is on the other end of a connection."""

    uid: int
    pid: int
    user: str
    readonly: bool = False


Handler = Callable[[Caller, Mapping[str, Any]], Awaitable[Any]]
StreamHandler = Callable[[Caller, Mapping[str, Any]], AsyncIterator[Any]]


class ControlServer:
    """Serves `handlers` (request/reply) and `streams` (events then a final reply)."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler],
                 streams: Mapping[str, StreamHandler]) -> None:
        self.path = path
        self.handlers = handlers
        self.streams = streams
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale: the store lock proved no engine owns it
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE_BYTES
            )
        finally:
            os.umask(old)
        self.path.chmod(0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._clients):
            t.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            caller = _peer(writer)
            readonly = await self._hello(reader, writer)
            if readonly is None:
                return
            if readonly:
                caller = dataclasses.replace(caller, readonly=True)
            while line := await reader.readline():
                await self._one(caller, line, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _hello(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bool | None:
        """Handshake; None refuses the connection, else whether it is read-only."""
        line = await reader.readline()
        if not line:
            return None
        try:
            msg = json.loads(line)
            rid = msg.get("id")
            ok = msg.get("method") == "hello"
            version = msg.get("params", {}).get("protocol")
            readonly = bool(msg.get("params", {}).get("readonly", False))
        except (ValueError, AttributeError):
            rid, ok, version, readonly = None, False, None, False
        if not ok:
            writer.write(encode({"id": rid, "error": {
                "code": "bad_request", "message": "first request must be hello"}}))
            await writer.drain()
            return None
        if version != PROTOCOL_VERSION:
            writer.write(encode({"id": rid, "error": {
                "code": "protocol_mismatch",
                "message": f"engine speaks protocol {PROTOCOL_VERSION} (fleetdeck {__version__}),"
                           f" client speaks {version}; use the same fleetdeck version"}}))
            await writer.drain()
            return None
        writer.write(encode({"id": rid, "result": {
            "protocol": PROTOCOL_VERSION, "engine": __version__, "pid": os.getpid(),
            "readonly": readonly}}))
        await writer.drain()
        return readonly

    async def _one(self, caller: Caller, line: bytes, writer: asyncio.StreamWriter) -> None:
        rid: Any = None
        try:
            msg = json.loads(line)
            rid = msg.get("id")
            method = msg["method"]
            params = msg.get("params") or {}
            if not isinstance(params, dict):
                raise RequestError("bad_request", "params must be an object")
            if method in self.streams:
                async for event in self.streams[method](caller, params):
                    writer.write(encode({"id": rid, "event": event}))
                    await writer.drain()
                writer.write(encode({"id": rid, "result": None}))
            elif method in self.handlers:
                result = await self.handlers[method](caller, params)
                writer.write(encode({"id": rid, "result": result}))
            else:
                raise RequestError("bad_request", f"unknown method {method!r}")
        except RequestError as e:
            writer.write(encode({"id": rid, "error": {"code": e.code, "message": e.message}}))
        except (ValueError, KeyError, TypeError) as e:
            writer.write(encode({"id": rid, "error": {"code": "bad_request", "message": str(e)}}))
        except ConnectionError:
            raise
        except Exception as e:  # one bad request never takes the engine down
            log.exception("request failed")
            writer.write(encode({"id": rid, "error": {"code": "failed", "message": str(e)}}))
        await writer.drain()


def _peer(writer: asyncio.StreamWriter) -> Caller:
    sock: socket.socket = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid:{uid}"
    return Caller(uid=uid, pid=pid, user=user)
