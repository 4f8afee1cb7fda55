"""The SSH transport: one persistent asyncssh connection per node.

Keys (`identity_file`), ssh-agent and the OpenSSH client config are honoured; host keys are
checked against the configured known_hosts (re-read on every connect, so `fleetdeck nodes
trust` takes effect without a restart). Handshakes share a semaphore so a large fleet does not
exceed sshd's `MaxStartups`. Keepalives detect a dead peer on an idle connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import shlex
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from collectors.transport.base import (
    CommandResult,
    CommandTimeout,
    ConnectError,
    Disconnected,
    HostKeyError,
    NodeLike,
    TransportError,
    address,
    quote_argv,
    tail,
)
from collectors.transport.hostkeys import fingerprint, key_status
from collectors.transport.line_stream import CommandLineStream, NodeTransport

DEFAULT_CONNECT_CONCURRENCY = 32

# asyncssh logs every channel (with full command lines) at INFO; keep it to warnings unless
# the application configured that logger itself.
if logging.getLogger("asyncssh").level == logging.NOTSET:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class SshOptions:
    """Client settings shared by every node (the config's `[ssh]` and `[collect]` keys)."""

    known_hosts: Path = field(default_factory=lambda: Path.home() / ".ssh" / "known_hosts")
    config_file: Path | None = None  # None: ~/.ssh/config when readable
    use_agent: bool = True
    keepalive_s: float = 15.0
    keepalive_count_max: int = 3
    connect_timeout_s: float = 10.0
    # Cipher preference. AES-GCM first: with AES-NI it costs about a fifth of asyncssh's
    # ChaCha20-Poly1305 per packet, which matters with 1,000 streams. None: asyncssh's and the
    # OpenSSH config's own choice (an explicit list overrides a config `Ciphers` line).
    ciphers: tuple[str, ...] | None = (
        "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
        "aes128-ctr", "aes192-ctr", "aes256-ctr",
    )


class _Client(asyncssh.SSHClient):
    """Remembers the host key the server offered, so a refusal can show its fingerprint."""

    def __init__(self) -> None:
        self.offered_key: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered_key = key
        return False


class SshTransport(NodeTransport):
    """`Transport` over SSH for one node. See `collectors.transport.base.Transport`."""

    def __init__(
        self,
        node: NodeLike,
        options: SshOptions | None = None,
        *,
        connect_limit: asyncio.Semaphore | None = None,
    ) -> None:
        super().__init__(node)
        self.options = options or SshOptions()
        self._limit = connect_limit or asyncio.Semaphore(DEFAULT_CONNECT_CONCURRENCY)
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._forwards: dict[str, tuple[asyncssh.SSHListener, str]] = {}
        self._tmpdir: str | None = None

    @property
    def place(self) -> str:
        """host:port."""
        return f"{address(self._node)}:{self._node.port}"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    # -- connection ------------------------------------------------------------------------
    async def connect(self) -> None:
        if self.connected:
            return
        async with self._lock:
            if self.connected:
                return
            self._drop_forwards()
            async with self._limit:
                self._conn = await self._open()

    async def _open(self) -> asyncssh.SSHClientConnection:
        node, opts = self._node, self.options
        clients: list[_Client] = []

        def factory() -> _Client:
            clients.append(_Client())
            return clients[-1]

        kwargs = self._connect_kwargs(factory)
        host = address(node)
        try:
            async with asyncio.timeout(opts.connect_timeout_s + 1.0):
                conn: asyncssh.SSHClientConnection = await asyncssh.connect(
                    host, node.port, **kwargs
                )
        except asyncssh.HostKeyNotVerifiable:
            raise self._host_key_error(clients[-1].offered_key if clients else None) from None
        except TimeoutError:
            raise ConnectError(
                f"{self.where}: no SSH answer within {opts.connect_timeout_s:g} s"
            ) from None
        except asyncssh.PermissionDenied:
            who = node.user or "the default user"
            keys = f"key {node.identity_file}" if node.identity_file else "the default keys"
            raise ConnectError(
                f"{self.where}: authentication failed for {who} with {keys}"
            ) from None
        except asyncssh.KeyExchangeFailed as e:
            raise ConnectError(f"{self.where}: key exchange failed: {e.reason}") from None
        except (OSError, asyncssh.Error, ValueError) as e:
            raise ConnectError(f"{self.where}: {_reason(e)}") from None
        return conn

    def _connect_kwargs(self, factory: Callable[[], _Client]) -> dict[str, Any]:
        node, opts = self._node, self.options
        kwargs: dict[str, Any] = {
            "known_hosts": _known_hosts(Path(opts.known_hosts).expanduser()),
            "keepalive_interval": opts.keepalive_s,
            "keepalive_count_max": opts.keepalive_count_max,
            "connect_timeout": opts.connect_timeout_s,
            "client_factory": factory,
        }
        if node.user:
            kwargs["username"] = node.user
        if node.identity_file:
            kwargs["client_keys"] = [str(Path(node.identity_file).expanduser())]
        if opts.config_file is not None:
            kwargs["config"] = [str(Path(opts.config_file).expanduser())]
        if not opts.use_agent:
            kwargs["agent_path"] = None
        if opts.ciphers:
            kwargs["encryption_algs"] = list(opts.ciphers)
        return kwargs

    def _host_key_error(self, key: asyncssh.SSHKey | None) -> HostKeyError:
        node, known = self._node, Path(self.options.known_hosts).expanduser()
        trust = f"fleetdeck nodes trust {node.name}"
        if key is None:
            return HostKeyError(
                f"{self.where}: host key not trusted by {known}; to trust it run: {trust}",
                node=node.name, fingerprint=None, changed=False,
            )
        fp = f"{key.get_algorithm()} {fingerprint(key)}"
        status = key_status(known, address(node), node.port, key)
        if status == "changed":
            return HostKeyError(
                f"{self.where}: host key CHANGED, the node now offers {fp} which differs from "
                f"{known}; if the change is expected run: {trust}",
                node=node.name, fingerprint=fingerprint(key), changed=True,
            )
        return HostKeyError(
            f"{self.where}: unknown host key {fp} (not in {known}); to trust it run: {trust}",
            node=node.name, fingerprint=fingerprint(key), changed=False,
        )

    async def close(self) -> None:
        self._drop_forwards()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await conn.wait_closed()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def wait_closed(self) -> None:
        """Return when the current connection closes (at once when there is none)."""
        if self._conn is not None:
            await self._conn.wait_closed()

    def _live(self) -> asyncssh.SSHClientConnection:
        if self._conn is None or self._conn.is_closed():
            raise Disconnected(f"{self.where}: connection lost")
        return self._conn

    # -- commands --------------------------------------------------------------------------
    async def run(self, argv: Sequence[str], *, input: bytes | None = None,
                  timeout: float) -> CommandResult:
        return await self._run(_with_deadline(argv, timeout), input, timeout)

    async def run_shell(self, script: str, *, input: bytes | None = None,
                        timeout: float) -> CommandResult:
        return await self._run(_with_deadline(["sh", "-c", script], timeout), input, timeout)

    async def _run(self, command: str, input: bytes | None, limit_s: float) -> CommandResult:
        await self.connect()
        conn = self._live()
        what = f"{self.where}: `{_short(command)}`"
        try:
            async with asyncio.timeout(limit_s + 5.0):
                proc = await conn.create_process(command, input=input, encoding=None)
        except TimeoutError:
            raise CommandTimeout(f"{what}: no channel within {limit_s + 5.0:g} s") from None
        except (asyncssh.Error, OSError) as e:
            raise Disconnected(f"{what}: {_reason(e)}") from None
        try:
            async with asyncio.timeout(limit_s):
                done = await proc.wait()
        except TimeoutError:
            # Closing the channel alone leaves a command that neither reads nor writes running.
            _kill(proc)
            raise CommandTimeout(f"{what} did not finish within {limit_s:g} s") from None
        except BaseException as e:
            _kill(proc)
            if isinstance(e, (asyncssh.Error, OSError)):
                raise Disconnected(f"{what}: {_reason(e)}") from None
            raise
        status = done.returncode
        if status is None:
            raise Disconnected(f"{what}: connection lost")
        return CommandResult(status, _as_bytes(done.stdout), _as_bytes(done.stderr))

    def stream(
        self, argv: Sequence[str], *, input: bytes | None = None, keep_stdin_open: bool = False
    ) -> SshLineStream:
        return SshLineStream(self, quote_argv(argv), input, keep_stdin_open)

    def stream_shell(
        self, command: str, *, input: bytes | None = None, keep_stdin_open: bool = False
    ) -> SshLineStream:
        return SshLineStream(self, command, input, keep_stdin_open)

    # -- forwarding ------------------------------------------------------------------------
    async def forward_unix(self, remote_path: str) -> str:
        await self.connect()
        conn = self._live()
        known = self._forwards.get(remote_path)
        if known is not None:
            return known[1]
        if self._tmpdir is None:
            tag = re.sub(r"[^A-Za-z0-9_.-]", "_", self._node.name)[:24]
            self._tmpdir = tempfile.mkdtemp(prefix=f"fleetdeck-{tag}-")  # mode 0700
        local = _fresh_socket_path(self._tmpdir, len(self._forwards))
        try:
            listener = await conn.forward_local_path(local, remote_path)
        except (asyncssh.Error, OSError) as e:
            raise TransportError(
                f"{self.where}: cannot forward {remote_path}: {_reason(e)}"
            ) from None
        self._forwards[remote_path] = (listener, local)
        return local

    def _drop_forwards(self) -> None:
        for listener, local in self._forwards.values():
            listener.close()
            with contextlib.suppress(OSError):
                Path(local).unlink(missing_ok=True)
        self._forwards.clear()


class SshLineStream(CommandLineStream):
    """`LineStream` over an SSH exec channel (see `collectors.transport.base.LineStream`)."""

    def __init__(self, transport: SshTransport, command: str, input: bytes | None,
                 keep_stdin_open: bool = False) -> None:
        super().__init__(input, keep_stdin_open)
        self._transport = transport
        self._command = command
        self._proc: asyncssh.SSHClientProcess[bytes] | None = None
        self._stderr_task: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        t = self._transport
        await t.connect()
        conn = t._live()
        try:
            proc = await conn.create_process(self._command, encoding=None)
            if self._input:
                proc.stdin.write(self._input)
            if not self._keep_open:
                proc.stdin.write_eof()
        except (asyncssh.Error, OSError) as e:
            raise Disconnected(f"{t.where}: `{_short(self._command)}`: {_reason(e)}") from None
        self._proc = proc
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr(proc))

    async def _drain_stderr(self, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            await self._keep_stderr(proc.stderr.read)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._proc is None:
            await self._start()
        proc = self._proc
        assert proc is not None
        try:
            async for line in self._lines(proc.stdout.readline):
                yield line
        except (asyncssh.Error, OSError) as e:
            await self._finish()
            raise Disconnected(f"{self._transport.where}: stream: {_reason(e)}") from None
        await self._finish()
        if self.exit_status is None and not self._transport.connected:
            raise Disconnected(f"{self._transport.where}: connection lost")

    async def _finish(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                await proc.wait_closed()
        self.exit_status = proc.returncode
        if self._stderr_task is not None:
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._stderr_task
        self.stderr_tail = tail(bytes(self._stderr))

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            _kill(proc, "TERM")
        self._proc = proc
        await self._finish()
        self._proc = None
        if self._stderr_task is not None and not self._stderr_task.done():
            self._stderr_task.cancel()


_KNOWN_CACHE: dict[Path, tuple[tuple[int, int, int], asyncssh.SSHKnownHosts]] = {}


def _known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """known_hosts parsed once per file version (a 1,000-line file is not re-read for each of
    1,000 connects; a change, e.g. by `nodes trust`, is seen at the next connect).
    A missing file trusts nothing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return asyncssh.import_known_hosts("")
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _KNOWN_CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        parsed = asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError, asyncssh.Error) as e:
        raise ConnectError(f"{path}: cannot read known_hosts: {e}") from None
    _KNOWN_CACHE[path] = (stamp, parsed)
    return parsed


# Runs "$@" under coreutils/busybox `timeout` when the node has it, so a command that outlives
# its deadline dies on the node even where sshd refuses signal requests (root logins).
_DEADLINE = (
    'if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL "$0" "$@"; '
    'else exec "$@"; fi'
)


def _with_deadline(argv: Sequence[str], limit_s: float) -> str:
    quote_argv(argv)  # argument checks
    return shlex.join(["sh", "-c", _DEADLINE, f"{math.ceil(limit_s) + 1}", *argv])


def _kill(proc: asyncssh.SSHClientProcess[Any], signal: str = "KILL") -> None:
    """Signal the remote command (sshd delivers it to the session's process) and close."""
    with contextlib.suppress(asyncssh.Error, OSError):
        proc.send_signal(signal)
    proc.close()


def _fresh_socket_path(folder: str, n: int) -> str:
    path = Path(folder) / f"fwd{n}.sock"
    path.unlink(missing_ok=True)
    return str(path)


def _as_bytes(data: object) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    return str(data).encode()


def _short(command: str, limit: int = 60) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncssh.Error):
        return e.reason or type(e).__name__
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host name ({e.strerror or e})"
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno).lower()
    return str(e) or type(e).__name__
