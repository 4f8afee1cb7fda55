"""Real Linux users against one engine (running as root) on the local node: jobs run as their
owner, secret env reaches the job but nobody else, members act on their own jobs only, a
viewer reads only; and a member reaches the engine over SSH through a second bed sshd node
(status, submit, jobs, logs -f, the console under Pilot). The CLI runs installed, as each
user; every refusal is one line and audited."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bed.plugin import BedAccounts
from tests.bed.ssh import SshBed, SshNode, keygen
from tests.bed.users import BedUser
from tests.helpers import REPO, one_line_error
from tests.integration.jobs_e2e import Fleet


@dataclass(frozen=True)
class Bed:
    fleet: Fleet
    socket: Path
    cli: Path
    alice: BedUser  # member
    bob: BedUser  # member
    vera: BedUser  # viewer
    node: SshNode  # the sshd alice logs in to
    alice_config: Path  # alice's client config: [ssh] known_hosts, config_file

    def as_user(self, user: BedUser, *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return user.run(self.cli, "--engine", str(self.socket), *args, timeout=timeout)

    def json_as(self, user: BedUser, *args: str) -> Any:
        # right after the command: whatever follows `--` is the job's command line
        res = self.as_user(user, args[0], "--format", "json", *args[1:])
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)


def ssh_client_files(user: BedUser, ssh_bed: SshBed, node: SshNode, d: Path) -> Path:
    """`user`'s own key (authorized on the bed's nodes), known_hosts, an OpenSSH config naming
    the node `fdbed-engine`, and a fleetdeck config using them; returns the config."""
    d.mkdir(mode=0o700)
    keygen(d / "id_ed25519", f"{user.name}-bed")
    ssh_bed.authorize(user.name, (d / "id_ed25519.pub").read_text())
    (d / "known_hosts").write_text(node.known_hosts_line + "\n")
    (d / "ssh_config").write_text(
        f"Host fdbed-engine\n  HostName {node.host}\n  Port {node.port}\n  User {user.name}\n"
        f"  IdentityFile {d / 'id_ed25519'}\n")
    config = d / "config.toml"
    config.write_text(f'[ssh]\nknown_hosts = "{d / "known_hosts"}"\n'
                      f'config_file = "{d / "ssh_config"}"\nuse_agent = false\n')
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(d)], check=True)
    return config


@pytest.fixture(scope="module")
def bed(bed_accounts: BedAccounts, user_cli: Path, bed_root: Path, ssh_bed: SshBed,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    alice = bed_accounts.user("alice", groups=["members"])
    bob = bed_accounts.user("bob", groups=["members"])
    vera = bed_accounts.user("vera")
    run = bed_root / "users-engine"  # under the 0755 bed root: reachable by every user
    run.mkdir(mode=0o755, exist_ok=True)
    sock = run / "engine.sock"
    node = ssh_bed.nodes(1)[0]
    alice_config = ssh_client_files(alice, ssh_bed, node, run / "alice")
    toml = (f'[collect]\ninterval_s = 0.5\n\n[scheduler]\ncycle_s = 0.2\n\n'
            f'[engine]\nsocket = "{sock}"\n\n'
            f'[access]\nmembers = ["@fdbed-members"]\nviewers = ["{vera.name}"]\n')
    fleet = Fleet(tmp_path_factory.mktemp("users"), toml)
    with fleet.serving():
        yield Bed(fleet, sock, user_cli, alice, bob, vera, node, alice_config)


def test_jobs_run_as_their_owner_with_secret_env(bed: Bed) -> None:
    owner = bed.alice.name
    [job] = bed.fleet.submit("--user", owner, "--secret-env", "API_TOKEN=tok-123",
                             "--shell", "--", 'id -un; pwd; echo "token=$API_TOKEN"')
    row = bed.fleet.wait_done([job])[job]
    assert row["state"] == "succeeded", row
    assert bed.fleet.logs(job).splitlines() == [owner, str(bed.alice.home), "token=tok-123"]
    explain = bed.fleet.run("explain", str(job))
    assert f"runs as {owner} (its owner)" in explain.stdout, explain.stderr
    # a root engine's local node: `nodes` says jobs run as their owners
    assert {n["jobs_run_as"] for n in bed.fleet.json("nodes")} == {"each job's owner"}
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


def refused(res: subprocess.CompletedProcess[str], method: str) -> str:
    """The one-line refusal of a call (exit 1), naming the method."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    line = one_line_error(res)
    assert method in line, line
    return line


