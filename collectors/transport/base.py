"""What every transport offers: run a command, stream a long-lived one, forward a unix socket.

A transport is one node's connection. Collectors (the probe, Docker, Slurm) and the scheduler's
executors use it through the `Transport` protocol, so the same code drives an SSH node and the
machine fleetdeck runs on. Commands are argument lists (quoted with `shlex.join` for a remote
shell); a shell string is only ever run through the explicit `run_shell`.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from collectors.errors import FleetdeckError


class TransportError(FleetdeckError):
    """A node cannot be reached or a command could not be run there; one line saying why."""


class ConnectError(TransportError):
    """Connecting (TCP, SSH handshake, authentication) failed."""


class HostKeyError(ConnectError):
    """The node's host key is unknown or differs from known_hosts; the node is refused.

    `fingerprint` is the key the node offered ("SHA256:..."), `changed` tells an unknown key
    from one that differs from the recorded one.
    """

    def __init__(self, message: str, *, node: str, fingerprint: str | None, changed: bool) -> None:
        super().__init__(message)
        self.node = node
        self.fingerprint = fingerprint
        self.changed = changed


class CommandTimeout(TransportError):
    """A command did not finish within its timeout (it was killed)."""


class Disconnected(TransportError):
    """The connection dropped while a command was running."""


@runtime_checkable
class NodeLike(Protocol):
    """What a transport needs to know about a node (`NodeTarget`, the config's `NodeConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str | None: ...
    @property
    def identity_file(self) -> Path | str | None: ...
    @property
    def transport(self) -> str: ...
    @property
    def docker_socket(self) -> str: ...
    @property
    def pool(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """A node to connect to. `host` empty means the node's name (an address or ssh alias)."""

    name: str
    host: str = ""
    port: int = 22
    user: str | None = None
    identity_file: Path | str | None = None
    transport: str = "ssh"  # ssh | local
    docker_socket: str = "/var/run/docker.sock"
    labels: Mapping[str, str] = field(default_factory=dict)
    pool: str = "default"


def address(node: NodeLike) -> str:
    """The host to connect to: `host`, or the node's name when host is empty."""
    return node.host or node.name


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A finished command. `exit_status` is the exit code, or -N when killed by signal N."""

    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    def error_line(self) -> str:
        """The last non-empty stderr line, for one-line error messages."""
        lines = [ln for ln in self.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"exit status {self.exit_status}"


class LineStream(Protocol):
    """A long-running command's stdout, one line (bytes, newline stripped) at a time.

    Use as `async with transport.stream(argv, input=src) as lines: async for line in lines`.
    Leaving the block stops the command. After the iteration ends, `exit_status` holds the exit
    code (None if unknown, e.g. the connection dropped) and `stderr_tail` the last stderr bytes.
    """

    exit_status: int | None
    stderr_tail: bytes

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def __aenter__(self) -> LineStream: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """One node's connection, shared by collectors and executors.

    Methods connect on first use; after the connection drops, the next call reconnects (the
    fleet collector drives reconnection with backoff through `connect`). All methods raise
    `TransportError` subclasses with a one-line message naming the node.
    """

    @property
    def node(self) -> NodeLike: ...

    @property
    def connected(self) -> bool:
        """True while the underlying connection is believed alive."""
        ...

    async def connect(self) -> None:
        """Open the connection if it is not open (idempotent; concurrent callers share one)."""
        ...

    async def run(self, argv: Sequence[str], *, input: bytes | None = None,
                  timeout: float) -> CommandResult:
        """Run `argv` (no shell: arguments are quoted) and wait at most `timeout` seconds.

        A non-zero exit is returned, not raised; a timeout raises `CommandTimeout`.
        """
        ...

    async def run_shell(self, script: str, *, input: bytes | None = None,
                        timeout: float) -> CommandResult:
        """Run `script` with the node's `sh` (the only way fleetdeck runs a shell string)."""
        ...

    def stream(
        self, argv: Sequence[str], *, input: bytes | None = None, keep_stdin_open: bool = False
    ) -> LineStream:
        """Start `argv`, feed it `input` (then EOF unless `keep_stdin_open`), and yield its
        stdout lines as they come. With stdin kept open, the command sees EOF when the stream
        is closed or the connection drops (the probe uses that to exit at once).
        """
        ...

    def stream_shell(
        self, command: str, *, input: bytes | None = None, keep_stdin_open: bool = False
    ) -> LineStream:
        """`stream` for a shell command line built by fleetdeck itself (the probe launcher).

        The line goes to the node's login shell as is over SSH (`sh -c` locally), so it must
        be POSIX and self-contained, like `collectors.probe.launch_command`'s `sh -c '...'`.
        """
        ...

    async def forward_unix(self, remote_path: str) -> str:
        """A local unix socket path that reaches `remote_path` on the node.

        SSH forwards it through the connection (a per-node socket in a private temp dir);
        the local transport returns `remote_path` itself. Valid until the connection drops.
        """
        ...

    async def close(self) -> None:
        """Close the connection and its forwards; the transport may be connected again."""
        ...


def quote_argv(argv: Sequence[str]) -> str:
    """The argument list as one command line for a POSIX shell."""
    if isinstance(argv, str):
        raise TypeError("argv must be a sequence of arguments, not a string (use run_shell)")
    if not argv:
        raise ValueError("argv is empty")
    return shlex.join(argv)


def tail(data: bytes, limit: int = 4096) -> bytes:
    return data[-limit:] if len(data) > limit else data
