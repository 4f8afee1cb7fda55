"""Reaching an engine on another machine: `--engine ssh://[user@]host[:port][/socket/path]`.

One asyncssh connection (honouring ~/.ssh/config, the agent and `[ssh] known_hosts`; an
unknown or changed host key is refused, as for nodes) forwards a private local socket to the
engine's socket on that machine (`forward_local_path`, the streamlocal forwarding of OpenSSH).
The CLI and the console then talk to the local socket exactly as to a local engine. sshd
opens the remote end as the logged-in user, so the engine's SO_PEERCRED sees that user and
roles apply unchanged.

The connection lives on its own thread and loop for the whole process, because each CLI call
runs its own `asyncio.run` and the console its own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import tempfile
import threading
from pathlib import Path

import asyncssh

from collectors.transport.hostkeys import fingerprint, key_status
from console.config import SshConfig
from console.engine_address import EngineAddress, RemoteEngineError


class _KeyRecorder(asyncssh.SSHClient):
    """Keeps the host key the server offered, to name it when known_hosts refuses it."""

    def __init__(self) -> None:
        self.offered_key: asyncssh.SSHKey | None = None
        self.where: tuple[str, str, int] = ("", "", 22)  # host, address, port really used

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.offered_key = key
        self.where = (host, addr, port)
        return False


class SshEngineTunnel:
    """A private local socket forwarded to the engine socket of `address` (see module doc)."""

    def __init__(self, address: EngineAddress, ssh: SshConfig, *,
                 connect_timeout_s: float = 10.0) -> None:
        if address.host is None:
            raise ValueError("SshEngineTunnel needs an ssh:// address")
        self.address = address
        self.ssh = ssh
        self.connect_timeout_s = connect_timeout_s
        self._dir = tempfile.mkdtemp(prefix="fleetdeck-engine-")  # mode 0700
        self.local_path = str(Path(self._dir) / "engine.sock")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="fleetdeck-ssh-engine", daemon=True)
        self._conn: asyncssh.SSHClientConnection | None = None

    def open(self) -> str:
        """Connect, check an engine answers there, and forward; returns the local path."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            fut.result(self.connect_timeout_s * 3 + 5.0)
        except concurrent.futures.TimeoutError:
            self.close()
            raise RemoteEngineError(f"{self.address.url}: no answer in time") from None
        except BaseException:
            self.close()
            raise
        return self.local_path

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.wait_closed()

    async def _open(self) -> None:
        addr = self.address
        assert addr.host is not None
        recorder = _KeyRecorder()
        kwargs = self._connect_kwargs()
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1.0):
                self._conn = await asyncssh.connect(addr.host, **kwargs,
                                                    client_factory=lambda: recorder)
        except asyncssh.HostKeyNotVerifiable:
            raise RemoteEngineError(self._host_key_refusal(recorder)) from None
        except TimeoutError:
            raise RemoteEngineError(
                f"{addr.url}: no SSH answer within {self.connect_timeout_s:g} s") from None
        except asyncssh.PermissionDenied:
            raise RemoteEngineError(
                f"{addr.url}: SSH authentication failed (keys from the agent, ~/.ssh/config "
                "and ~/.ssh/id_*)") from None
        except (OSError, asyncssh.Error, ValueError) as e:
            raise RemoteEngineError(f"{addr.url}: {_reason(e)}") from None
        try:
            # one connection first: "no engine there" is clearer now than at the first call
            _reader, writer = await self._conn.open_unix_connection(addr.socket)
            writer.close()
            await self._conn.forward_local_path(self.local_path, addr.socket)
        except (OSError, asyncssh.Error) as e:
            raise RemoteEngineError(
                f"{addr.url}: no fleetdeck engine answers on {addr.socket} ({_reason(e)})"
            ) from None

    def _connect_kwargs(self) -> dict[str, object]:
        addr, ssh = self.address, self.ssh
        known = Path(ssh.known_hosts).expanduser()
        kwargs: dict[str, object] = {
            # a missing file trusts nothing, as for nodes
            "known_hosts": str(known) if known.exists() else asyncssh.import_known_hosts(""),
            "connect_timeout": self.connect_timeout_s,
            "keepalive_interval": ssh.keepalive_s,
        }
        if addr.port is not None:
            kwargs["port"] = addr.port
        if addr.user is not None:
            kwargs["username"] = addr.user
        if ssh.config_file is not None:
            kwargs["config"] = [str(Path(ssh.config_file).expanduser())]
        if not ssh.use_agent:
            kwargs["agent_path"] = None
        return kwargs

    def _host_key_refusal(self, recorder: _KeyRecorder) -> str:
        addr, key = self.address, recorder.offered_key
        known = Path(self.ssh.known_hosts).expanduser()
        check = f"check it with the engine's admin, then `ssh {addr.host}` once to record it"
        if key is None:
            return f"{addr.url}: host key not trusted by {known}; {check}"
        fp = f"{key.get_algorithm()} {fingerprint(key)}"
        host, ip, port = recorder.where  # after ~/.ssh/config's HostName and Port
        if key_status(known, host, port, key, ip) == "changed":
            return (f"{addr.url}: host key CHANGED, the host now offers {fp} which differs "
                    f"from {known}; refused")
        return f"{addr.url}: unknown host key {fp} (not in {known}); {check}"


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncssh.Error):
        return e.reason or type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
