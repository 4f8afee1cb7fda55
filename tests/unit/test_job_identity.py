"""Whom jobs run as (never root for someone else) and secret env (never on a command line,
masked for everyone but the owner)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from collectors.errors import InputError
from scheduler.executors import Launch
from scheduler.executors.identity import (
    NO_SUCH_USER_EXIT,
    JobIdentity,
    job_identity,
    resolve_owner_sh,
)
from scheduler.executors.process import start_script
from scheduler.jobspec import SECRET_MASK, JobSpec


@dataclass(frozen=True)
class Node:
    name: str
    user: str | None
    transport: str


@pytest.mark.parametrize(("node", "engine", "owner", "expected"), [
    (Node("local", None, "local"), "root", "alice", "alice"),  # local node, root engine
    (Node("local", None, "local"), "ops", "alice", None),  # local node, unprivileged engine
    (Node("gpu1", "root", "ssh"), "ops", "alice", "alice"),  # logs in as root
    (Node("gpu1", "svc", "ssh"), "root", "alice", None),  # logs in as an account: runs as it
    (Node("gpu1", None, "ssh"), "root", "alice", "alice"),  # default login: the engine's user
    (Node("gpu1", "root", "ssh"), "root", "root", None),  # root's own job stays root
    (Node("sim1", None, "sim"), "root", "alice", None),  # simulated: the engine's sandbox
])
def test_run_as(node: Node, engine: str, owner: str, expected: str | None) -> None:
    assert job_identity(node, engine).run_as(owner) == expected


def test_describe_names_the_login_account() -> None:
    assert job_identity(Node("n", "svc", "ssh"), "root").describe() == "svc (the login account)"
    assert job_identity(Node("n", "root", "ssh"), "x").describe() == "each job's owner"


def test_explain_says_whom_a_job_runs_as() -> None:
    root, svc = JobIdentity("root"), JobIdentity("svc")
    assert root.job_runs_as("alice", "process") == "alice (its owner)"
    assert root.job_runs_as("alice", "slurm") == (
        "root (Slurm jobs are submitted as the login account)")
    assert svc.job_runs_as("alice", "docker") == "svc (the login account)"
    assert svc.job_runs_as("svc", "process") == "svc"


def test_missing_user_is_one_line_and_its_own_exit_code() -> None:
    script = resolve_owner_sh("fdbed-nobody-here", "gpu1") + '\necho "$uid"'
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert res.returncode == NO_SUCH_USER_EXIT
    assert res.stderr.strip() == ("node gpu1 has no user fdbed-nobody-here: its jobs run as "
                                  "their owner there")


def test_hostile_user_name_stays_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    script = resolve_owner_sh(f"a;b $(touch {marker}) `touch {marker}`", "n")
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert res.returncode == NO_SUCH_USER_EXIT and not marker.exists()


def test_secret_values_never_reach_the_start_script() -> None:
    launch = Launch(job_id=1, attempt=0, name="j", user="alice", project="", argv=("true",),
                    env={"PLAIN": "visible"}, secret_env={"API_TOKEN": "s3cr3t-value"})
    script = start_script(launch, run_as="alice", node="n1")
    assert "s3cr3t-value" not in script and "visible" in script
    assert 'cat > "$d/secret_env"' in script and "setpriv" in script


def test_secret_env_parses_masks_and_round_trips(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({"command": ["true"], "env": {"A": "1"},
                              "secret_env": {"API_TOKEN": "x"}}, source="job.toml")
    assert spec.secret_env == {"API_TOKEN": "x"}
    assert JobSpec.from_dict(spec.to_dict()) == spec
    assert spec.redacted().secret_env == {"API_TOKEN": SECRET_MASK}
    assert spec.redacted().env == {"A": "1"}
    with pytest.raises(InputError, match=r"job\.toml: secret_env: expected names not also"):
        JobSpec.from_dict({"command": ["true"], "env": {"A": "1"}, "secret_env": {"A": "2"}},
                          source="job.toml")
    with pytest.raises(InputError, match=r"secret_env.*reserved"):
        JobSpec.from_dict({"command": ["true"], "secret_env": {"FLEETDECK_X": "1"}},
                          source="job.toml")
