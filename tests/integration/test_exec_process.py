"""What only the process executor does, on real sshd bed nodes: max runtimes, surviving a
dropped SSH connection, leftover processes, and logins that become (or cannot become) the job's
owner. What every executor does is in test_executor_contract.py."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from collectors.transport import NodeTarget, SshOptions, SshTransport
from scheduler.executors import ExecutorError, Launch, ProcessExecutor
from tests.bed.plugin import BedAccounts, NodeFactory
from tests.bed.ssh import SshBed, SshNode, keygen
from tests.integration.executor_kit import (
    read_logs,
    transport_for,
    wait_done,
)

pytestmark = [pytest.mark.ssh]


@pytest.fixture
def node(ssh_nodes: NodeFactory) -> SshNode:
    return ssh_nodes(1)[0]


@pytest.fixture
def executor(tmp_path: Path) -> ProcessExecutor:
    # Bed nodes all log in as root on this machine: a private jobs dir per test.
    return ProcessExecutor(jobs_dir=str(tmp_path / "jobs"), kill_after_s=1.0)


def launch(job_id: int, argv: tuple[str, ...], **kw: object) -> Launch:
    return Launch(job_id=job_id, attempt=0, name=f"job{job_id}", user="root",
                  project="vision", argv=argv, **kw)  # type: ignore[arg-type]


async def test_max_runtime_is_enforced(executor: ProcessExecutor,
                                       transport: SshTransport) -> None:
    h = await executor.start(launch(8, ("sleep", "30"), max_runtime_s=1.0), transport)
    st = await wait_done(executor, h, transport)
    assert (st.state, st.exit_code) == ("exited", 124)  # timeout's code after SIGTERM


async def test_job_survives_the_ssh_connection_dropping(executor: ProcessExecutor,
                                                        node: SshNode, tmp_path: Path) -> None:
    # the job ends only once the test opens its gate: it is surely still running after the
    # SSH restart, however slow the machine
    gate = tmp_path / "gate"
    t1 = transport_for(node)
    script = (f"for i in 1 2 3; do echo tick$i; done; while [ ! -e {gate} ]; do sleep 0.05; "
              "done; for i in 4 5 6; do echo tick$i; done")
    h = await executor.start(launch(12, ("sh", "-c", script)), t1)
    await t1.close()
    node.stop()  # kill sshd and every session under it, like a crash
    await asyncio.sleep(0.5)
    node.start()
    t2 = transport_for(node)
    try:
        st = await executor.status(h, t2)
        assert st.state == "running", st
        gate.touch()
        st = await wait_done(executor, h, t2)
        assert (st.state, st.exit_code) == ("exited", 0)
        out = await read_logs(executor, h, t2)
        assert out == b"".join(b"tick%d\n" % i for i in range(1, 7))
    finally:
        await t2.close()


async def test_leftover_processes_end_with_the_job(executor: ProcessExecutor,
                                                   transport: SshTransport,
                                                   tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    h = await executor.start(launch(14, ("sh", "-c", f"sleep 60 & echo $! > {child}; exit 0")),
                             transport)
    assert (await wait_done(executor, h, transport)).exit_code == 0
    pid = int(child.read_text())
    ps = await transport.run(["ps", "-o", "stat=", "-p", str(pid)], timeout=10)
    assert ps.text().strip() in ("", "Z")  # gone (or a zombie about to be reaped)


async def test_a_root_login_runs_the_job_as_its_owner(
        executor: ProcessExecutor, transport: SshTransport, bed_accounts: BedAccounts) -> None:
    alice = bed_accounts.user("alice", groups=["members"])
    h = await executor.start(
        Launch(job_id=40, attempt=0, name="as-alice", user=alice.name, project="p",
               argv=('id -un; id -Gn; echo "$HOME $USER $SECRET"; pwd',), shell=True,
               secret_env={"SECRET": "s3"}), transport)
    assert (await wait_done(executor, h, transport)).exit_code == 0
    lines = (await read_logs(executor, h, transport)).decode().splitlines()
    assert lines[0] == alice.name and "fdbed-members" in lines[1].split()
    assert lines[2:] == [f"{alice.home} {alice.name} s3", str(alice.home)]
    with pytest.raises(ExecutorError, match="has no user fdbed-nobody"):
        await executor.start(Launch(job_id=41, attempt=0, name="x", user="fdbed-nobody",
                                    project="p", argv=("true",)), transport)


async def test_an_unprivileged_login_runs_every_job_as_itself(
        node: SshNode, ssh_bed: SshBed, bed_accounts: BedAccounts, bed_root: Path) -> None:
    alice = bed_accounts.user("alice", groups=["members"])
    d = Path(tempfile.mkdtemp(prefix="alice-login-", dir=bed_root))
    keygen(d / "id_ed25519", "alice-login")
    ssh_bed.authorize(alice.name, (d / "id_ed25519.pub").read_text())
    os.chown(d, alice.uid, alice.gid)
    target = NodeTarget(name=node.name, host=node.host, port=node.port, user=alice.name,
                        identity_file=d / "id_ed25519")
    t = SshTransport(target, SshOptions(known_hosts=node.known_hosts, use_agent=False))
    ex = ProcessExecutor(jobs_dir=str(d / "jobs"), kill_after_s=1.0)
    try:
        # bob's job: the login cannot become bob, so it runs as alice (nodes say so)
        h = await ex.start(Launch(job_id=50, attempt=0, name="j", user="bob", project="p",
                                  argv=("id", "-un")), t)
        assert (await wait_done(ex, h, t)).exit_code == 0
        assert (await read_logs(ex, h, t)).decode().strip() == alice.name
    finally:
        await t.close()
