"""Host keys: fetch a node's key, show its fingerprint, check and record it in known_hosts.

Used by the SSH transport (to explain a refused node) and by `fleetdeck nodes trust NODE`,
which fetches the key, shows the fingerprint, asks for confirmation and then calls
`add_known_host`. A changed key is only replaced when the caller asks (`replace=True`).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import tempfile
from hashlib import sha1
from pathlib import Path
from typing import Literal

import asyncssh

from collectors.errors import FleetdeckError
from collectors.transport.base import ConnectError

KeyStatus = Literal["trusted", "unknown", "changed", "revoked"]


class HostKeyChangedError(FleetdeckError):
    """known_hosts already holds a different key for this host and replacing was not asked."""


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH shows it: "SHA256:<base64>"."""
    return key.get_fingerprint("sha256")


def known_hosts_entry(host: str, port: int) -> str:
    """The host field OpenSSH writes: `host`, or `[host]:port` for a non-standard port."""
    return host if port == 22 else f"[{host}]:{port}"


async def fetch_host_key(
    host: str,
    port: int = 22,
    timeout: float = 10.0,
    *,
    config: Path | None = None,
) -> asyncssh.SSHKey:
    """Connect far enough to read the host key the node offers (no authentication).

    `config` is an OpenSSH client config to honour (None: ~/.ssh/config when present).
    Raises `ConnectError` with one line when the node cannot be reached.
    """
    try:
        async with asyncio.timeout(timeout):
            key = await asyncssh.get_server_host_key(
                host, port, config=[str(config)] if config else ()
            )
    except TimeoutError:
        raise ConnectError(f"{host}:{port}: no SSH answer within {timeout:g} s") from None
    except (OSError, asyncssh.Error) as e:
        raise ConnectError(f"{host}:{port}: {_reason(e)}") from None
    if key is None:
        raise ConnectError(f"{host}:{port}: the server presented no host key")
    return key


def key_status(path: Path | str, host: str, port: int, key: asyncssh.SSHKey,
               addr: str = "") -> KeyStatus:
    """How known_hosts at `path` judges `key` for host:port.

    "trusted" (recorded), "unknown" (no key recorded for the host), "changed" (other keys are
    recorded) or "revoked" (marked @revoked).
    """
    known = _read_known_hosts(Path(path))
    if known is None:
        return "unknown"
    trusted, _ca, revoked, *_ = known.match(host, addr, port if port != 22 else None)
    if key in revoked:
        return "revoked"
    if key in trusted:
        return "trusted"
    return "changed" if trusted else "unknown"


def add_known_host(
    path: Path | str, host: str, port: int, key: asyncssh.SSHKey, *, replace: bool = False
) -> bool:
    """Record `key` for host:port in the known_hosts file at `path` (created 0600 if missing).

    Returns False when the key was already recorded (nothing written). When a different key
    is recorded for exactly this host entry, raises `HostKeyChangedError` unless `replace` is
    true, in which case the old entry is removed (other hosts on a shared line are kept).
    """
    p = Path(path).expanduser()
    status = key_status(p, host, port, key)
    if status == "trusted":
        return False
    if status == "revoked":
        raise HostKeyChangedError(
            f"{p}: the key {fingerprint(key)} for {known_hosts_entry(host, port)} is marked "
            "@revoked; remove that line by hand if it should be trusted again"
        )
    entry = known_hosts_entry(host, port)
    lines = p.read_text().splitlines() if p.exists() else []
    kept: list[str] = []
    removed = 0
    for line in lines:
        new_line, dropped = _without_entry(line, entry)
        removed += dropped
        if new_line is not None:
            kept.append(new_line)
    if status == "changed" and not replace:
        raise HostKeyChangedError(
            f"{p}: {entry} already has a different host key; the node now offers "
            f"{fingerprint(key)} (replace it only if the change is expected)"
        )
    if status == "changed" and removed == 0:
        raise HostKeyChangedError(
            f"{p}: the key recorded for {entry} comes from a wildcard or another alias; "
            "edit that line by hand"
        )
    public = key.export_public_key("openssh").decode().strip()
    kept.append(f"{entry} {public}")
    _write_private(p, "\n".join(kept) + "\n")
    return True


# -- helpers ---------------------------------------------------------------------------------
def _read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts | None:
    try:
        return asyncssh.read_known_hosts(str(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, asyncssh.Error) as e:
        raise FleetdeckError(f"{path}: cannot read known_hosts: {e}") from None


def _without_entry(line: str, entry: str) -> tuple[str | None, int]:
    """`line` with host `entry` removed from its host list: (new line or None, 1 if removed)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return line, 0
    fields = stripped.split()
    marker = fields[0] if fields[0].startswith("@") else None
    if marker is not None:
        return line, 0  # @cert-authority / @revoked lines are the admin's business
    if len(fields) < 3:
        return line, 0
    names = fields[0].split(",")
    kept = [n for n in names if not _name_matches(n, entry)]
    if len(kept) == len(names):
        return line, 0
    if not kept:
        return None, 1
    return " ".join([",".join(kept), *fields[1:]]), 1


def _name_matches(name: str, entry: str) -> bool:
    if name.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = name.split("|", 3)
            salt = base64.b64decode(salt_b64)
            want = base64.b64decode(hash_b64)
        except ValueError:
            return False
        return hmac.compare_digest(hmac.new(salt, entry.encode(), sha1).digest(), want)
    return name == entry


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncssh.Error):
        return e.reason or type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
