"""The control socket server: connection limits, hello, roles, typed dispatch, audit.

Every request is checked against the method table (`console.engine.api.methods`) before its
handler runs: the params decode into the method's request type, the caller's role must reach
the method's, a read-only session may not change anything, and a caller below the method's
`others` role may only name their own jobs and themselves. Changing calls and refused calls
leave one audit row each (`Gate.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from console import __version__
from console.engine.access import Caller, Peer, no_role_message, peer_of
from console.engine.api.methods import BY_NAME, Method, Role, conforms
from console.engine.api.replies import FleetDelta, FleetNode, HelloReply
from console.engine.api.requests import Hello, Request
from console.engine.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    RequestError,
    encode,
    encode_raw,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 1024 * 1024  # requests are small; a longer line closes the connection
LISTEN_BACKLOG = 4096  # a burst of 1,000 connects waits in the kernel, not refused
ERROR_LOG_EVERY_S = 60.0

Handler = Callable[[Caller, Any], Awaitable[Any]]
StreamHandler = Callable[[Caller, Any], AsyncIterator[Any]]


class Gate(Protocol):
    """What the server asks the engine about callers."""

    def role_of(self, peer: Peer) -> Role | None: ...

    async def owner_of(self, job_id: int) -> str | None: ...

    async def audit(self, caller: Caller, method: str, req: Request | None, outcome: str,
                    message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 4096
    max_connections_per_user: int = 256


class _Envelope(msgspec.Struct):
    method: str
    id: Any = None
    params: dict[str, Any] | None = None


_DECODE = msgspec.json.Decoder(_Envelope)


class ErrorTally:
    """Connection errors logged once per interval with a count, never one line per event."""

    def __init__(self, every_s: float = ERROR_LOG_EVERY_S) -> None:
        self.every_s = every_s
        self.counts: Counter[str] = Counter()
        self._last = time.monotonic()

    def add(self, kind: str) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.counts:
            log.warning("control connections in the last %.0fs: %s", self.every_s,
                        ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items())))
            self.counts.clear()
        self._last = time.monotonic() if now is None else now


class WireCache:
    """Large answers a service shares between callers (the fleet, rebuilt at most once a
    second, is the same list object for every caller who may see all of it; a fleet delta the
    same object for every caller with that cursor) are encoded once: by identity, holding
    the object so its id cannot be reused. Shared answers are read-only by contract
    (`svc_fleet.FleetAnswer`). A fleet node (or a node's readings) is encoded once too, while
    it is the same object: deltas for different cursors, and the fleet from one rebuild to
    the next, share most nodes, so an answer is mostly a join of encoded nodes."""

    MIN_ITEMS = 64  # small answers cost less to encode than to look up
    KEEP = 8

    def __init__(self) -> None:
        self._entries: OrderedDict[int, tuple[object, msgspec.Raw]] = OrderedDict()
        self._items: dict[int, tuple[msgspec.Struct, msgspec.Raw]] = {}

    def raw(self, value: Any) -> Any:
        if isinstance(value, FleetDelta):
            size = len(value.nodes) + len(value.readings)
        else:
            size = len(value) if isinstance(value, list) else 0
        if size < self.MIN_ITEMS:
            return value
        hit = self._entries.get(id(value))
        if hit is not None and hit[0] is value:
            self._entries.move_to_end(id(value))
            return hit[1]
        raw = self._encode(value)
        self._entries[id(value)] = (value, raw)
        while len(self._entries) > self.KEEP:
            self._entries.popitem(last=False)
        return raw

    def _encode(self, value: Any) -> msgspec.Raw:
        if isinstance(value, FleetDelta):
            # the delta's other fields, with the lists spliced in (strings in it are
            # escaped, so only the fields themselves read "nodes":[] and "readings":[])
            rest = bytes(encode_raw(msgspec.structs.replace(value, nodes=[], readings=[])))
            for name, items in ((b"nodes", value.nodes), (b"readings", value.readings)):
                rest = rest.replace(b'"%s":[]' % name, b'"%s":%s' % (name, self._join(items)), 1)
            self._trim([*value.nodes, *value.readings])
            return msgspec.Raw(rest)
        if not isinstance(value[0], FleetNode):
            return encode_raw(value)
        body = self._join(value)
        self._trim(value)
        return msgspec.Raw(body)

    def _join(self, items: Sequence[msgspec.Struct]) -> bytes:
        cache = self._items
        out = []
        for n in items:
            hit = cache.get(id(n))
            if hit is None or hit[0] is not n:
                hit = (n, encode_raw(n))
                cache[id(n)] = hit
            out.append(hit[1])
        return b"[" + b",".join(out) + b"]"

    def _trim(self, items: Sequence[msgspec.Struct]) -> None:
        """Keep only this answer's encoded items once older ones outnumber them 4 to 1."""
        if len(self._items) > 4 * len(items) + 256:
            self._items = {id(n): self._items[id(n)] for n in items}


class ControlServer:
    """Serves the table's request/reply `handlers` and `streams` (events, then a reply)."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler],
                 streams: Mapping[str, StreamHandler], gate: Gate, *,
                 limits: Limits = Limits(), shared: bool = False) -> None:
        self.path = path
        self.handlers = handlers
        self.streams = streams
        self.gate = gate
        self.limits = limits
        self.shared = shared  # [access] grants others: the socket is 0666
        self.errors = ErrorTally()
        self.per_uid: Counter[int] = Counter()
        self.bad_replies: set[str] = set()  # methods that answered off their reply type
        self.wire = WireCache()
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen; the caller proved no live engine answers on the path (a stale one goes)."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True)
            self.path.parent.chmod(0o755 if self.shared else 0o700)  # whatever the umask
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o111 if self.shared else 0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES,
                backlog=LISTEN_BACKLOG)
        finally:
            os.umask(old)
        self.path.chmod(0o666 if self.shared else 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._clients):
            t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self.errors.flush()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- one connection -------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        peer: Peer | None = None
        try:
            sock: socket.socket = writer.get_extra_info("socket")
            peer = peer_of(sock)
            self.per_uid[peer.uid] += 1
            if not await self._admit(peer, writer):
                return
            caller = await self._hello(peer, reader, writer)
            if caller is None:
                return
            while line := await reader.readline():
                await self._one(peer, caller, line, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.errors.add("dropped")
        except ValueError:  # a line over MAX_REQUEST_BYTES
            self.errors.add("oversized request")
            with contextlib.suppress(Exception):
                writer.write(encode({"id": None, "error": {
                    "code": ErrorCode.BAD_REQUEST,
                    "message": f"request line over {MAX_REQUEST_BYTES} bytes"}}))
        except OSError:
            self.errors.add("socket error")
        except asyncio.CancelledError:
            pass
        finally:
            if peer is not None:
                self.per_uid[peer.uid] -= 1
                if self.per_uid[peer.uid] <= 0:
                    del self.per_uid[peer.uid]
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _admit(self, peer: Peer, writer: asyncio.StreamWriter) -> bool:
        """Connection caps: all users together, and per user (not the owner or root)."""
        total = sum(self.per_uid.values())
        if total > self.limits.max_connections:
            why = f"engine busy: {self.limits.max_connections} connections open; try again"
        elif (self.per_uid[peer.uid] > self.limits.max_connections_per_user
              and peer.uid not in (0, os.getuid())):
            why = (f"{peer.user} has {self.limits.max_connections_per_user} connections open "
                   "to the engine already; close some and try again")
        else:
            return True
        self.errors.add("refused over the connection cap")
        writer.write(encode({"id": None, "error": {"code": ErrorCode.BUSY, "message": why}}))
        with contextlib.suppress(Exception):
            await writer.drain()
        return False

    async def _hello(self, peer: Peer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> Caller | None:
        """Handshake within HELLO_TIMEOUT_S; None refuses the connection."""
        try:
            line = await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT_S)
        except TimeoutError:
            self.errors.add("no hello within 5s")
            return None
        if not line:
            return None
        rid: Any = None
        try:
            env = _DECODE.decode(line)
            rid = env.id
            if env.method != "hello":
                raise ValueError
            hello = msgspec.convert(env.params or {}, Hello)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            await _refuse(writer, rid, ErrorCode.BAD_REQUEST, "first request must be hello")
            return None
        if hello.protocol != PROTOCOL_VERSION:
            await _refuse(
                writer, rid, ErrorCode.PROTOCOL_MISMATCH,
                f"engine speaks protocol {PROTOCOL_VERSION} (fleetdeck {__version__}), "
                f"client speaks {hello.protocol}; use the same fleetdeck version")
            return None
        role = self.gate.role_of(peer)
        if role is None:
            nobody = Caller(uid=peer.uid, pid=peer.pid, user=peer.user, role=Role.VIEWER,
                            readonly=True)
            await self.gate.audit(nobody, "hello", hello, ErrorCode.UNAUTHORIZED.value,
                                  no_role_message(peer.user))
            await _refuse(writer, rid, ErrorCode.UNAUTHORIZED, no_role_message(peer.user))
            return None
        caller = Caller(uid=peer.uid, pid=peer.pid, user=peer.user, role=role,
                        readonly=hello.readonly)
        writer.write(encode({"id": rid, "result": HelloReply(
            protocol=PROTOCOL_VERSION, engine=__version__, pid=os.getpid(),
            readonly=hello.readonly, user=peer.user, role=role.label)}))
        await writer.drain()
        return caller

    async def _one(self, peer: Peer, caller: Caller, line: bytes,
                   writer: asyncio.StreamWriter) -> None:
        try:
            env = _DECODE.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            writer.write(encode({"id": None, "error": {
                "code": ErrorCode.BAD_REQUEST, "message": f"malformed request: {e}"}}))
            await writer.drain()
            return
        async for msg in self.handle(peer, caller, env.method, env.params or {}, env.id):
            if "result" in msg:
                msg["result"] = self.wire.raw(msg["result"])
            writer.write(encode(msg))
            await writer.drain()

    async def handle(self, peer: Peer, caller: Caller, name: str, params: Mapping[str, Any],
                     rid: Any = None) -> AsyncIterator[dict[str, Any]]:
        """One request of a connection made by `peer` (hello gave it `caller`): the messages
        to send back, events first. Tests drive it directly for any peer."""
        method = BY_NAME.get(name)
        req: Request | None = None
        try:
            if method is None or method.name == "hello":
                raise RequestError(ErrorCode.UNKNOWN_METHOD,
                                   f"unknown method {name!r} (see `fleetdeck api`)")
            role = self.gate.role_of(peer)  # [access] may have changed since hello
            if role is None:
                raise RequestError(ErrorCode.UNAUTHORIZED, no_role_message(peer.user))
            caller = caller.with_role(role)
            self._authorize(caller, method)
            try:
                req = msgspec.convert(dict(params), method.request)
            except msgspec.ValidationError as e:
                raise RequestError(ErrorCode.BAD_REQUEST, bad_params(method.name,
                                                                     method.request, e)) from None
            await self._check_owner(caller, method, req)
            req = self._narrow(caller, method, req)
            if method.stream:
                async for event in self.streams[method.name](caller, req):
                    yield {"id": rid, "event": self._checked(method, event)}
                yield {"id": rid, "result": None}
            else:
                result = await self.handlers[method.name](caller, req)
                yield {"id": rid, "result": self._checked(method, result)}
            if method.changes:
                await self.gate.audit(caller, method.name, req, "ok", "")
        except RequestError as e:
            yield {"id": rid, "error": {"code": e.code, "message": e.message}}
            if method is not None and (method.changes or e.code in _AUDITED):
                await self.gate.audit(caller, method.name, req, e.code.value, e.message)
        except (ConnectionError, GeneratorExit):
            raise
        except Exception as e:  # one bad request never takes the engine down
            log.exception("request %s failed", name)
            yield {"id": rid, "error": {"code": ErrorCode.FAILED, "message": str(e)}}
            if method is not None and method.changes:
                await self.gate.audit(caller, method.name, req, ErrorCode.FAILED.value, str(e))

    def _checked(self, method: Method, value: Any) -> Any:
        """The handler's answer if it is of the method's declared reply type; else an
        engine bug: logged once per method, answered as an internal error."""
        if conforms(value, method.reply):
            return value
        if method.name not in self.bad_replies:
            self.bad_replies.add(method.name)
            log.error("engine bug: %s answered %s, not its declared %s", method.name,
                      type(value).__name__, method.reply)
        raise RequestError(ErrorCode.INTERNAL, f"engine bug: {method.name} answered outside "
                           "its declared reply type (see the engine's log)")

    def _authorize(self, caller: Caller, method: Method) -> None:
        """Role and read-only, from the table, before the request is even decoded."""
        if caller.role < method.role:
            raise RequestError(ErrorCode.FORBIDDEN,
                               f"{method.name} needs the {method.role.label} role; "
                               f"{caller.user} is {caller.role.label}")
        if method.changes and caller.readonly:
            raise RequestError(ErrorCode.READONLY,
                               f"{method.name} changes the fleet; this session is read-only")

    def _narrow(self, caller: Caller, method: Method, req: Request[Any]) -> Request[Any]:
        """The table's `own_only` for the caller's role: only its names, only their own."""
        own = method.own_only
        if own is None or caller.role != own.role:
            return req
        name, user = getattr(req, "name", None), getattr(req, "user", None)
        if name not in own.names:
            raise RequestError(ErrorCode.FORBIDDEN,
                               f"{method.name} {name}: {own.text()} "
                               f"({', '.join(sorted(own.names))}); {caller.user} is "
                               f"{caller.role.label}")
        if user not in (None, caller.user):
            raise RequestError(ErrorCode.FORBIDDEN,
                               f"{method.name} {name} for {user}: {own.text()}; "
                               f"{caller.user} is {caller.role.label}")
        return msgspec.structs.replace(req, user=caller.user)

    async def _check_owner(self, caller: Caller, method: Method, req: Request) -> None:
        """Below the method's `others` role, a caller names only their own jobs and self."""
        if method.others is None or caller.role >= method.others:
            return
        for user, what in await self._targets(req):
            if user is not None and user != caller.user:
                raise RequestError(ErrorCode.FORBIDDEN,
                                   f"{method.name} on {what} needs the {method.others.label} "
                                   f"role; {caller.user} is {caller.role.label}")

    async def _targets(self, req: Request) -> list[tuple[str | None, str]]:
        """(user, what) pairs a request acts on: its job's owner, its user, its spec's."""
        out: list[tuple[str | None, str]] = []
        job = getattr(req, "job", None)
        if isinstance(job, int):
            owner = await self.gate.owner_of(job)
            out.append((owner, f"{owner}'s job {job}"))
        user = getattr(req, "user", None)
        if isinstance(user, str):
            out.append((user, f"user {user}"))
        spec = getattr(req, "spec", None)
        if isinstance(spec, dict) and isinstance(spec.get("user"), str) and spec["user"]:
            # "" (the CLI's spec without --user) means the caller, as the engine fills it in
            out.append((spec["user"], f"a job as {spec['user']}"))
        return out


_AUDITED = (ErrorCode.FORBIDDEN, ErrorCode.READONLY, ErrorCode.UNAUTHORIZED)


async def _refuse(writer: asyncio.StreamWriter, rid: Any, code: ErrorCode,
                  message: str) -> None:
    writer.write(encode({"id": rid, "error": {"code": code, "message": message}}))
    await writer.drain()


def bad_params(method: str, request: type[msgspec.Struct], e: msgspec.ValidationError) -> str:
    """One line naming what was wrong and, for an unknown or missing parameter, the
    parameters the method takes (`explain: unknown parameter job_id; it takes: job`)."""
    text = str(e)
    names = [f.encode_name for f in msgspec.structs.fields(request)]
    for prefix, what in (("Object contains unknown field ", "unknown parameter"),
                         ("Object missing required field ", "missing parameter")):
        if text.startswith(prefix):
            field = text.removeprefix(prefix).strip("`")
            takes = ", ".join(names) if names else "no parameters"
            return f"{method}: {what} {field}; it takes: {takes}"
    return f"{method}: {text}"
