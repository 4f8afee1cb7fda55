"""Real Linux users for end-to-end tests of roles, and a fleetdeck install they can run.

Users and groups are created with `useradd` / `groupadd`, named `fdbed-*`, and reused: another
test session (or another worktree's) may be using the same account right now, so they are
never removed by a session; `remove_bed_accounts()` removes them when nothing runs (e.g. from
a shell: `python -c 'from tests.bed.users import remove_bed_accounts; remove_bed_accounts()'`).
Creation is serialised across processes with a lock file and idempotent.

The repository's `.venv` cannot be run by another user when its interpreter lives under
/root (pyenv), so `user_install` makes a venv on the system python that loads `.venv`'s
site-packages (fleetdeck itself is an editable install there) and has the same `fleetdeck`
entry point: the installed CLI, runnable by every bed user.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PREFIX = "fdbed-"
_LOCK = Path("/tmp/fdbed-accounts.lock")
_NAME_IN_USE = 9  # useradd / groupadd: the name is already in use


@dataclass(frozen=True, slots=True)
class BedUser:
    """A real account on this machine; `run` executes a command as it (runuser)."""

    name: str
    uid: int
    gid: int
    home: Path

    def argv(self, *cmd: str | os.PathLike[str]) -> list[str]:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", self.name, "--", *(str(c) for c in cmd)]

    def run(self, *cmd: str | os.PathLike[str], env: Mapping[str, str] | None = None,
            timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*cmd), capture_output=True, text=True,
                              timeout=timeout, env=self.env(env), cwd=cwd or self.home)

    def popen(self, *cmd: str | os.PathLike[str],
              env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*cmd), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(env),
                                cwd=self.home)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A clean environment for the user: their HOME, nothing of root's."""
        base = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        return {**base, **(extra or {})}


@contextmanager
def _accounts_lock() -> Iterator[None]:
    fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_group(name: str) -> str:
    """The group `fdbed-<name>`, created if missing; returns its full name."""
    full = _full(name)
    with _accounts_lock():
        if not _group_exists(full):
            _run_tolerant(["groupadd", full])
    return full


def ensure_user(name: str, groups: Sequence[str] = ()) -> BedUser:
    """The user `fdbed-<name>` (home, own group, /bin/sh), created if missing, and a member
    of each `fdbed-` group in `groups` (full names, from `ensure_group`)."""
    full = _full(name)
    with _accounts_lock():
        try:
            pw = pwd.getpwnam(full)
        except KeyError:
            # password "*": no password login, yet not "locked" (sshd without PAM refuses those)
            _run_tolerant(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh",
                           "--password", "*", full])
            pw = pwd.getpwnam(full)
        missing = [g for g in groups if full not in grp.getgrnam(g).gr_mem]
        fix = ["-a", "-G", ",".join(missing)] if missing else []
        # also unlocks an account an older bed made with useradd's locked default
        subprocess.run(["usermod", "--password", "*", *fix, full], check=True,
                       capture_output=True)
    home = Path(pw.pw_dir)
    return BedUser(full, pw.pw_uid, pw.pw_gid, home)


def remove_bed_accounts() -> list[str]:
    """Remove every `fdbed-` user (with its home) and group; returns what was removed."""
    removed: list[str] = []
    with _accounts_lock():
        for pw in pwd.getpwall():
            if pw.pw_name.startswith(PREFIX):
                subprocess.run(["userdel", "--remove", pw.pw_name], capture_output=True)
                removed.append(pw.pw_name)
        for g in grp.getgrall():
            if g.gr_name.startswith(PREFIX) and _group_exists(g.gr_name):
                subprocess.run(["groupdel", g.gr_name], capture_output=True)
                removed.append(g.gr_name)
    return removed


def user_install(root: Path, repo_venv: Path | None = None) -> Path:
    """A `fleetdeck` command every user can run (see the module docstring); returns its path.

    Raises RuntimeError naming what is missing when it cannot be made.
    """
    venv = Path(repo_venv or Path(sys.prefix))
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    entry = venv / "bin" / "fleetdeck"
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not entry.is_file() or not site.is_dir():
        raise RuntimeError(f"no installed fleetdeck in {venv}")
    if not system_python.is_file():
        raise RuntimeError(f"{system_python} (same minor version as the tests' python) missing")
    target = root / "user-venv"
    if not (target / "bin" / "python").exists():
        subprocess.run([str(system_python), "-m", "venv", "--without-pip", str(target)],
                       check=True, capture_output=True)
    user_site = Path(sysconfig.get_path("purelib", vars={"base": str(target),
                                                         "platbase": str(target)}))
    # "import" lines of a .pth run at start-up: addsitedir also reads .venv's own .pth files
    (user_site / "fleetdeck-bed.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    body = entry.read_text().split("\n", 1)[1]
    cli = target / "bin" / "fleetdeck"
    cli.write_text(f"#!{target / 'bin' / 'python'}\n{body}")
    cli.chmod(0o755)
    for d in (root, *target.parents):
        if d == Path("/"):
            break
        if not d.stat().st_mode & 0o001:
            raise RuntimeError(f"{d} is not searchable by other users (mode "
                               f"{d.stat().st_mode & 0o777:o})")
    return cli


def _full(name: str) -> str:
    full = name if name.startswith(PREFIX) else PREFIX + name
    if len(full) > 32 or not full.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"bad bed account name {full!r}")
    return full


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _run_tolerant(argv: list[str]) -> None:
    """Run useradd/groupadd; a name another process created meanwhile is fine."""
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode not in (0, _NAME_IN_USE):
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")


def accounts_available() -> str | None:
    """None when this machine can make bed users, else why not."""
    if os.geteuid() != 0:
        return "bed users need root (useradd, runuser)"
    missing = [t for t in ("useradd", "groupadd", "usermod", "runuser", "setpriv")
               if shutil.which(t) is None]
    return f"missing {', '.join(missing)}" if missing else None
