"""The engine's control protocol, version 1.

Transport: a unix stream socket (mode 0600, owner only); the engine learns the caller's uid from
SO_PEERCRED and records that user as the actor of every action.

Framing: one JSON object per line, UTF-8.

- The client's first request must be `hello`:
  `{"id": 1, "method": "hello", "params": {"protocol": 1, "client": "fleetdeck 0.1.0"}}`;
  `"readonly": true` in the params makes the engine refuse every change on that connection.
  The engine answers `{"id": 1, "result": {"protocol": 1, "engine": "0.1.0", "pid": ...}}`, or,
  when the versions differ, an error with code `protocol_mismatch` and closes the connection.
- Requests: `{"id": N, "method": NAME, "params": {...}}`.
- Replies: `{"id": N, "result": ...}` or `{"id": N, "error": {"code": C, "message": M}}`.
- Streaming methods (`logs` with follow, `watch`) send any number of `{"id": N, "event": ...}`
  before their final reply.

Error codes: `protocol_mismatch`, `bad_request` (unknown method, bad params: exit 2 in the CLI),
`not_found` (exit 2), `refused` (a policy or permission said no), `failed` (the engine tried and
failed), `readonly` (the caller asked for a read-only session).
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024 * 1024  # replies carrying report frames can be large

ERROR_EXIT_CODES = {
    "protocol_mismatch": 1,
    "bad_request": 2,
    "not_found": 2,
    "refused": 1,
    "failed": 1,
    "readonly": 1,
}


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), default=_default).encode() + b"\n"


def _default(o: object) -> Any:
    iso = getattr(o, "isoformat", None)
    if callable(iso):
        return iso()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


class RequestError(Exception):
    """Raised by a handler to answer with an error code instead of a result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
