"""Process plumbing for the test bed: daemons, readiness waits, teardown, stale-bed reaping.

Every daemon the bed starts runs as a direct child of the test process, in its own session;
started from the main thread it also gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the test
process even when that is killed hard.
Bed directories are /tmp/fdbed-XXXX (short: unix socket paths must stay under 108 bytes) and
carry an `owner.pid`; a later session removes beds whose owner is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

BED_PREFIX = "fdbed-"
_PR_SET_PDEATHSIG = 1

_live: list[Daemon] = []


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc_dir in Path("/proc").iterdir():
        entry = proc_dir.name
        if not entry.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces/parens; fields resume after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (children first found, depth-first)."""
    children = _children_map()
    out: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(children.get(child, []))
    return out


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to `pid` and every descendant (sshd sessions call setsid, so no killpg)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)


def wait_for(
    check: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def port_accepts(host: str, port: int, *, banner: bytes | None = None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            if banner is None:
                return True
            sock.settimeout(2.0)
            return sock.recv(64).startswith(banner)
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    """One long-running child process with a log file; stop() kills it and its descendants."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        pidfile: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.pidfile = pidfile
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.is_running:
            return
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)
        # PDEATHSIG fires when the forking *thread* ends, so only use it from the main thread.
        main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if main else None,
            )
        if self not in _live:
            _live.append(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, graceful_s: float = 5.0) -> None:
        """SIGTERM, wait up to `graceful_s`, then SIGKILL the process and its descendants."""
        proc = self.proc
        if proc is not None:
            tree = [proc.pid, *descendants(proc.pid)]
            if proc.poll() is None and graceful_s > 0:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=graceful_s)
            for pid in tree:
                kill_tree(pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)
        if self in _live:
            _live.remove(self)

    def kill(self) -> None:
        """Hard stop, like a crash: SIGKILL the process tree without waiting."""
        self.stop(graceful_s=0)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def ensure_alive(self) -> None:
        if not self.is_running:
            code = self.proc.returncode if self.proc is not None else None
            raise RuntimeError(
                f"{self.name} exited (code {code}); log {self.log_path}:\n{self.log_tail()}"
            )


def stop_all() -> None:
    for daemon in reversed(list(_live)):
        with contextlib.suppress(Exception):
            daemon.stop(graceful_s=2.0)


atexit.register(stop_all)


def unmount_under(root: Path) -> None:
    """Lazily unmount every mount point below `root` (dockerd leaves shm mounts behind)."""
    prefix = str(root.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4] for line in lines]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_tree(root: Path) -> None:
    unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


def make_bed_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix=BED_PREFIX, dir="/tmp"))
    root.chmod(0o755)
    (root / "owner.pid").write_text(f"{os.getpid()}\n")
    return root


def _ancestors() -> set[int]:
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        pids.add(pid)
    return pids


def kill_mentioning(path: Path, *, spare_env: str | None = None) -> list[int]:
    """SIGKILL every process (and its descendants) whose command line or environment mentions
    `path`: daemons by their config paths, session processes by the SetEnv markers, Slurm
    steps by SLURM_CONF. The calling process and its ancestors are spared, and so are
    processes whose environment has a variable named `spare_env`."""
    marker = str(path).encode()
    spare = f"\0{spare_env}=".encode() if spare_env else None
    spared = _ancestors()
    killed: list[int] = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) in spared:
            continue
        try:
            environ = b"\0" + (proc_dir / "environ").read_bytes()
            mentions = marker in (proc_dir / "cmdline").read_bytes() or marker in environ
        except OSError:
            continue
        if spare is not None and spare in environ:
            continue
        if mentions:
            kill_tree(int(proc_dir.name))
            killed.append(int(proc_dir.name))
    return killed


def reap_stale_beds(tmp: Path = Path("/tmp")) -> list[Path]:
    """Kill the daemons of bed dirs whose owning test process is gone; remove the dirs."""
    reaped: list[Path] = []
    for bed in tmp.glob(BED_PREFIX + "*"):
        owner = read_pidfile(bed / "owner.pid")
        if owner is None or pid_alive(owner):
            continue
        kill_mentioning(bed)
        remove_tree(bed)
        reaped.append(bed)
    return reaped
