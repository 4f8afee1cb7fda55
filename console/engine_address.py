"""Where the CLI and the console find the engine: `--engine` or $FLEETDECK_ENGINE, a local
socket path or `ssh://[user@]host[:port][/socket/path]` (the tunnel: `console.remote`, which
loads asyncssh; this module does not)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from collectors.errors import FleetdeckError, InputError
from collectors.validate import user_path

ENGINE_ENV = "FLEETDECK_ENGINE"
# Where a shared engine listens unless the URL names a socket (the `[engine] socket`
# config.example.toml suggests for an engine other users reach).
DEFAULT_ENGINE_SOCKET = "/run/fleetdeck/engine.sock"
_EXPECTED = "ssh://[user@]host[:port][/socket/path] or a local socket path"


class RemoteEngineError(FleetdeckError):
    """The remote engine cannot be reached; one line naming the URL and why. Exit code 3,
    as `status` with no engine running."""

    exit_code = 3


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """A local socket path, or an engine reached over SSH (`host` set)."""

    socket: str
    host: str | None = None
    port: int | None = None  # None: ~/.ssh/config's, else 22
    user: str | None = None  # None: ~/.ssh/config's, else the local user

    @property
    def is_ssh(self) -> bool:
        return self.host is not None

    @property
    def url(self) -> str:
        if self.host is None:
            return self.socket
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{who}{self.host}{port}{self.socket}"


def parse_engine_address(value: str, source: str = "--engine") -> EngineAddress:
    """Parse the `--engine` flag or $FLEETDECK_ENGINE; bad input is an `InputError`."""
    text = value.strip()
    if not text or any(c in text for c in "\0\n\r"):
        raise InputError(source, None, _EXPECTED, got=value)
    if "://" not in text:
        return EngineAddress(socket=str(user_path(text, source="--engine")))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InputError(source, None, _EXPECTED + " (port 1-65535)", got=value) from None
    if parts.scheme != "ssh" or not parts.hostname or parts.query or parts.fragment \
            or parts.password is not None or port == 0:
        raise InputError(source, None, _EXPECTED, got=value)
    path = unquote(parts.path) if parts.path not in ("", "/") else DEFAULT_ENGINE_SOCKET
    return EngineAddress(socket=path, host=parts.hostname, port=port,
                         user=unquote(parts.username) if parts.username else None)
