"""Process executor on real sshd bed nodes: exit codes, logs, stop, idempotence, discovery,
surviving a dropped SSH connection, and hostile arguments that must not inject commands."""

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
    HOSTILE,
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


async def test_exit_codes_and_logs(executor: ProcessExecutor, transport: SshTransport,
                                   node: SshNode) -> None:
    ok = await executor.start(
        launch(1, ("sh", "-c", 'echo out; echo err >&2; echo "gpus=$CUDA_VISIBLE_DEVICES '
                               'job=$FLEETDECK_JOB_ID $MY_VAR"; pwd'),
               gpu_indices=(1, 3), env={"MY_VAR": "hello"}, workdir="/tmp"),
        transport)
    bad = await executor.start(launch(2, ("sh", "-c", "echo failing; exit 3")), transport)
    assert ok.kind == "process" and ok.node == node.name and ok.external_id.isdigit()

    st_ok = await wait_done(executor, ok, transport)
    st_bad = await wait_done(executor, bad, transport)
    assert (st_ok.state, st_ok.exit_code) == ("exited", 0)
    assert (st_bad.state, st_bad.exit_code) == ("exited", 3)
    assert st_ok.started_at is not None and st_ok.ended_at is not None
    assert st_ok.ended_at >= st_ok.started_at
    out = await read_logs(executor, ok, transport)
    assert out.splitlines() == [b"out", b"err", b"gpus=1,3 job=1 hello", b"/tmp"]
    assert await read_logs(executor, ok, transport, tail_lines=1) == b"/tmp\n"
    assert await read_logs(executor, bad, transport) == b"failing\n"
    # follow on a finished job prints the log and ends
    assert await read_logs(executor, bad, transport, follow=True) == b"failing\n"


async def test_hostile_arguments_cannot_inject(executor: ProcessExecutor, transport: SshTransport,
                                               tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    args = tuple(a.format(m=marker) for a in HOSTILE)
    name = f'"; touch {marker} # $(touch {marker}) `touch {marker}`'
    # The program receives the exact argv: printf prints each argument NUL-terminated.
    h = await executor.start(
        Launch(job_id=4, attempt=0, name=name, user="root", project="$(id)",
               argv=("printf", "%s\\0", *args), env={"HOSTILE": args[0], "H2": args[2]},
               workdir=str(tmp_path)),
        transport)
    assert (await wait_done(executor, h, transport)).exit_code == 0
    out = await read_logs(executor, h, transport)
    assert out.split(b"\0")[:-1] == [a.encode() for a in args]
    # Env values and the job name reach a shell script as data, not code.
    h2 = await executor.start(
        Launch(job_id=5, attempt=0, name=name, user="root", project="p",
               argv=('printf "%s\\0" "$FLEETDECK_JOB_NAME" "$HOSTILE" "$H2"',), shell=True,
               env={"HOSTILE": args[0], "H2": args[2]}),
        transport)
    assert (await wait_done(executor, h2, transport)).exit_code == 0
    out2 = await read_logs(executor, h2, transport)
    assert out2.split(b"\0")[:-1] == [name.encode(), args[0].encode(), args[2].encode()]
    assert not marker.exists()


async def test_max_runtime_is_enforced(executor: ProcessExecutor,
                                       transport: SshTransport) -> None:
    h = await executor.start(launch(8, ("sleep", "30"), max_runtime_s=1.0), transport)
    st = await wait_done(executor, h, transport)
    assert (st.state, st.exit_code) == ("exited", 124)  # timeout's code after SIGTERM


async def test_start_is_idempotent(executor: ProcessExecutor, transport: SshTransport,
                                   node: SshNode, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    job = launch(9, ("sh", "-c", f"echo run >> {counter}; sleep 2"))
    first, second = await asyncio.gather(executor.start(job, transport),
                                         executor.start(job, transport))
    assert first == second
    third = await executor.start(job, transport)  # later, e.g. after a restart
    assert third == first
    st = await wait_done(executor, first, transport)
    assert st.exit_code == 0
    assert await executor.start(job, transport) == first  # finished: adopted, not rerun
    assert counter.read_text() == "run\n"
    # a new attempt is a new run
    again = await executor.start(
        Launch(job_id=9, attempt=1, name="job9", user="root", project="vision",
               argv=job.argv), transport)
    assert again.external_id != first.external_id
    assert (await wait_done(executor, again, transport)).exit_code == 0
    assert counter.read_text() == "run\nrun\n"


async def test_discover_after_restart(tmp_path: Path, node: SshNode) -> None:
    jobs_dir = str(tmp_path / "jobs")
    t1 = transport_for(node)
    ex1 = ProcessExecutor(jobs_dir=jobs_dir)
    running = await ex1.start(launch(10, ("sleep", "30")), t1)
    done = await ex1.start(launch(11, ("sh", "-c", "exit 5")), t1)
    assert (await wait_done(ex1, done, t1)).exit_code == 5
    await t1.close()

    # A fresh executor and connection, as after fleetdeck restarts, knows nothing else.
    t2 = transport_for(node)
    ex2 = ProcessExecutor(jobs_dir=jobs_dir)
    try:
        found = {(d.job_id, d.attempt): d for d in await ex2.discover(t2)}
        assert set(found) == {(10, 0), (11, 0)}
        assert found[(10, 0)].handle == running
        assert found[(10, 0)].status.state == "running"
        assert (found[(11, 0)].status.state, found[(11, 0)].status.exit_code) == ("exited", 5)
        assert found[(11, 0)].external_id == done.external_id
        # starting the running one again adopts it
        assert await ex2.start(launch(10, ("sleep", "30")), t2) == running
        await ex2.stop(found[(10, 0)].handle, t2, grace_s=2.0)
        assert (await ex2.status(running, t2)).exit_code == 143  # sleep died of SIGTERM
        await ex2.cleanup(running, t2)
        assert (await ex2.status(running, t2)).state == "missing"
        assert [d.job_id for d in await ex2.discover(t2)] == [11]
    finally:
        await t2.close()


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


async def test_cleanup_refuses_a_running_job(executor: ProcessExecutor,
                                             transport: SshTransport) -> None:
    h = await executor.start(launch(13, ("sleep", "30")), transport)
    with pytest.raises(Exception, match="still runs"):
        await executor.cleanup(h, transport)
    await executor.stop(h, transport, grace_s=1.0)
    await executor.cleanup(h, transport)
    assert await executor.discover(transport) == []


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
