"""A user the kernel does not let open the engine socket gets one line, not a traceback (#17)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import pytest

from tests.bed.require import unavailable
from tests.helpers import run_main

NOBODY = 65534


def test_socket_the_user_may_not_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        unavailable("switching to another user to be refused the socket needs root")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("FLEETDECK_CONFIG", raising=False)
    monkeypatch.delenv("FLEETDECK_ENGINE", raising=False)
    shared = Path(tempfile.mkdtemp(prefix="fd-sock-"))
    try:
        shared.chmod(0o755)
        sock_path = shared / "engine.sock"
        config = shared / "config.toml"
        config.write_text(f'[engine]\nsocket = "{sock_path}"\n')
        config.chmod(0o644)
        run_main("--config", config, "status")  # imports everything while still root
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(sock_path))
        server.listen()
        sock_path.chmod(0o600)  # the owner's only, as the engine makes it
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: another user, then the real command
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                rc, _, err = run_main("--config", config, "status")
                os.write(write_fd, json.dumps([rc, err]).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as r:
            answer = r.read()
        os.waitpid(pid, 0)
        server.close()
        rc, err = json.loads(answer)
        assert rc == 1, err
        assert "Traceback" not in err
        assert err.splitlines() == [
            f"fleetdeck: not allowed to open the engine socket {sock_path} (permission denied; "
            "ask the engine's owner for access)"], err
    finally:
        for p in shared.iterdir():
            p.unlink()
        shared.rmdir()
