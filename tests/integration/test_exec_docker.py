"""Docker executor against a bed node's own dockerd, reached through the SSH-forwarded socket."""

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
from tests.integration.executor_kit import (
    HOSTILE as HOSTILE_ARGS,
)
from tests.integration.executor_kit import (
    read_logs,
    transport_for,
    wait_done,
)

pytestmark = [pytest.mark.ssh, pytest.mark.docker]

HOSTILE = tuple(a.format(m="/tmp/pwned") for a in HOSTILE_ARGS)


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


async def test_exit_codes_logs_labels_and_limits(executor: DockerExecutor, transport: SshTransport,
                                                 node: SshNode, image: str) -> None:
    ok = await executor.start(
        launch(1, ("sh", "-c", 'echo out; echo err >&2; echo "job=$FLEETDECK_JOB_ID '
                               'gpus=$NVIDIA_VISIBLE_DEVICES $MY_VAR"; pwd'),
               image, env={"MY_VAR": "hello"}, workdir="/tmp", gpu_indices=(0, 2),
               cpu_milli=500, mem_bytes=64 * 2**20, max_runtime_s=3600),
        transport)
    bad = await executor.start(launch(2, ("sh", "-c", "echo failing; exit 3"), image), transport)
    assert ok.kind == "docker" and ok.node == node.name
    st_ok = await wait_done(executor, ok, transport)
    st_bad = await wait_done(executor, bad, transport)
    assert (st_ok.state, st_ok.exit_code) == ("exited", 0)
    assert (st_bad.state, st_bad.exit_code) == ("exited", 3)
    assert st_ok.started_at is not None and st_ok.ended_at is not None
    assert st_ok.started_at <= st_ok.ended_at
    assert abs(st_ok.started_at - time.time()) < 300

    out = await read_logs(executor, ok, transport)
    assert sorted(out.splitlines()) == sorted([b"out", b"err", b"job=1 gpus=0,2 hello", b"/tmp"])
    # stdout and stderr are separate pipes, so their relative order may vary between runs
    assert await read_logs(executor, ok, transport, tail_lines=2) == b"".join(
        line + b"\n" for line in out.splitlines()[-2:])
    assert await read_logs(executor, bad, transport) == b"failing\n"

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


async def test_hostile_arguments_reach_the_program_verbatim(
    executor: DockerExecutor, transport: SshTransport, image: str
) -> None:
    name = '"; touch /tmp/pwned # $(touch /tmp/pwned)'
    # argv is passed as a list: printf gets every argument as is; then check the marker.
    script = 'printf "%s\\0" "$@"; [ -e /tmp/pwned ] && echo PWNED; exit 0'
    h = await executor.start(
        Launch(job_id=6, attempt=0, name=name, user="root", project="$(id)",
               argv=("sh", "-c", script, "sh", *HOSTILE), image=image,
               env={"HOSTILE": HOSTILE[0]}),
        transport)
    assert (await wait_done(executor, h, transport)).exit_code == 0
    out = await read_logs(executor, h, transport)
    assert out.split(b"\0")[:-1] == [a.encode() for a in HOSTILE]
    assert b"PWNED" not in out
    h2 = await executor.start(
        Launch(job_id=7, attempt=0, name=name, user="root", project="p",
               argv=('printf "%s\\0" "$FLEETDECK_JOB_NAME" "$HOSTILE"; '
                     "[ -e /tmp/pwned ] && echo PWNED; exit 0",),
               shell=True, image=image, env={"HOSTILE": HOSTILE[0]}),
        transport)
    assert (await wait_done(executor, h2, transport)).exit_code == 0
    assert (await read_logs(executor, h2, transport)).split(b"\0") == [
        name.encode(), HOSTILE[0].encode(), b""]


async def test_start_is_idempotent(executor: DockerExecutor, transport: SshTransport,
                                   node: SshNode, image: str) -> None:
    job = launch(10, ("sh", "-c", "echo run; sleep 1"), image)
    first, second = await asyncio.gather(executor.start(job, transport),
                                         executor.start(job, transport))
    assert first == second
    assert (await wait_done(executor, first, transport)).exit_code == 0
    assert await executor.start(job, transport) == first  # finished: adopted, not restarted
    await asyncio.sleep(0.5)
    assert (await executor.status(first, transport)).state == "exited"
    assert await read_logs(executor, first, transport) == b"run\n"
    assert node.docker is not None
    mine = node.docker.client().containers.list(all=True, filters={"label": "fleetdeck.job=10"})
    assert len(mine) == 1


async def test_discover_after_restart_and_cleanup(node: SshNode, image: str) -> None:
    t1 = transport_for(node)
    ex1 = DockerExecutor(gpu_runtime=False)
    running = await ex1.start(launch(11, ("sleep", "60"), image, max_runtime_s=600), t1)
    done = await ex1.start(launch(12, ("sh", "-c", "exit 5"), image), t1)
    assert (await wait_done(ex1, done, t1)).exit_code == 5
    ex1.close()
    await t1.close()

    t2 = transport_for(node)
    ex2 = DockerExecutor(gpu_runtime=False)
    try:
        found = {(d.job_id, d.attempt): d for d in await ex2.discover(t2)}
        assert set(found) == {(11, 0), (12, 0)}
        assert found[(11, 0)].handle == running
        st = found[(11, 0)].status
        assert st.state == "running"
        assert st.started_at is not None and st.deadline_at == pytest.approx(st.started_at + 600)
        assert (found[(12, 0)].status.state, found[(12, 0)].status.exit_code) == ("exited", 5)
        assert await ex2.start(launch(11, ("sleep", "60"), image), t2) == running
        await ex2.stop(running, t2, grace_s=1.0)
        assert (await ex2.status(running, t2)).state == "exited"
        with pytest.raises(ExecutorError, match="still runs"):
            still = await ex2.start(launch(13, ("sleep", "60"), image), t2)
            await ex2.cleanup(still, t2)
        await ex2.stop(still, t2, grace_s=0)
        for d in found.values():
            await ex2.cleanup(d.handle, t2)
        assert (await ex2.status(running, t2)).state == "missing"
        assert [d.job_id for d in await ex2.discover(t2)] == [13]
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
