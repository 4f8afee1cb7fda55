"""The engine's control protocol, version 1: framing, error codes, encoding.

Transport: a unix stream socket. The engine learns the caller's uid from SO_PEERCRED, gives
the connection a role from `[access]` (owner and root are admins) and records that user as the
actor of every action. The methods themselves, their parameters, replies and the least role
allowed to call each, are declared once in `console.engine.methods`; docs/PROTOCOL.md is
generated from that table (`fleetdeck api --format md`).

Framing: one JSON object per line, UTF-8.

- The client's first request must be `hello`:
  `{"id": 1, "method": "hello", "params": {"protocol": 1, "client": "fleetdeck 0.1.0"}}`;
  `"readonly": true` in the params makes the engine refuse every change on that connection.
  The engine answers `{"id": 1, "result": {"protocol": 1, "engine": "0.1.0", "pid": ...,
  "user": ..., "role": ...}}`, or an error (`protocol_mismatch`, `unauthorized`) and closes.
- Requests: `{"id": N, "method": NAME, "params": {...}}`.
- Replies: `{"id": N, "result": ...}` or `{"id": N, "error": {"code": C, "message": M}}`.
- Streaming methods (`logs`) send any number of `{"id": N, "event": ...}` before their final
  reply.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024 * 1024  # replies carrying report frames can be large


class ErrorCode(StrEnum):
    """What went wrong, for the client to act on (never parse the message)."""

    PROTOCOL_MISMATCH = "protocol_mismatch"  # client and engine versions differ
    BAD_REQUEST = "bad_request"  # bad or missing parameter, malformed request
    UNKNOWN_METHOD = "unknown_method"  # the engine has no such method (an older engine)
    NOT_FOUND = "not_found"  # no such job, node, ...
    REFUSED = "refused"  # a policy or the state of the target said no
    FORBIDDEN = "forbidden"  # the caller's role may not call this method or touch this target
    UNAUTHORIZED = "unauthorized"  # the caller has no role on this engine at all
    READONLY = "readonly"  # the session asked to be read-only
    BUSY = "busy"  # too many connections; try again
    STORE_FAILING = "store_failing"  # the store refuses writes (disk full); nothing changed
    FAILED = "failed"  # the engine tried and failed
    INTERNAL = "internal"  # an engine bug: a handler answered off its declared reply type


# CLI exit status per error: 2 for bad input, 1 for everything else.
ERROR_EXIT_CODES: dict[ErrorCode, int] = {c: 1 for c in ErrorCode} | {
    ErrorCode.BAD_REQUEST: 2, ErrorCode.UNKNOWN_METHOD: 2, ErrorCode.NOT_FOUND: 2}


def error_code(text: str) -> ErrorCode:
    """The code of a reply's error; an unknown one (a newer engine) reads as `failed`."""
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.FAILED


def _default(o: object) -> Any:
    """What msgspec cannot encode itself (paths, odd values): their text."""
    return str(o)


_ENCODER = msgspec.json.Encoder(enc_hook=_default)


def encode(msg: Any) -> bytes:
    """One message as a JSON line (structs, dataclasses, datetimes and sets included)."""
    return _ENCODER.encode(msg) + b"\n"


def encode_raw(value: Any) -> msgspec.Raw:
    """A value encoded once, to embed as-is in messages (`encode` copies it)."""
    return msgspec.Raw(_ENCODER.encode(value))


class RequestError(Exception):
    """Raised by a handler to answer with an error code instead of a result."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
