"""Slurm executor on the bed's one-node cluster, driven over SSH from a bed login node."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from collectors.transport import SshTransport
from scheduler.executors import Launch, SlurmExecutor
from tests.bed.plugin import NodeFactory
from tests.bed.slurm import SlurmCluster
from tests.bed.ssh import SshNode
from tests.integration.executor_kit import (
    HOSTILE,
    read_logs,
    transport_for,
    wait_done,
    wait_log,
    wait_state,
)

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]

# Slurm remembers finished jobs by name for MinJobAge, and the cluster lives for the whole
# session: every test uses fresh fleetdeck job ids.
_IDS = itertools.count(random.randint(1, 10**6) * 1000)



@pytest.fixture
def node(ssh_nodes: NodeFactory) -> SshNode:
    n: SshNode = ssh_nodes(1, slurm=True)[0]
    assert n.slurm is not None
    return n


@pytest.fixture
def cluster(node: SshNode) -> SlurmCluster:
    assert node.slurm is not None
    return node.slurm


@pytest.fixture
def executor(tmp_path: Path) -> SlurmExecutor:
    return SlurmExecutor(jobs_dir=str(tmp_path / "slurm"), poll_s=0.5)


def launch(argv: tuple[str, ...], job_id: int | None = None, **kw: Any) -> Launch:
    jid = next(_IDS) if job_id is None else job_id
    return Launch(job_id=jid, attempt=0, name=f"job{jid}", user="alice", project="vision",
                  argv=argv, **kw)


async def test_exit_codes_logs_and_resources(executor: SlurmExecutor, transport: SshTransport,
                                             cluster: SlurmCluster, tmp_path: Path) -> None:
    ok_launch = launch(
        ("sh", "-c", 'echo out; echo err >&2; echo "job=$FLEETDECK_JOB_ID $MY_VAR"; pwd'),
        env={"MY_VAR": "hello"}, workdir=str(tmp_path), gpu_count=2, cpu_milli=1500,
        mem_bytes=100 * 2**20, max_runtime_s=600)
    ok = await executor.start(ok_launch, transport)
    bad = await executor.start(launch(("sh", "-c", "echo failing; exit 3")), transport)
    assert ok.kind == "slurm" and ok.external_id.isdigit()

    info = cluster.job(int(ok.external_id))
    assert info["JobName"] == f"fd-{ok_launch.job_id}-0"
    assert "gres/gpu=2" in info.get("TRES", "") or "gpu:2" in info.get("TresPerNode", "")
    assert info["NumCPUs"] == "2" and info["TimeLimit"] == "00:10:00"

    st_ok = await wait_done(executor, ok, transport)
    st_bad = await wait_done(executor, bad, transport)
    assert (st_ok.state, st_ok.exit_code, st_ok.detail) == ("exited", 0, "COMPLETED")
    assert (st_bad.state, st_bad.exit_code, st_bad.detail) == ("exited", 3, "FAILED")
    assert st_ok.started_at is not None and st_ok.ended_at is not None
    out = await read_logs(executor, ok, transport)
    assert out.splitlines() == [b"out", b"err", f"job={ok_launch.job_id} hello".encode(),
                                str(tmp_path).encode()]
    assert await read_logs(executor, ok, transport, tail_lines=1) == f"{tmp_path}\n".encode()
    assert await read_logs(executor, bad, transport, follow=True) == b"failing\n"


async def test_hostile_arguments_cannot_inject(executor: SlurmExecutor, transport: SshTransport,
                                               tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    args = tuple(a.format(m=marker) for a in HOSTILE)
    name = f'"; touch {marker} # $(touch {marker})'
    jid = next(_IDS)
    h = await executor.start(
        Launch(job_id=jid, attempt=0, name=name, user="a;b", project="$(id)",
               argv=("printf", "%s\\0", *args), env={"HOSTILE": args[0]},
               partition="debug"),
        transport)
    assert (await wait_done(executor, h, transport)).exit_code == 0
    out = await read_logs(executor, h, transport)
    assert out.split(b"\0")[:-1] == [a.encode() for a in args]
    h2 = await executor.start(
        Launch(job_id=next(_IDS), attempt=0, name=name, user="u", project="p",
               argv=('printf "%s\\0" "$FLEETDECK_JOB_NAME" "$HOSTILE"',), shell=True,
               env={"HOSTILE": args[0]}),
        transport)
    assert (await wait_done(executor, h2, transport)).exit_code == 0
    assert (await read_logs(executor, h2, transport)).split(b"\0")[:-1] == [
        name.encode(), args[0].encode()]
    assert not marker.exists()


async def test_pending_job_and_its_cancel(executor: SlurmExecutor, transport: SshTransport,
                                          cluster: SlurmCluster) -> None:
    big = await executor.start(launch(("sleep", "60"), cpu_milli=cluster.cpus * 1000),
                               transport)
    await wait_state(executor, big, transport, "running")
    waiting = await executor.start(launch(("true",), cpu_milli=cluster.cpus * 1000), transport)
    st = await executor.status(waiting, transport)
    assert st.state == "pending" and st.detail == "PENDING"
    # a pending job is cancelled at once: stop returns without waiting out a grace no test
    # could sit through
    await executor.stop(waiting, transport, grace_s=3600.0)
    st = await executor.status(waiting, transport)
    assert (st.state, st.detail) == ("exited", "CANCELLED")
    await executor.stop(big, transport, grace_s=1.0)
    assert (await executor.status(big, transport)).exit_code == 143


async def test_start_is_idempotent(executor: SlurmExecutor, transport: SshTransport,
                                   cluster: SlurmCluster, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    job = launch(("sh", "-c", f"echo run >> {counter}"))
    first, second = await asyncio.gather(executor.start(job, transport),
                                         executor.start(job, transport))
    assert first == second
    assert (await wait_done(executor, first, transport)).exit_code == 0
    assert await executor.start(job, transport) == first
    # Even with the job directory gone, the name still in squeue is adopted.
    await executor.cleanup(first, transport)
    assert await executor.start(job, transport) == first
    names = cluster.run("squeue", "-h", "-t", "all", "-o", "%j").stdout.split()
    assert names.count(f"fd-{job.job_id}-0") == 1
    assert counter.read_text() == "run\n"


async def test_discover_after_restart(node: SshNode, tmp_path: Path) -> None:
    jobs_dir = str(tmp_path / "slurm")
    t1 = transport_for(node)
    ex1 = SlurmExecutor(jobs_dir=jobs_dir)
    running = await ex1.start(launch(("sleep", "60")), t1)
    done = await ex1.start(launch(("sh", "-c", "exit 5")), t1)
    assert (await wait_done(ex1, done, t1)).exit_code == 5
    await wait_state(ex1, running, t1, "running")
    await t1.close()

    t2 = transport_for(node)
    ex2 = SlurmExecutor(jobs_dir=jobs_dir)
    try:
        found = {(d.job_id, d.attempt): d for d in await ex2.discover(t2)}
        assert found[(running.job_id, 0)].handle == running
        assert found[(running.job_id, 0)].status.state == "running"
        d = found[(done.job_id, 0)]
        assert (d.external_id, d.status.state, d.status.exit_code) == (
            done.external_id, "exited", 5)
        await ex2.stop(running, t2, grace_s=1.0)
        assert (await ex2.status(running, t2)).state == "exited"
    finally:
        await t2.close()


async def test_stop_with_notice_creates_the_preempt_file(executor: SlurmExecutor,
                                                         transport: SshTransport) -> None:
    """Preemption of a Slurm job: `$FLEETDECK_PREEMPT_FILE` appears before the SIGTERM, so the
    job checkpoints; its next attempt is told to resume."""
    h = await executor.start(launch((
        "sh", "-c", "trap 'test -e \"$FLEETDECK_PREEMPT_FILE\" && echo checkpoint; exit 0' TERM;"
                    " echo ready; while :; do sleep 0.1; done")), transport)
    await wait_log(executor, h, transport, b"ready")
    await executor.stop(h, transport, grace_s=10.0, notice=True)
    assert b"checkpoint" in await read_logs(executor, h, transport)
    again = await executor.start(
        launch(("sh", "-c", 'echo "resume=$FLEETDECK_RESUME"'), resume=True), transport)
    st = await wait_done(executor, again, transport)
    assert (st.state, st.exit_code) == ("exited", 0), st
    assert await read_logs(executor, again, transport) == b"resume=1\n"
