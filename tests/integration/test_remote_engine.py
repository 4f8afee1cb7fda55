"""`--engine ssh://...`: the CLI reaches an engine through a bed sshd node's unix-socket
forwarding, honouring an OpenSSH client config and `[ssh] known_hosts`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bed.ssh import SshBed, SshNode
from tests.helpers import cli, one_line_error, serve, write_config


@dataclass(frozen=True)
class RemoteEngine:
    proc: subprocess.Popen[str]
    socket: Path
    node: SshNode
    client_config: Path  # the client's fleetdeck config: [ssh] known_hosts and config_file

    def url(self, host: str = "fdbed-engine", path: Path | None = None) -> str:
        return f"ssh://{host}{path or self.socket}"


@pytest.fixture(scope="module")
def remote(ssh_bed: SshBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteEngine]:
    d = tmp_path_factory.mktemp("remote")
    sock = d / "run" / "engine.sock"
    cfg = write_config(d / "engine.toml", d / "data" / "store.duckdb",
                       f'[engine]\nsocket = "{sock}"\n')
    node = ssh_bed.nodes(1)[0]
    ssh_config = d / "ssh_config"
    ssh_config.write_text(
        f"Host fdbed-engine\n  HostName {node.host}\n  Port {node.port}\n  User {node.user}\n"
        f"  IdentityFile {node.identity_file}\n")
    client = d / "client.toml"
    client.write_text(f'[ssh]\nknown_hosts = "{ssh_bed.known_hosts}"\n'
                      f'config_file = "{ssh_config}"\nuse_agent = false\n')
    with serve(cfg) as proc:
        yield RemoteEngine(proc, sock, node, client)


def test_status_and_jobs_over_ssh(remote: RemoteEngine) -> None:
    res = cli("--config", str(remote.client_config), "--engine", remote.url(),
              "status", "--format", "json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["pid"] == remote.proc.pid
    assert info["socket"] == str(remote.socket)
    res = cli("--config", str(remote.client_config), "submit", "--engine", remote.url(),
              "--format", "json", "--", "true")
    assert res.returncode == 0, res.stderr
    ids = json.loads(res.stdout)
    # $FLEETDECK_ENGINE works the same
    res = cli("--config", str(remote.client_config), "jobs", "--format", "json",
              env={"FLEETDECK_ENGINE": remote.url()})
    assert res.returncode == 0, res.stderr
    assert set(ids) <= {j["id"] for j in json.loads(res.stdout)}


def test_unknown_host_key_is_refused(remote: RemoteEngine, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    text = remote.client_config.read_text().replace(
        f'known_hosts = "{remote.node.known_hosts}"', f'known_hosts = "{empty}"')
    cfg = tmp_path / "client.toml"
    cfg.write_text(text)
    res = cli("--config", str(cfg), "status", "--engine", remote.url())
    assert res.returncode == 3
    line = one_line_error(res)
    assert "unknown host key" in line and remote.node.host_key_fingerprint in line


def test_changed_host_key_is_refused(remote: RemoteEngine, ssh_bed: SshBed,
                                     tmp_path: Path) -> None:
    other_key = " ".join(ssh_bed.client_public_key.split()[:2])  # a key the host lacks
    known = tmp_path / "known_hosts"
    known.write_text(f"[{remote.node.host}]:{remote.node.port} {other_key}\n")
    text = remote.client_config.read_text().replace(
        f'known_hosts = "{remote.node.known_hosts}"', f'known_hosts = "{known}"')
    cfg = tmp_path / "client.toml"
    cfg.write_text(text)
    res = cli("--config", str(cfg), "status", "--engine", remote.url())
    assert res.returncode == 3
    assert "host key CHANGED" in one_line_error(res)


def test_no_engine_at_that_path_is_one_line(remote: RemoteEngine, tmp_path: Path) -> None:
    res = cli("--config", str(remote.client_config), "--engine",
              remote.url(path=tmp_path / "nothing.sock"), "status")
    assert res.returncode == 3
    assert "no fleetdeck engine answers on" in one_line_error(res)


@pytest.mark.parametrize("bad", ["http://host/x", "ssh://", "ssh://h:99999/x", "ssh://u:pw@h"])
def test_bad_address_is_bad_input(bad: str) -> None:
    res = cli("--engine", bad, "status")
    assert res.returncode == 2
    assert one_line_error(res).startswith("--engine: expected ssh://")


def test_console_with_engine_named_never_embeds_one(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    res = cli("--engine", str(sock), "--store", str(tmp_path / "s.duckdb"))
    assert res.returncode != 0
    assert "no fleetdeck engine is running" in one_line_error(res)
    assert not sock.exists() and not (tmp_path / "s.duckdb").exists()
