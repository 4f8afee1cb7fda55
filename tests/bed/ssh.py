"""SSH bed nodes: real sshd processes on loopback addresses 127.0.0.11, .12, ...

Each node has its own ed25519 host key, port, PidFile and sshd_config; one client key logs in
as root everywhere and one known_hosts file lists every node as `[127.0.0.x]:port key`.
Sessions get per-node environment through sshd_config `SetEnv`:
  FLEETDECK_BED_NODE=<name> FDBED_NODE_DIR=<dir>    always
  DOCKER_HOST=unix://<socket>                       nodes with docker=True
  LD_LIBRARY_PATH=<fake NVML dir> FAKE_NVML_STATE   nodes with fake GPUs
  SLURM_CONF=<conf> SBATCH_OUTPUT=<jobs dir>/...    nodes created with a Slurm cluster
  HOME=<dir>/home                                   root's logins (`Match User root`)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.bed.dockerd import DockerDaemon
from tests.bed.fake_nvml import FakeGpu, FakeNvml, FakeNvmlState, as_state
from tests.bed.procs import (
    Daemon,
    free_port,
    kill_mentioning,
    port_accepts,
    remove_tree,
    wait_for,
)
from tests.bed.slurm import SlurmCluster

SSHD = "/usr/sbin/sshd"
FIRST_OCTET = 11
LAST_OCTET = 254


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True,
    )


def fingerprint(public_key_line: str) -> str:
    """OpenSSH SHA256 fingerprint of an `ssh-ed25519 AAAA...` line."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sshd_config(*, listen: str, host_key: Path, pidfile: Path, authorized_keys: str,
                env: Mapping[str, str], root_home: Path) -> str:
    """An sshd_config for a bed node: key logins only, `env` for every session, and for
    root a home of the node's own (`root_home`), so the machine's root ~/.bashrc (which may
    run `pyenv init`, racing on a rehash lock and writing to stderr) is never read."""
    if any(" " in v or '"' in v for v in env.values()):
        raise ValueError(f"SetEnv values must not contain spaces or quotes: {dict(env)}")
    setenv = " ".join(f"{k}={v}" for k, v in env.items())
    return f"""\
ListenAddress {listen}
HostKey {host_key}
PidFile {pidfile}
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {authorized_keys}
AcceptEnv LANG LC_*
SetEnv {setenv}
MaxStartups 200:30:400
MaxSessions 64
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
LogLevel VERBOSE
Subsystem sftp internal-sftp
Match User root
  SetEnv HOME={root_home} {setenv}
"""


