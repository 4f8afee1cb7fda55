"""Per-node dockerd daemons and the busybox test image.

Each daemon has its own data-root, exec-root (its own managed containerd lives there), unix
socket and containerd namespace, uses the vfs storage driver and no bridge/iptables, so several
run side by side without touching the host's networking. Containers run with host-visible pids
whose /proc/<pid>/cgroup paths end in /docker/<container id>.

Docker here is 20.10 (API 1.41): docker SDK clients must pass version="auto" (the SDK's default
1.45 is refused); `DockerDaemon.client()` does.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import subprocess
import tarfile
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.bed.procs import Daemon, wait_for

BUSYBOX = Path("/bin/busybox")
BUSYBOX_TAG = "fleetdeck-test/busybox:latest"
_tarball_lock = threading.Lock()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=2.0)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        sock.connect(self._path)
        self.sock = sock


def ping(socket_path: Path) -> bool:
    """True when the daemon at `socket_path` answers GET /_ping with OK."""
    conn = _UnixHTTPConnection(socket_path)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().read() == b"OK"
    except OSError:
        return False
    finally:
        conn.close()


class DockerDaemon:
    """One dockerd with its own state under `root` (keep `root` short: socket path limit)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.socket = root / "docker.sock"
        self.pidfile = root / "dockerd.pid"
        root.mkdir(parents=True, exist_ok=True)
        namespace = f"fdbed-{name}-{uuid.uuid4().hex[:8]}"
        argv = [
            "dockerd",
            "--storage-driver=vfs",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'x'}",
            f"--pidfile={self.pidfile}",
            f"--host=unix://{self.socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--shutdown-timeout=2",
            # Distinct namespaces keep daemons apart even if a system containerd is running.
            f"--containerd-namespace={namespace}",
            f"--containerd-plugins-namespace={namespace}-p",
        ]
        self.daemon = Daemon(f"dockerd {name}", argv, log_path=root / "dockerd.log",
                             pidfile=self.pidfile)
        self._imported: set[str] = set()

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points the docker CLI at this daemon."""
        return {"DOCKER_HOST": self.base_url}

    @property
    def is_running(self) -> bool:
        return self.daemon.is_running and ping(self.socket)

    def start(self, *, timeout_s: float = 60.0) -> None:
        if self.daemon.is_running:
            return
        self.socket.unlink(missing_ok=True)
        self.daemon.start()

        def ready() -> bool:
            self.daemon.ensure_alive()
            return ping(self.socket)

        wait_for(ready, timeout_s=timeout_s, what=f"dockerd {self.name} /_ping")
        self._imported.clear()

    def stop(self) -> None:
        if self.daemon.is_running:
            with contextlib.suppress(Exception):
                self.remove_all_containers()
        self.daemon.stop(graceful_s=10.0)

    def client(self, **kwargs: Any) -> Any:
        """A docker SDK client for this daemon (version="auto", required for API 1.41)."""
        import docker

        kwargs.setdefault("version", "auto")
        kwargs.setdefault("timeout", 60)
        return docker.DockerClient(base_url=self.base_url, **kwargs)

    def cli(self, *args: str, timeout_s: float = 60.0, check: bool = True) -> str:
        """Run the docker CLI against this daemon; returns stdout."""
        result = subprocess.run(
            ["docker", "--host", self.base_url, *args],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def remove_all_containers(self) -> None:
        ids = self.cli("ps", "-aq", timeout_s=10).split()
        if ids:
            self.cli("rm", "-f", *ids, timeout_s=30, check=False)

    def import_busybox(self, tarball: Path, tag: str = BUSYBOX_TAG) -> str:
        """Import the busybox rootfs tarball as `tag` (once per daemon start)."""
        if tag in self._imported:
            return tag
        self.cli("import", "--change", 'CMD ["sh"]', str(tarball), tag)
        self._imported.add(tag)
        return tag


def busybox_tarball(dest: Path) -> Path:
    """Build (once) a rootfs tarball: static /bin/busybox plus a symlink per applet."""
    with _tarball_lock:
        if dest.exists():
            return dest
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:
            for d, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777),
                            ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = mode
                tar.addfile(info)
            tar.add(str(BUSYBOX), arcname="bin/busybox")
            for applet in applets:
                if applet == "busybox":
                    continue
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                tar.addfile(info)
            for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                               ("etc/group", "root:x:0:\n")):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        tmp.replace(dest)
        return dest
