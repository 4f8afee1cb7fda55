"""What only the Slurm executor does, on the bed's one-node cluster driven over SSH from a bed
login node: resources and Slurm's own states, pending jobs, adoption by job name. What every
executor does is in test_executor_contract.py."""

from __future__ import annotations

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
    wait_done,
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


async def test_resources_and_slurm_states(executor: SlurmExecutor, transport: SshTransport,
                                          cluster: SlurmCluster, tmp_path: Path) -> None:
    ok_launch = launch(("sh", "-c", "echo out"), workdir=str(tmp_path), gpu_count=2,
                       cpu_milli=1500, mem_bytes=100 * 2**20, max_runtime_s=600)
    ok = await executor.start(ok_launch, transport)
    bad = await executor.start(launch(("sh", "-c", "echo failing; exit 3")), transport)
    info = cluster.job(int(ok.external_id))
    assert info["JobName"] == f"fd-{ok_launch.job_id}-0"
    assert "gres/gpu=2" in info.get("TRES", "") or "gpu:2" in info.get("TresPerNode", "")
    assert info["NumCPUs"] == "2" and info["TimeLimit"] == "00:10:00"
    st_ok = await wait_done(executor, ok, transport)
    st_bad = await wait_done(executor, bad, transport)
    assert (st_ok.state, st_ok.exit_code, st_ok.detail) == ("exited", 0, "COMPLETED")
    assert (st_bad.state, st_bad.exit_code, st_bad.detail) == ("exited", 3, "FAILED")


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


async def test_a_job_name_still_in_squeue_is_adopted(executor: SlurmExecutor,
                                                       transport: SshTransport,
                                                       cluster: SlurmCluster,
                                                       tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    job = launch(("sh", "-c", f"echo run >> {counter}"))
    first = await executor.start(job, transport)
    assert (await wait_done(executor, first, transport)).exit_code == 0
    # Even with the job directory gone, the name still in squeue is adopted.
    await executor.cleanup(first, transport)
    assert await executor.start(job, transport) == first
    names = cluster.run("squeue", "-h", "-t", "all", "-o", "%j").stdout.split()
    assert names.count(f"fd-{job.job_id}-0") == 1
    assert counter.read_text() == "run\n"
