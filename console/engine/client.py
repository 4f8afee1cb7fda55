"""Client side of the control protocol, used by the CLI and the console."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import msgspec

from collectors.errors import EngineError, FleetdeckError
from console import __version__
from console.engine.api.methods import BY_REQUEST
from console.engine.api.replies import HelloReply
from console.engine.api.requests import Hello, Request, StatusQuery
from console.engine.protocol import (
    ERROR_EXIT_CODES,
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    encode,
    error_code,
)

R = TypeVar("R")
# connect() errors that mean "the engine's accept queue is full right now": try again
_RETRY_ERRNOS = (errno.EAGAIN, errno.EINTR, errno.EINVAL, errno.ECONNRESET)


class NoEngine(FleetdeckError):
    """No engine listens on the socket."""


class RemoteError(EngineError):
    """The engine answered with an error; `code` says what kind (never parse the text)."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = error_code(code) if isinstance(code, str) else code
        self.exit_code = ERROR_EXIT_CODES.get(self.code, 1)


def unsupported(err: BaseException) -> bool:
    """True when the engine has no such method (an older engine: the feature is missing)."""
    return isinstance(err, RemoteError) and err.code is ErrorCode.UNKNOWN_METHOD


def missing_text(method: str) -> str:
    """What the console says where an older engine lacks `method`."""
    return f"engine does not support {method} yet"


def failure_text(err: BaseException, method: str) -> str:
    """One line for a failed call of `method`: that the engine lacks it, or the error."""
    return missing_text(method) if unsupported(err) else str(err)


@dataclass(frozen=True, slots=True)
class LiveEngine:
    pid: int
    store: str


