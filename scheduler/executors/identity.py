"""Whom a job runs as on its node: never root on someone else's behalf.

Where fleetdeck reaches a node as root (a local node under an engine running as root, or a
node with `user = "root"`), a job runs as the user who submitted it: process jobs through
`setpriv` with that user's uid, gid and groups as the node knows them, Docker jobs with
`--user uid:gid`; a node without that user refuses the job in one line. Where fleetdeck logs
in as an unprivileged account, every job runs as that account (it cannot become anyone else).
Slurm jobs are submitted as the login account either way.
"""

from __future__ import annotations

import getpass
import os
import shlex
from dataclasses import dataclass
from typing import Protocol

ROOT = "root"
NO_SUCH_USER_EXIT = 5  # the node-side scripts' exit code when the owner has no account there


class NodeLogin(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def user(self) -> str | None: ...
    @property
    def transport(self) -> str: ...


@dataclass(frozen=True, slots=True)
class JobIdentity:
    """How a node runs jobs: as each owner (`login` is root) or as `login` itself.
    `can_switch` is False on simulated nodes, whose jobs run in the engine's sandbox."""

    login: str
    can_switch: bool = True

    @property
    def as_owner(self) -> bool:
        return self.can_switch and self.login == ROOT

    def run_as(self, owner: str) -> str | None:
        """The account to switch to for `owner`'s job, or None to run as the login."""
        if not self.as_owner or not owner or owner == ROOT:
            return None
        return owner

    def job_runs_as(self, owner: str, executor: str) -> str:
        """For `explain`: whom this job runs as on the node, and why."""
        if executor == "slurm":
            return f"{self.login} (Slurm jobs are submitted as the login account)"
        who = self.run_as(owner)
        if who is not None:
            return f"{who} (its owner)"
        return self.login if self.login == owner else f"{self.login} (the login account)"

    def describe(self) -> str:
        """For `nodes` and `explain`."""
        return "each job's owner" if self.as_owner else f"{self.login} (the login account)"


def job_identity(node: NodeLogin, engine_user: str) -> JobIdentity:
    """The login fleetdeck has on `node`: the engine's own user locally, else `user` (an
    unset `user` is the engine's user too, as OpenSSH's default)."""
    if node.transport == "local":
        return JobIdentity(engine_user)
    if node.transport == "ssh":
        return JobIdentity(node.user or engine_user)
    return JobIdentity(engine_user, can_switch=False)


def engine_user() -> str:
    """The account this engine runs as ("root" for uid 0 whatever its name)."""
    if os.geteuid() == 0:
        return ROOT
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


def resolve_owner_sh(user: str, node: str) -> str:
    """Shell lines (run as root on the node) setting `uid`, `gid` and `home` for `user`, or
    exiting NO_SUCH_USER_EXIT with one line on stderr when the node has no such account."""
    q = shlex.quote(user)
    msg = shlex.quote(f"node {node} has no user {user}: its jobs run as their owner there")
    return "\n".join([
        f"uid=$(id -u -- {q} 2>/dev/null) && gid=$(id -g -- {q} 2>/dev/null) || "
        f"{{ echo {msg} >&2; exit {NO_SUCH_USER_EXIT}; }}",
        f"home=$(getent passwd {q} | cut -d: -f6)",
    ])