class SshNode:
    """One bed node: its own sshd (and dockerd / fake GPUs / Slurm client env when asked)."""

    def __init__(self, bed: SshBed, octet: int, *, docker: bool,
                 nvml: FakeNvmlState | None, slurm: SlurmCluster | None) -> None:
        self.bed = bed
        self.name = f"node{octet}"
        self.host = f"127.0.0.{octet}"
        self.user = "root"
        self.dir = bed.root / self.name
        remove_tree(self.dir)  # left by an earlier node on this address
        self.dir.mkdir(parents=True)
        self.identity_file: Path = bed.identity_file
        self.known_hosts: Path = bed.known_hosts
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        keygen(self.host_key_path, f"hostkey-{self.name}")
        self.host_public_key = " ".join(
            Path(f"{self.host_key_path}.pub").read_text().split()[:2]
        )
        self.host_key_fingerprint = fingerprint(self.host_public_key)
        self.port = 0
        self.docker: DockerDaemon | None = None
        self.nvml: FakeNvml | None = None
        self.slurm = slurm
        # FDBED_NODE_DIR marks every process started through this node, so destroy() and the
        # session teardown can find even detached ones.
        self.env: dict[str, str] = {
            "FLEETDECK_BED_NODE": self.name,
            "FDBED_NODE_DIR": str(self.dir),
        }
        # Root logs in with a home of this node's own (`Match User root` + `SetEnv HOME`), as
        # on a machine of its own: bash, started by sshd, reads ~/.bashrc, and the machine's
        # root ~/.bashrc may run `pyenv init`, whose rehash lock races between concurrent
        # logins and writes to stderr. Job folders under ~ are then per node, too.
        self.root_home = self.dir / "home"
        self.root_home.mkdir()
        if docker:
            self.docker = DockerDaemon(self.dir / "d", self.name)
            self.env.update(self.docker.env)
        if nvml is not None:
            self.nvml = FakeNvml(self.dir / "nvml.state", bed.nvml_lib_dir(), nvml)
            self.env.update(self.nvml.env)
        if slurm is not None:
            self.env.update(slurm.env)
        self.sshd = Daemon(
            f"sshd {self.name}", [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
            log_path=self.dir / "sshd.log", pidfile=self.dir / "sshd.pid",
        )

    # ---- attributes used by fleetdeck configs ----

    @property
    def docker_socket(self) -> Path | None:
        return self.docker.socket if self.docker is not None else None

    @property
    def nvml_state_path(self) -> Path | None:
        return self.nvml.state_path if self.nvml is not None else None

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_public_key}"

    def config_toml(self) -> str:
        """This node as a fleetdeck `[[nodes]]` table."""
        lines = [
            "[[nodes]]",
            f"name = {_toml_str(self.name)}",
            f"host = {_toml_str(self.host)}",
            f"port = {self.port}",
            f"user = {_toml_str(self.user)}",
            f"identity_file = {_toml_str(str(self.identity_file))}",
            'transport = "ssh"',
        ]
        if self.docker_socket is not None:
            lines.append(f"docker_socket = {_toml_str(str(self.docker_socket))}")
        return "\n".join(lines) + "\n"

    # ---- lifecycle ----

    def _write_config(self) -> None:
        (self.dir / "sshd_config").write_text(sshd_config(
            listen=f"{self.host}:{self.port}", host_key=self.host_key_path,
            pidfile=self.dir / "sshd.pid",
            authorized_keys=f"{self.bed.authorized_keys} {self.bed.user_keys}/%u.pub",
            env=self.env, root_home=self.root_home))

    def start(self, *, timeout_s: float = 20.0) -> None:
        """Start sshd (again): same host key and port; dockerd is started too if not running."""
        if self.docker is not None and not self.docker.daemon.is_running:
            self.docker.start()
        if self.sshd.is_running:
            return
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privsep directory
        first = self.port == 0
        for _attempt in range(5):
            if first:
                self.port = free_port(self.host)
                self._write_config()
            self.sshd.start()

            def ready() -> bool:
                if not self.sshd.is_running:
                    return True
                return port_accepts(self.host, self.port, banner=b"SSH-")

            wait_for(ready, timeout_s=timeout_s,
                     what=f"sshd {self.name} on {self.host}:{self.port}")
            if self.sshd.is_running:
                if first:
                    self.bed.rewrite_known_hosts()
                return
            if not first:
                break  # the fixed port is taken; do not silently move the node
        self.sshd.ensure_alive()

    def stop(self) -> None:
        """SIGKILL sshd and its current descendants (open sessions). Processes already detached
        from their session (parent gone) and dockerd keep running, as on a host whose sshd
        died; see crash() for losing everything."""
        self.sshd.kill()

    def crash(self) -> None:
        """Like a node crash: SIGKILL sshd, dockerd (and its containers) and every process
        started through this node, detached ones included. Slurm job processes are spared (they
        run on the cluster's node, not here). start() brings sshd and dockerd back."""
        self.sshd.kill()
        if self.docker is not None:
            self.docker.daemon.kill()
        kill_mentioning(self.dir, spare_env="SLURM_JOB_ID")

    def destroy(self) -> None:
        """Stop sshd and dockerd, kill whatever was started through the node, remove its dir."""
        self.stop()
        if self.docker is not None:
            self.docker.stop()
        kill_mentioning(self.dir)
        remove_tree(self.dir)

    @property
    def is_running(self) -> bool:
        return self.sshd.is_running

    # ---- conveniences for tests ----

    def ssh_argv(self, command: str | None = None) -> list[str]:
        argv = [
            "ssh", "-p", str(self.port), "-i", str(self.identity_file),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            f"{self.user}@{self.host}",
        ]
        if command is not None:
            argv.append(command)
        return argv

    def run(self, command: str, *, input_text: str | None = None,
            timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `command` on the node through the OpenSSH client (not checked)."""
        return subprocess.run(self.ssh_argv(command), input=input_text, capture_output=True,
                              text=True, timeout=timeout_s, check=False)

    def asyncssh_options(self) -> dict[str, Any]:
        """Keyword arguments for `asyncssh.connect(**node.asyncssh_options())`."""
        return {
            "host": self.host, "port": self.port, "username": self.user,
            "client_keys": [str(self.identity_file)], "known_hosts": str(self.known_hosts),
        }

    def __repr__(self) -> str:
        return f"SshNode({self.name} {self.host}:{self.port} docker={self.docker is not None})"


def fleet_config_toml(nodes: Sequence[SshNode], *, known_hosts: Path | None = None) -> str:
    """An `[ssh]` table plus one `[[nodes]]` table per node, ready to append to a config."""
    if not nodes and known_hosts is None:
        raise ValueError("need nodes or known_hosts")
    kh = known_hosts if known_hosts is not None else nodes[0].known_hosts
    parts = [f"[ssh]\nknown_hosts = {_toml_str(str(kh))}\n"]
    parts += [node.config_toml() for node in nodes]
    return "\n".join(parts)


class SshBed:
    """Owns the client key, known_hosts and every node of one test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        keys = root / "client"
        keys.mkdir(exist_ok=True)
        self.identity_file = keys / "id_ed25519"
        keygen(self.identity_file, "fleetdeck-bed-client")
        self.client_public_key = Path(f"{self.identity_file}.pub").read_text().strip()
        self.authorized_keys = keys / "authorized_keys"
        self.authorized_keys.write_text(self.client_public_key + "\n")
        self.user_keys = keys / "users"  # <login>.pub: keys of other bed logins (authorize)
        self.user_keys.mkdir(mode=0o755, exist_ok=True)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("")
        self.all_nodes: list[SshNode] = []
        self._pool: dict[tuple[bool, bool, int], list[SshNode]] = {}
        self._lock = threading.Lock()
        self._lib_dir: Path | None = None

    def authorize(self, login: str, public_key: str) -> None:
        """Let `login` (e.g. a bed user) log in to every node with `public_key`."""
        path = self.user_keys / f"{login}.pub"
        path.write_text(public_key.strip() + "\n")
        path.chmod(0o644)

    def nvml_lib_dir(self) -> Path:
        if self._lib_dir is None:
            from tests.bed.fake_nvml import build

            self._lib_dir = build()
        return self._lib_dir

    def _next_octet(self) -> int:
        used = {int(n.host.rsplit(".", 1)[1]) for n in self.all_nodes}
        for octet in range(FIRST_OCTET, LAST_OCTET + 1):
            if octet not in used:
                return octet
        raise RuntimeError("no free 127.0.0.x address left for bed nodes")

    def rewrite_known_hosts(self) -> None:
        """Rewrite known_hosts with one line per live node (atomic replace)."""
        with self._lock:
            lines = [n.known_hosts_line for n in self.all_nodes if n.port]
            tmp = self.known_hosts.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(self.known_hosts)

    def new_node(self, *, docker: bool = False,
                 nvml: FakeNvmlState | Sequence[FakeGpu] | None = None,
                 slurm: SlurmCluster | None = None) -> SshNode:
        """A fresh node (own sshd, and dockerd when docker=True), started and reachable."""
        with self._lock:
            octet = self._next_octet()
            node = SshNode(self, octet, docker=docker,
                           nvml=as_state(nvml) if nvml is not None else None, slurm=slurm)
            self.all_nodes.append(node)
        try:
            node.start()
        except BaseException:
            self.destroy(node)
            raise
        return node

    def nodes(self, n: int, *, docker: bool = False,
              fake_nvml: Mapping[int, FakeNvmlState | Sequence[FakeGpu]] | None = None,
              slurm: SlurmCluster | None = None) -> list[SshNode]:
        """`n` shared nodes from the session pool (created on demand, restarted if stopped).

        Nodes are reused across tests with the same (docker, has fake GPUs, slurm) kind;
        fake_nvml maps a position in the returned list to the GPU state written for it.
        """
        fake_nvml = fake_nvml or {}
        bad = [k for k in fake_nvml if not 0 <= k < n]
        if bad:
            raise ValueError(f"fake_nvml keys {bad} are not positions in a list of {n} nodes")
        picked: list[SshNode] = []
        for i in range(n):
            key = (docker, i in fake_nvml, id(slurm) if slurm is not None else 0)
            pool = self._pool.setdefault(key, [])
            node = next((x for x in pool if x not in picked), None)
            if node is None:
                node = self.new_node(docker=docker,
                                     nvml=fake_nvml.get(i) if i in fake_nvml else None,
                                     slurm=slurm)
                pool.append(node)
            else:
                node.start()
                if node.nvml is not None:
                    node.nvml.replace(fake_nvml[i])
            picked.append(node)
        return picked

    def destroy(self, node: SshNode) -> None:
        node.destroy()
        with self._lock:
            if node in self.all_nodes:
                self.all_nodes.remove(node)
            for pool in self._pool.values():
                if node in pool:
                    pool.remove(node)
        self.rewrite_known_hosts()

    def close(self) -> None:
        for node in list(self.all_nodes):
            with contextlib.suppress(Exception):
                node.destroy()
        self.all_nodes.clear()
        self._pool.clear()
