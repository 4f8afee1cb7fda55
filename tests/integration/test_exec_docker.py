"""What only the Docker executor does, against a bed node's own dockerd reached through the
SSH-forwarded socket: labels, limits, device requests, one container per job, the deadline it
reports, containers run as their owner. What every executor does is in
test_executor_contract.py."""

from __future__ import annotations

import asyncio
import grp
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collectors.transport import SshTransport
from scheduler.executors import DockerExecutor, ExecutorError, Launch
from tests.bed.plugin import BedAccounts, NodeFactory
from tests.bed.ssh import SshNode
from tests.integration.executor_kit import read_logs, transport_for, wait_done

pytestmark = [pytest.mark.ssh, pytest.mark.docker]

@pytest.fixture
def node(ssh_nodes: NodeFactory) -> SshNode:
    n: SshNode = ssh_nodes(1, docker=True)[0]
    assert n.docker is not None
    n.docker.remove_all_containers()
    return n


@pytest.fixture
def image(node: SshNode, docker_image: Callable[[SshNode], str]) -> str:
    return docker_image(node)


@pytest.fixture
def executor() -> Iterator[DockerExecutor]:
    ex = DockerExecutor(gpu_runtime=False)
    yield ex
    ex.close()


def launch(job_id: int, argv: tuple[str, ...], image: str, **kw: Any) -> Launch:
    return Launch(job_id=job_id, attempt=0, name=f"job{job_id}", user="root",
                  project="vision", argv=argv, image=image, **kw)


async def test_labels_and_limits(executor: DockerExecutor, transport: SshTransport,
                                 node: SshNode, image: str) -> None:
    ok = await executor.start(
        launch(1, ("true",), image, gpu_indices=(0, 2), cpu_milli=500, mem_bytes=64 * 2**20,
               max_runtime_s=3600),
        transport)
    st_ok = await wait_done(executor, ok, transport)
    assert st_ok.exit_code == 0 and st_ok.started_at is not None
    assert abs(st_ok.started_at - time.time()) < 300  # epoch seconds, not the container's

    assert node.docker is not None
    c = node.docker.client().containers.get(ok.external_id)
    assert c.name == "fleetdeck-1-0"
    assert c.labels["fleetdeck.job"] == "1" and c.labels["fleetdeck.attempt"] == "0"
    assert c.labels["fleetdeck.user"] == "root" and c.labels["fleetdeck.project"] == "vision"
    assert c.labels["fleetdeck.gpus"] == "0,2" and c.labels["fleetdeck.gpu_mode"] == "env"
    assert c.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert c.attrs["HostConfig"]["Memory"] == 64 * 2**20
    assert c.attrs["HostConfig"]["Init"] is True


async def test_gpu_device_request_reaches_dockerd(transport: SshTransport, image: str) -> None:
    # This dockerd has no NVIDIA runtime: the device request is refused, proving it was sent.
    ex = DockerExecutor(gpu_runtime=True)
    try:
        with pytest.raises(ExecutorError, match="nvidia"):
            await ex.start(launch(3, ("true",), image, gpu_indices=(1,)), transport)
        # a job without GPUs needs no device request and runs
        h = await ex.start(launch(4, ("true",), image), transport)
        assert (await wait_done(ex, h, transport)).exit_code == 0
    finally:
        ex.close()


async def test_one_container_per_job(executor: DockerExecutor, transport: SshTransport,
                                     node: SshNode, image: str) -> None:
    job = launch(10, ("sh", "-c", "echo run; sleep 1"), image)
    first, second = await asyncio.gather(executor.start(job, transport),
                                         executor.start(job, transport))
    assert first == second
    assert (await wait_done(executor, first, transport)).exit_code == 0
    assert await executor.start(job, transport) == first
    assert node.docker is not None
    mine = node.docker.client().containers.list(all=True, filters={"label": "fleetdeck.job=10"})
    assert len(mine) == 1


async def test_discover_reports_the_deadline(node: SshNode, image: str) -> None:
    t1 = transport_for(node)
    ex1 = DockerExecutor(gpu_runtime=False)
    running = await ex1.start(launch(11, ("sleep", "60"), image, max_runtime_s=600), t1)
    ex1.close()
    await t1.close()

    t2 = transport_for(node)
    ex2 = DockerExecutor(gpu_runtime=False)
    try:
        found = {(d.job_id, d.attempt): d for d in await ex2.discover(t2)}
        assert found[(11, 0)].handle == running
        st = found[(11, 0)].status
        assert st.started_at is not None and st.deadline_at == pytest.approx(st.started_at + 600)
        await ex2.stop(running, t2, grace_s=1.0)
        await ex2.cleanup(running, t2)
    finally:
        ex2.close()
        await t2.close()


async def test_a_root_login_runs_the_container_as_its_owner(
        executor: DockerExecutor, transport: SshTransport, image: str,
        bed_accounts: BedAccounts) -> None:
    alice = bed_accounts.user("alice", groups=["members"])
    members = bed_accounts.group("members")
    h = await executor.start(
        Launch(job_id=40, attempt=0, name="as-alice", user=alice.name, project="p",
               argv=("sh", "-c", "id -u; id -g; id -G"), image=image), transport)
    assert (await wait_done(executor, h, transport)).exit_code == 0
    out = (await read_logs(executor, h, transport)).decode().split()
    assert out[0] == str(alice.uid) and out[1] == str(alice.gid)
    assert str(grp.getgrnam(members).gr_gid) in out[2:]
    with pytest.raises(ExecutorError, match="has no user fdbed-nobody"):
        await executor.start(Launch(job_id=41, attempt=0, name="x", user="fdbed-nobody",
                                    project="p", argv=("true",), image=image), transport)
