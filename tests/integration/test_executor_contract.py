"""The executor contract, one suite for every executor (process, docker, slurm; a new executor
adds a `kit` branch): output streams while a job runs, and stop is TERM, a grace, then KILL.

What only one executor has (Docker labels and device requests, Slurm resources and pending
jobs, process max runtimes and SSH drops) stays in test_exec_<kind>.py. No assertion reads a
clock except the lower bound of a grace that must be waited out, which holds at any speed.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from collectors.transport import SshTransport
from scheduler.executors import (
    DockerExecutor,
    Executor,
    Handle,
    Launch,
    ProcessExecutor,
    SlurmExecutor,
)
from tests.bed.plugin import NodeFactory
from tests.bed.ssh import SshNode
from tests.integration.executor_kit import (
    read_logs,
    transport_for,
    wait_log,
    wait_state,
)

pytestmark = [pytest.mark.ssh]

# Slurm remembers finished jobs by name for a while and the cluster lives for the session:
# every job here gets a fresh fleetdeck id.
_IDS = itertools.count(random.randint(1, 10**6) * 1000 + 500)

KINDS = [
    "process",
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("slurm", marks=pytest.mark.slurm),
]


@dataclass
class Kit:
    """One executor on one bed node, and how a test talks to its jobs."""

    executor: Executor
    transport: SshTransport
    node: SshNode
    user: str  # whom jobs run as
    image: str | None  # docker only
    gate: str  # a path a job can wait for
    open_gate: Callable[[Handle], None]

    def launch(self, argv: tuple[str, ...], **kw: Any) -> Launch:
        job_id = next(_IDS)
        return Launch(job_id=job_id, attempt=0, name=f"job{job_id}", user=self.user,
                      project="vision", argv=argv, image=self.image, **kw)


def _touch(path: Path) -> Callable[[Handle], None]:
    return lambda _h: path.touch()


def _docker_touch(node: SshNode, path: str) -> Callable[[Handle], None]:
    def touch(h: Handle) -> None:
        client = docker.DockerClient(base_url=f"unix://{node.docker_socket}")
        try:
            client.containers.get(h.external_id).exec_run(["touch", path])
        finally:
            client.close()

    return touch


@pytest.fixture(params=KINDS)
async def kit(request: pytest.FixtureRequest, ssh_nodes: NodeFactory,
              tmp_path: Path) -> AsyncIterator[Kit]:
    kind: str = request.param
    # a gate every job user can see: /tmp is world-readable, tmp_path is root's alone
    host_gate = Path("/tmp") / f"fd-gate-{uuid.uuid4().hex}"
    ex: Executor
    if kind == "docker":
        node = ssh_nodes(1, docker=True)[0]
        assert node.docker is not None
        image = request.getfixturevalue("docker_image")(node)
        ex = DockerExecutor(gpu_runtime=False)
        parts: tuple[str, str | None, str, Callable[[Handle], None]] = (
            "root", image, "/tmp/gate", _docker_touch(node, "/tmp/gate"))
    elif kind == "slurm":
        node = ssh_nodes(1, slurm=True)[0]
        ex = SlurmExecutor(jobs_dir=str(tmp_path / "slurm"), poll_s=0.5)
        parts = ("alice", None, str(host_gate), _touch(host_gate))
    else:
        node = ssh_nodes(1)[0]
        # bed nodes all log in as root on this machine: a private jobs dir per test
        ex = ProcessExecutor(jobs_dir=str(tmp_path / "jobs"), kill_after_s=1.0)
        parts = ("root", None, str(host_gate), _touch(host_gate))
    transport = transport_for(node)
    user, image, gate, open_gate = parts
    try:
        yield Kit(ex, transport, node, user, image, gate, open_gate)
    finally:
        await transport.close()
        if isinstance(ex, DockerExecutor):
            ex.close()
        host_gate.unlink(missing_ok=True)


async def test_follow_streams_until_the_job_ends(kit: Kit) -> None:
    # The job prints tick1, then waits for a gate the test opens only once tick1 has arrived:
    # output streams while the job runs, not all at its end (no clock involved).
    script = (f"echo tick1; while [ ! -e {kit.gate} ]; do sleep 0.05; done; "
              "echo tick2; echo tick3; echo tick4")
    ex, t = kit.executor, kit.transport
    h = await ex.start(kit.launch(("sh", "-c", script)), t)
    await wait_state(ex, h, t, "running")
    got: list[bytes] = []
    async for chunk in ex.logs(h, t, follow=True):
        if not got:
            assert chunk.startswith(b"tick1")
            assert (await ex.status(h, t)).state == "running"
            kit.open_gate(h)
        got.append(chunk)
    assert b"".join(got) == b"tick1\ntick2\ntick3\ntick4\n"
    assert (await ex.status(h, t)).exit_code == 0


async def test_stop_graceful_then_forced(kit: Kit) -> None:
    ex, t = kit.executor, kit.transport
    polite = await ex.start(kit.launch(
        ("sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; "
                     "while :; do sleep 0.1; done")), t)
    stubborn = await ex.start(kit.launch(
        ("sh", "-c", "trap 'echo ignoring TERM' TERM; echo ready; "
                     "while :; do sleep 0.1; done")), t)
    await wait_log(ex, polite, t, b"ready")
    await wait_log(ex, stubborn, t, b"ready")

    # a polite job ends on TERM: stop returns without waiting out a grace no test could sit
    # through (it would hit the test timeout)
    await ex.stop(polite, t, grace_s=3600.0)
    t0 = time.monotonic()
    await ex.stop(stubborn, t, grace_s=2.0)
    stubborn_s = time.monotonic() - t0

    st = await ex.status(polite, t)
    assert (st.state, st.exit_code) == ("exited", 0), st
    assert b"got TERM" in await read_logs(ex, polite, t)
    st = await ex.status(stubborn, t)
    assert (st.state, st.exit_code) == ("exited", 137), st  # SIGKILL
    assert b"ignoring TERM" in await read_logs(ex, stubborn, t)  # TERM came first
    assert stubborn_s >= 2.0  # the grace was waited out
    # stopping a finished job is a no-op
    await ex.stop(polite, t, grace_s=1.0)
