"""Who is calling and what role they have: peer credentials and `[access]`.

Each connection's uid comes from SO_PEERCRED (as PostgreSQL's peer authentication does); the
role comes from `[access]` on every call, so `config reload` applies to open connections too.
The engine's owner and root are admins; with `[access]` empty nobody else has a role.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from console.config import AccessConfig
from console.engine.api.methods import Role


@dataclass(frozen=True, slots=True)
class Peer:
    """The process on the other end of a connection, as the kernel reports it."""

    uid: int
    gid: int
    pid: int
    user: str  # login name, or "uid:N" for a uid without a passwd entry
    groups: frozenset[str]  # names of the user's groups (primary included)

    @property
    def local_user(self) -> bool:
        return not self.user.startswith("uid:")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is on the other end of a connection, and what they may do."""

    uid: int
    pid: int
    user: str
    role: Role = Role.ADMIN
    readonly: bool = False

    def may_act_for(self, user: str | None, least: Role) -> bool:
        """True when the caller is `user` or has at least role `least`."""
        return user is None or user == self.user or self.role >= least

    def with_role(self, role: Role) -> Caller:
        return replace(self, role=role)


def peer_of(sock: socket.socket) -> Peer:
    """The peer's credentials; raises OSError when the connection is already gone."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return peer_for(uid, gid=gid, pid=pid)


def peer_for(uid: int, *, gid: int | None = None, pid: int = 0) -> Peer:
    """A Peer for a uid (its login name and groups from the system databases)."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return Peer(uid=uid, gid=gid if gid is not None else -1, pid=pid, user=f"uid:{uid}",
                    groups=frozenset())
    primary = pw.pw_gid if gid is None else gid
    names: set[str] = set()
    try:
        gids = os.getgrouplist(pw.pw_name, primary)
    except OSError:
        gids = [primary]
    for g in gids:
        try:
            names.add(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    return Peer(uid=uid, gid=primary, pid=pid, user=pw.pw_name, groups=frozenset(names))


def _listed(names: tuple[str, ...], peer: Peer) -> bool:
    for name in names:
        if name == "*":
            if peer.local_user:
                return True
        elif name.startswith("@"):
            if name[1:] in peer.groups:
                return True
        elif name == peer.user:
            return True
    return False


def role_of(access: AccessConfig, peer: Peer, *, owner_uid: int | None = None) -> Role | None:
    """The highest role `[access]` gives the peer; None: no role, refuse the connection."""
    owner = os.getuid() if owner_uid is None else owner_uid
    if peer.uid in (0, owner):
        return Role.ADMIN
    for role, names in ((Role.ADMIN, access.admins), (Role.OPERATOR, access.operators),
                        (Role.MEMBER, access.members), (Role.VIEWER, access.viewers)):
        if _listed(names, peer):
            return role
    return None


def no_role_message(user: str) -> str:
    return (f"{user} has no role on this fleetdeck engine; an admin can add them to "
            "[access] in its config")


def unreachable_dirs(path: os.PathLike[str] | str) -> list[str]:
    """Folders above the socket that other users cannot pass through (no o+x)."""
    out = []
    for parent in Path(path).absolute().parents:
        try:
            if not parent.stat().st_mode & 0o001:
                out.append(str(parent))
        except OSError:
            out.append(str(parent))
    return out
