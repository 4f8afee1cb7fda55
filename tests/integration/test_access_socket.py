"""The shared socket with real second uids (bed users): the per-user connection cap refuses
one user's extra connection with one line while another user still gets in, and `serve` says
in one line when [access] grants others a socket they cannot reach (and they indeed cannot)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from console.config import load
from console.engine.client import EngineClient
from console.engine.host import Engine
from console.engine.protocol import ErrorCode
from tests.bed.plugin import BedAccounts
from tests.bed.users import BedUser
from tests.helpers import cli, one_line_error, serve, write_config

# Run as a bed user: open N connections that say hello, then one more, print what that one
# was told, and hold everything open until stdin closes.
HOLD = r"""
import json, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
hello = json.dumps({"id": 1, "method": "hello", "params": {"protocol": 1}}).encode() + b"\n"
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(hello)
    f = s.makefile("rb")
    assert "result" in json.loads(f.readline()), "hello refused"
    held.append((s, f))
extra = socket.socket(socket.AF_UNIX)
extra.connect(path)
extra.settimeout(30)
print(extra.makefile("rb").readline().decode().strip(), flush=True)
sys.stdin.read()
"""

STATUS = r"""
import asyncio, sys
from pathlib import Path
from console.engine.client import EngineClient
from console.engine.api.requests import StatusQuery

async def main() -> None:
    async with await EngineClient.connect(Path(sys.argv[1])) as c:
        print((await c.call(StatusQuery())).caller)

asyncio.run(main())
"""


@pytest.fixture
def shared_dir(bed_root: Path, tmp_path: Path) -> Path:
    """A folder every bed user can pass (under the 0755 bed root), one per test."""
    d = bed_root / "access-socket" / tmp_path.name
    d.mkdir(parents=True, mode=0o755)
    d.parent.chmod(0o755)
    d.chmod(0o755)
    return d


async def run_as(user: BedUser, python: Path, script: str, *args: str,
                 ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *user.argv(python, "-c", script, *args), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=user.env(),
        cwd=user.home)


async def test_per_user_cap_refuses_one_uid_and_admits_another(
        bed_accounts: BedAccounts, user_cli: Path, shared_dir: Path, tmp_path: Path) -> None:
    alice = bed_accounts.user("alice", groups=["members"])
    bob = bed_accounts.user("bob", groups=["members"])
    sock = shared_dir / "engine.sock"
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb",
                       f'[engine]\nsocket = "{sock}"\ncollect = false\nschedule = false\n'
                       "max_connections_per_user = 4\n\n"
                       '[access]\nmembers = ["@fdbed-members"]\n')
    python = user_cli.parent / "python"
    eng = Engine(load(str(cfg)))
    await eng.start()
    try:
        hold = await run_as(alice, python, HOLD, str(sock), "4")
        assert hold.stdout is not None and hold.stdin is not None
        line = (await asyncio.wait_for(hold.stdout.readline(), 60)).decode()
        assert line, (await hold.stderr.read()).decode() if hold.stderr else ""
        err = json.loads(line)["error"]
        assert err["code"] == ErrorCode.BUSY
        assert err["message"] == (f"{alice.name} has 4 connections open to the engine "
                                  "already; close some and try again")
        for _ in range(600):  # until the engine let the refused one go; hers stay
            if eng.server.per_uid[alice.uid] == 4:
                break
            await asyncio.sleep(0.05)
        assert eng.server.per_uid[alice.uid] == 4
        # bob, another uid, is not held to alice's count; the owner neither
        other = await run_as(bob, python, STATUS, str(sock))
        out, errs = await asyncio.wait_for(other.communicate(), 120)
        assert other.returncode == 0, errs.decode()
        assert out.decode().strip() == bob.name
        async with await EngineClient.connect(sock) as c:
            assert (await c.call("status"))["caller"] == "root"
        hold.stdin.close()
        await asyncio.wait_for(hold.wait(), 60)
    finally:
        eng.request_stop()
        await eng.wait_stopped()


def test_serve_says_in_one_line_when_others_cannot_reach_the_socket(
        bed_accounts: BedAccounts, user_cli: Path, shared_dir: Path, tmp_path: Path) -> None:
    alice = bed_accounts.user("alice", groups=["members"])
    access = '[access]\nmembers = ["@fdbed-members"]\n'
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    blocked = private / "engine.sock"
    cfg = write_config(tmp_path / "blocked.toml", tmp_path / "blocked.duckdb",
                       f'[engine]\nsocket = "{blocked}"\n\n{access}')
    with serve(cfg) as proc:
        res = alice.run(user_cli, "--engine", str(blocked), "status")
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert "permission denied" in one_line_error(res)
    proc.wait(30)
    err = proc.stderr.read() if proc.stderr else ""
    warned = [ln for ln in err.splitlines() if "grants other users" in ln]
    assert len(warned) == 1, err[-2000:]
    assert f"cannot reach {blocked}: {private} lacks o+x" in warned[0]
    # the same engine with its socket where members can pass: no warning, alice gets in
    reachable = shared_dir / "engine.sock"
    cfg = write_config(tmp_path / "shared.toml", tmp_path / "shared.duckdb",
                       f'[engine]\nsocket = "{reachable}"\n\n{access}')
    with serve(cfg) as proc:
        res = alice.run(user_cli, "--engine", str(reachable), "whoami", "--format", "json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["role"] == "member"
        assert cli("--config", str(cfg), "status").returncode == 0
    proc.wait(30)
    err = proc.stderr.read() if proc.stderr else ""
    assert "grants other users" not in err