def test_members_act_on_their_own_jobs_only(bed: Bed) -> None:
    alice, bob = bed.alice, bed.bob
    [job] = bed.json_as(alice, "submit", "--secret-env", "API_TOKEN=alice-secret",
                        "--", "sleep", "300")
    bed.fleet.wait_states([job], ["running"])
    # bob: cannot stop it, cannot submit as alice, sees its secret masked
    refused(bed.as_user(bob, "stop", str(job)), "stop")
    refused(bed.as_user(bob, "submit", "--user", alice.name, "--", "true"), "submit")
    theirs = {r["id"]: r for r in bed.json_as(bob, "jobs")}
    assert theirs[job]["secret_env"] == {"API_TOKEN": "<secret>"}
    mine = {r["id"]: r for r in bed.json_as(alice, "jobs")}
    assert mine[job]["secret_env"] == {"API_TOKEN": "alice-secret"}
    # a viewer reads, never submits
    refused(bed.as_user(bed.vera, "submit", "--", "true"), "submit")
    assert job in {r["id"] for r in bed.json_as(bed.vera, "jobs")}
    # the owner stops it
    res = bed.as_user(alice, "stop", str(job))
    assert res.returncode == 0, res.stderr
    assert bed.fleet.wait_done([job])[job]["state"] == "stopped"
    # every refusal is in the audit trail, no secret anywhere in it
    audit = bed.fleet.run("audit", "--format", "json")
    assert audit.returncode == 0, audit.stderr
    assert "alice-secret" not in audit.stdout
    refusals = {(r["actor"], r["target"]): r for r in json.loads(audit.stdout)
                if r["target_kind"] == "method" and r["action"] == "refused"}
    for who, method in ((bob, "stop"), (bob, "submit"), (bed.vera, "submit")):
        row = refusals[(who.name, method)]
        assert json.loads(row["evidence"])["uid"] == who.uid and "\n" not in row["reason"]


def test_a_member_submits_and_runs_as_self(bed: Bed) -> None:
    [job] = bed.json_as(bed.alice, "submit", "--", "id", "-un")
    assert bed.fleet.wait_done([job])[job]["state"] == "succeeded"
    assert bed.fleet.logs(job).strip() == bed.alice.name


def test_member_over_ssh_status_submit_jobs_logs_console(bed: Bed) -> None:
    alice = bed.alice
    url = f"ssh://fdbed-engine{bed.socket}"

    def remote(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return alice.run(bed.cli, "--config", bed.alice_config, "--engine", url, *args,
                         timeout=timeout)

    res = remote("status", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["caller"] == alice.name  # sshd connected as alice
    res = remote("whoami", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["role"] == "member"
    res = remote("submit", "--format", "json", "--shell", "--",
                 "for i in 1 2 3; do echo line$i; sleep 0.5; done; id -un")
    assert res.returncode == 0, res.stderr
    [job] = json.loads(res.stdout)
    res = remote("jobs", "--format", "json")
    assert res.returncode == 0 and job in {r["id"] for r in json.loads(res.stdout)}
    bed.fleet.wait_states([job], ["running", "succeeded"])
    res = remote("logs", "-f", str(job))  # follows until the job ends
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["line1", "line2", "line3", alice.name]
    # the console, under Pilot, as alice over the same SSH address
    res = alice.run(f"{bed.cli.parent / 'python'}",
                    REPO / "tests" / "integration" / "console_as_user.py",
                    "--config", bed.alice_config, "--engine", url, str(job), timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.splitlines()[-1])
    assert (seen["user"], seen["role"], seen["embedded"]) == (alice.name, "member", False)
    assert seen["filter"] == f"user:{alice.name}" and str(job) in seen["shown"]
    assert seen["me"].startswith("you: ") and seen["me"].endswith(" today")
    assert seen["submit_offered"]


def test_a_member_gets_their_own_chargeback_only(bed: Bed) -> None:
    jobs = [*bed.fleet.submit("--user", bed.alice.name, "--", "sleep", "1"),
            *bed.fleet.submit("--user", bed.bob.name, "--", "sleep", "1")]
    assert {r["state"] for r in bed.fleet.wait_done(jobs).values()} == {"succeeded"}

    def users(who: BedUser, *extra: str) -> set[str]:
        res = bed.as_user(who, "report", "chargeback", "--format", "json", *extra)
        assert res.returncode == 0, res.stderr
        return {row["user"] for row in json.loads(res.stdout)["tables"]["chargeback"]}

    # the viewer reads every report; alice, a member, her own chargeback alone
    assert {bed.alice.name, bed.bob.name} <= users(bed.vera)
    assert users(bed.alice) == {bed.alice.name}
    assert users(bed.alice, "--user", bed.alice.name) == {bed.alice.name}
    line = refused(bed.as_user(bed.alice, "report", "chargeback", "--user", bed.bob.name),
                   "report_run")
    assert "a member gets their own chargeback only" in line
    refused(bed.as_user(bed.alice, "report", "usage"), "report_run")
    audit = bed.fleet.run("audit", "--format", "json")
    assert audit.returncode == 0, audit.stderr
    refusals = [r for r in json.loads(audit.stdout) if r["actor"] == bed.alice.name
                and r["target"] == "report_run" and r["action"] == "refused"]
    assert len(refusals) == 2