async def _open(path: Path, timeout: float) -> tuple[asyncio.StreamReader,
                                                    asyncio.StreamWriter]:
    """Connect, retrying while the engine's accept queue is full (EAGAIN)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=MAX_LINE_BYTES),
                max(0.1, deadline - time.monotonic()))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise NoEngine(f"no fleetdeck engine is running (socket {path})") from e
        except PermissionError:  # the kernel refused: say so instead of a traceback
            raise EngineError(f"not allowed to open the engine socket {path} (permission "
                              "denied; ask the engine's owner for access)") from None
        except TimeoutError as e:
            raise NoEngine(f"engine at {path} did not answer within {timeout:.0f}s") from e
        except OSError as e:
            if e.errno not in _RETRY_ERRNOS or time.monotonic() + delay > deadline:
                raise EngineError(f"cannot open the engine socket {path}: "
                                  f"{(e.strerror or type(e).__name__).lower()}") from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


class EngineClient:
    """`async with await EngineClient.connect(path) as c: await c.call(StatusQuery())`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.engine_info: HelloReply | None = None  # the hello reply, once connected

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 5.0,
                      readonly: bool = False) -> EngineClient:
        """Connect and say hello; `readonly` asks the engine to refuse every change."""
        reader, writer = await _open(path, timeout)
        client = cls(reader, writer)
        try:
            client.engine_info = await asyncio.wait_for(client.call(Hello(
                protocol=PROTOCOL_VERSION, client=f"fleetdeck {__version__}",
                readonly=readonly)), timeout)
        except TimeoutError:
            await client.close()
            raise EngineError(f"engine at {path} did not answer within {timeout:.0f}s "
                              "(busy?); try again") from None
        except (ConnectionError, OSError) as e:
            await client.close()
            raise EngineError(f"engine at {path} closed the connection ({e}); "
                              "try again") from None
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def hello(self) -> HelloReply:
        """The engine's answer to hello: the caller's user and role (`connect` returns only
        once it came)."""
        if self.engine_info is None:
            raise EngineError("no hello answered on this connection yet")
        return self.engine_info

    @property
    def role(self) -> str:
        return self.engine_info.role if self.engine_info is not None else "admin"

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @overload
    async def call(self, request: Request[R], /) -> R: ...

    @overload
    async def call(self, request: str, /, **params: Any) -> Any: ...

    async def call(self, request: Request[Any] | str, /, **params: Any) -> Any:
        """`call(JobsQuery(user="mia"))` answers the method's reply type (`list[JobInfo]`);
        the method is the one the table declares for the request's type.
        `call("jobs", user="mia")` is the untyped path (plain JSON), for scripts and tests
        that speak the wire protocol; the CLI and the console call typed."""
        if isinstance(request, str):
            return await self._result(request, params)
        method = BY_REQUEST[type(request)]
        return await self._result(method.name, msgspec.to_builtins(request), method.reply)

    async def _result(self, method: str, params: Mapping[str, Any], tp: Any = Any) -> Any:
        """The method's result, decoded straight into `tp` (Any: plain JSON)."""
        async with contextlib.aclosing(self._exchange(method, params)) as replies:
            async for kind, payload in replies:
                if kind == "result":
                    return _decoded(payload, tp)
        raise EngineError(f"engine closed the connection during {method}")

    @overload
    def stream(self, request: Request[R], /) -> AsyncIterator[R]: ...

    @overload
    def stream(self, request: str, /, **params: Any) -> AsyncIterator[Any]: ...

    async def stream(self, request: Request[Any] | str, /, **params: Any,
                     ) -> AsyncIterator[Any]:
        """Events of a streaming method (typed for a request, as `call`); closing early
        drops the connection's stream."""
        if isinstance(request, str):
            name, event_type, sent = request, Any, params
        else:
            method = BY_REQUEST[type(request)]
            name, event_type, sent = method.name, method.reply, msgspec.to_builtins(request)
        async with contextlib.aclosing(self._exchange(name, sent)) as replies:
            async for kind, payload in replies:
                if kind == "event":
                    yield _decoded(payload, event_type)

    async def _exchange(self, method: str, params: Mapping[str, Any],
                        ) -> AsyncGenerator[tuple[str, msgspec.Raw], None]:
        """("event" | "result", the payload still encoded) for one request."""
        async with self._lock:
            rid = next(self._ids)
            try:
                self._writer.write(encode({"id": rid, "method": method,
                                           "params": dict(params)}))
                await self._writer.drain()
            except (ConnectionError, OSError) as e:
                raise EngineError(f"engine closed the connection before {method} "
                                  f"({e.strerror or type(e).__name__})") from None
            while True:
                try:
                    line = await self._reader.readline()
                except (ConnectionError, OSError, ValueError) as e:
                    raise EngineError(f"engine connection lost during {method} "
                                      f"({type(e).__name__})") from None
                if not line:
                    raise EngineError(f"engine closed the connection during {method}")
                try:
                    msg = _ANSWER.decode(line)
                except msgspec.DecodeError as e:
                    raise EngineError(f"engine answered {method} with malformed JSON "
                                      f"({e})") from None
                if msg.id not in (rid, None):
                    continue
                if msg.error is not None:
                    raise RemoteError(str(msg.error.get("code", "failed")),
                                      str(msg.error.get("message", "error")))
                if not isinstance(msg.event, msgspec.UnsetType):
                    yield "event", msg.event
                    continue
                yield "result", (msg.result if not isinstance(msg.result, msgspec.UnsetType)
                                 else _NULL)
                return


class _Answer(msgspec.Struct):
    """One message from the engine; result and event stay encoded until their type is
    known (decoding straight into a reply type skips building plain dicts first)."""

    id: Any = None
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    event: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: dict[str, Any] | None = None


_ANSWER = msgspec.json.Decoder(_Answer)
_NULL = msgspec.Raw(b"null")


def _decoded(payload: msgspec.Raw, tp: Any) -> Any:
    try:
        return msgspec.json.decode(payload, type=tp, strict=False)
    except msgspec.ValidationError as e:  # an engine of another version: say which part
        raise EngineError(f"engine answer does not fit {tp}: {e}") from None


async def live_engine(path: Path, timeout: float = 3.0) -> LiveEngine | None:
    """The engine listening on `path`, or None when nothing does (a stale socket file).
    Anything that accepts the connection counts as live, answering or not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except (OSError, TimeoutError):
        return LiveEngine(pid=-1, store="unknown (it did not answer)")
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
    try:
        async with await EngineClient.connect(path, timeout=timeout, readonly=True) as c:
            info = await c.call(StatusQuery())
            return LiveEngine(pid=info.pid, store=info.store)
    except (FleetdeckError, OSError, ValueError, KeyError) as e:
        return LiveEngine(pid=-1, store=f"unknown ({e})")
