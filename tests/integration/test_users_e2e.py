"""Real Linux users against one engine (running as root) on the local node: jobs run as their
owner, secret env reaches the job but nobody else. The CLI runs installed, as each user."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bed.plugin import BedAccounts
from tests.bed.users import BedUser
from tests.integration.jobs_e2e import Fleet


@dataclass(frozen=True)
class Bed:
    fleet: Fleet
    socket: Path
    cli: Path
    alice: BedUser  # member
    bob: BedUser  # member

    def as_user(self, user: BedUser, *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return user.run(self.cli, "--engine", str(self.socket), *args, timeout=timeout)

    def json_as(self, user: BedUser, *args: str) -> Any:
        res = self.as_user(user, *args, "--format", "json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)


@pytest.fixture(scope="module")
def bed(bed_accounts: BedAccounts, user_cli: Path, bed_root: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    alice = bed_accounts.user("alice", groups=["members"])
    bob = bed_accounts.user("bob", groups=["members"])
    run = bed_root / "users-engine"  # under the 0755 bed root: reachable by every user
    run.mkdir(mode=0o755, exist_ok=True)
    sock = run / "engine.sock"
    toml = (f'[collect]\ninterval_s = 0.5\n\n[scheduler]\ncycle_s = 0.2\n\n'
            f'[engine]\nsocket = "{sock}"\n')
    fleet = Fleet(tmp_path_factory.mktemp("users"), toml)
    with fleet.serving():
        yield Bed(fleet, sock, user_cli, alice, bob)


def test_jobs_run_as_their_owner_with_secret_env(bed: Bed) -> None:
    owner = bed.alice.name
    [job] = bed.fleet.submit("--user", owner, "--secret-env", "API_TOKEN=tok-123",
                             "--shell", "--", 'id -un; pwd; echo "token=$API_TOKEN"')
    row = bed.fleet.wait_done([job])[job]
    assert row["state"] == "succeeded", row
    assert bed.fleet.logs(job).splitlines() == [owner, str(bed.alice.home), "token=tok-123"]
    # root is an admin: it sees the value; the row never carries it for anyone else
    [mine] = [r for r in bed.fleet.jobs() if r["id"] == job]
    assert mine["secret_env"] == {"API_TOKEN": "tok-123"}
    audit = bed.fleet.run("audit", "--format", "json")
    assert audit.returncode == 0 and "tok-123" not in audit.stdout


def test_owner_without_an_account_is_refused_in_one_line(bed: Bed) -> None:
    [job] = bed.fleet.submit("--user", "fdbed-nobody", "--", "true")
    row = bed.fleet.wait_done([job])[job]
    assert row["state"] == "failed", row
    assert "has no user fdbed-nobody" in row["reason"] and "\n" not in row["reason"]


def test_installed_cli_runs_as_a_bed_user(bed: Bed) -> None:
    res = bed.alice.run(bed.cli, "--version")
    assert res.returncode == 0 and res.stdout.startswith("fleetdeck "), res.stderr
    assert bed.alice.run("id", "-un").stdout.strip() == bed.alice.name
